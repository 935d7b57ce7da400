//! Reply encoding for RESP2 and RESP3, written straight into the connection's output buffer.
//!
//! Replies are streamed (an aggregate's length, then its elements) rather than built as a tree
//! of frames first: an `MSTATUS` of 100,000 users then costs no allocation per user. Each method
//! knows how its RESP3 type degrades in RESP2, the way Redis's `addReply*` functions do.

use bytes::{BufMut, BytesMut};

/// The protocol a connection speaks; `HELLO 3` switches to RESP3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// The output buffer of one connection, with the protocol it speaks.
#[derive(Debug, Default)]
pub struct ReplyBuf {
    pub buf: BytesMut,
    pub protocol: Protocol,
}

impl ReplyBuf {
    pub fn new(protocol: Protocol) -> Self {
        Self {
            buf: BytesMut::with_capacity(16 * 1024),
            protocol,
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn ok(&mut self) {
        self.buf.put_slice(b"+OK\r\n");
    }

    /// A simple string; CR and LF would break framing, so they become spaces.
    pub fn simple(&mut self, text: &str) {
        self.buf.put_u8(b'+');
        self.put_line_safe(text.as_bytes());
        self.buf.put_slice(b"\r\n");
    }

    /// An error line. `text` starts with its code (`ERR`, `NOAUTH`, `WRONGPASS`, ...).
    pub fn error(&mut self, text: &str) {
        self.buf.put_u8(b'-');
        self.put_line_safe(text.as_bytes());
        self.buf.put_slice(b"\r\n");
    }

    pub fn integer(&mut self, value: i64) {
        self.buf.put_u8(b':');
        self.put_decimal(value);
        self.buf.put_slice(b"\r\n");
    }

    pub fn bulk(&mut self, data: &[u8]) {
        self.buf.put_u8(b'$');
        self.put_decimal(data.len() as i64);
        self.buf.put_slice(b"\r\n");
        self.buf.put_slice(data);
        self.buf.put_slice(b"\r\n");
    }

    /// The length line of a bulk string whose body the caller sends itself, with no CRLF
    /// after it: how a leader frames the full-sync payload, as Redis frames its RDB.
    pub fn bulk_header(&mut self, len: usize) {
        self.buf.put_u8(b'$');
        self.put_decimal(len as i64);
        self.buf.put_slice(b"\r\n");
    }

    /// A missing value: `$-1` in RESP2, `_` in RESP3 (RESP3 clients do not expect `$-1`).
    pub fn null(&mut self) {
        match self.protocol {
            Protocol::Resp2 => self.buf.put_slice(b"$-1\r\n"),
            Protocol::Resp3 => self.buf.put_slice(b"_\r\n"),
        }
    }

    /// A missing aggregate: `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        match self.protocol {
            Protocol::Resp2 => self.buf.put_slice(b"*-1\r\n"),
            Protocol::Resp3 => self.buf.put_slice(b"_\r\n"),
        }
    }

    pub fn array(&mut self, len: usize) {
        self.aggregate(b'*', len);
    }

    /// A push frame's header (`>` in RESP3); in RESP2 an array, as Redis sends subscribe
    /// confirmations and messages to RESP2 clients.
    pub fn push(&mut self, len: usize) {
        match self.protocol {
            Protocol::Resp2 => self.aggregate(b'*', len),
            Protocol::Resp3 => self.aggregate(b'>', len),
        }
    }

    /// A map of `pairs` key/value pairs; in RESP2 a flat array of 2 x `pairs` elements.
    pub fn map(&mut self, pairs: usize) {
        match self.protocol {
            Protocol::Resp2 => self.aggregate(b'*', pairs * 2),
            Protocol::Resp3 => self.aggregate(b'%', pairs),
        }
    }

    /// A set; in RESP2 an array.
    pub fn set(&mut self, len: usize) {
        match self.protocol {
            Protocol::Resp2 => self.aggregate(b'*', len),
            Protocol::Resp3 => self.aggregate(b'~', len),
        }
    }

