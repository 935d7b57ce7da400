//! RESP framing: requests in, replies out. No sockets and no tokio here ("sans-I/O"): the
//! connection feeds bytes in and writes the bytes that come out.
//!
//! Requests are decoded by hand rather than by a general RESP decoder because Redis treats
//! requests specially: any first byte but `*` starts an inline command, only bulk strings may
//! appear inside a request, lengths are checked against limits before their bodies are
//! buffered, and each violation has an exact Redis error text that clients and operators know.
//! The redis-protocol crate is the reference these modules are tested against.

mod inline;
mod push;
mod reply;
mod request;

// Public for the fuzz targets (`fuzz/`), which check it against Redis's own splitter.
pub use inline::split_args;
pub use push::PushFrame;
pub use reply::{Protocol, ReplyBuf};
pub use request::{
    DecodeLimits, ProtocolError, RequestDecoder, parse_redis_integer as parse_integer,
};