    /// Text meant for humans (INFO, CLIENT LIST): a verbatim string in RESP3, bulk in RESP2.
    pub fn verbatim_text(&mut self, text: &str) {
        match self.protocol {
            Protocol::Resp2 => self.bulk(text.as_bytes()),
            Protocol::Resp3 => {
                self.buf.put_u8(b'=');
                self.put_decimal(text.len() as i64 + 4);
                self.buf.put_slice(b"\r\ntxt:");
                self.buf.put_slice(text.as_bytes());
                self.buf.put_slice(b"\r\n");
            }
        }
    }

    fn aggregate(&mut self, kind: u8, len: usize) {
        self.buf.put_u8(kind);
        self.put_decimal(len as i64);
        self.buf.put_slice(b"\r\n");
    }

    fn put_decimal(&mut self, value: i64) {
        let mut digits = [0u8; 20];
        let mut n = value.unsigned_abs();
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if value < 0 {
            self.buf.put_u8(b'-');
        }
        self.buf.put_slice(&digits[at..]);
    }

    fn put_line_safe(&mut self, text: &[u8]) {
        for &b in text {
            self.buf
                .put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_protocol::resp2::decode::decode as decode2;
    use redis_protocol::resp2::types::OwnedFrame as Frame2;
    use redis_protocol::resp3::decode::complete::decode as decode3;
    use redis_protocol::resp3::types::OwnedFrame as Frame3;

    fn encoded(protocol: Protocol, write: impl Fn(&mut ReplyBuf)) -> Vec<u8> {
        let mut reply = ReplyBuf::new(protocol);
        write(&mut reply);
        reply.buf.to_vec()
    }

    /// What this encoder writes, the redis-protocol crate reads back as the intended frame.
    #[test]
    fn replies_decode_with_the_reference_crate() {
        let status = |r: &mut ReplyBuf| {
            r.map(2);
            r.bulk(b"state");
            r.bulk(b"online");
            r.bulk(b"last_seen_ms");
            r.integer(-1_700_000_000_000);
        };
        let (frame, used) = decode2(&encoded(Protocol::Resp2, status))
            .expect("valid RESP2")
            .expect("complete");
        assert_eq!(used, encoded(Protocol::Resp2, status).len());
        let Frame2::Array(items) = frame else {
            panic!("not an array: {frame:?}")
        };
        assert_eq!(items.len(), 4);
        assert_eq!(items[3], Frame2::Integer(-1_700_000_000_000));

        let bytes3 = encoded(Protocol::Resp3, status);
        let (frame, used) = decode3(&bytes3).expect("valid RESP3").expect("complete");
        assert_eq!(used, bytes3.len());
        assert!(matches!(frame, Frame3::Map { ref data, .. } if data.len() == 2));

        let nulls = |r: &mut ReplyBuf| {
            r.array(2);
            r.null();
            r.null_array();
        };
        assert_eq!(encoded(Protocol::Resp2, nulls), b"*2\r\n$-1\r\n*-1\r\n");
        assert_eq!(encoded(Protocol::Resp3, nulls), b"*2\r\n_\r\n_\r\n");
        let (frame, _) = decode3(&encoded(Protocol::Resp3, |r| r.verbatim_text("a:b\r\n")))
            .expect("valid")
            .expect("complete");
        assert!(matches!(frame, Frame3::VerbatimString { .. }), "{frame:?}");
    }

    #[test]
    fn line_breaks_cannot_escape_a_simple_string() {
        assert_eq!(
            encoded(Protocol::Resp2, |r| r.error("ERR a\r\nb")),
            b"-ERR a  b\r\n"
        );
        assert_eq!(encoded(Protocol::Resp2, |r| r.integer(0)), b":0\r\n");
        assert_eq!(
            encoded(Protocol::Resp2, |r| r.integer(i64::MIN)),
            b":-9223372036854775808\r\n"
        );
    }
}
