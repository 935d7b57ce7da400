//! The replication stream's frames (version 1, docs/design/replication.md). Each frame is a
//! RESP array of bulk strings, so stream offsets are RESP byte counts as in Redis:
//!
//! - `STATE <shard> <records>`: users of that shard as they are now (`store::persist`'s
//!   replication records), drained from its dirty set;
//! - `FLUSHALL`: every user forgotten, a barrier between the changes before and after it;
//! - `PUBLISH <channel> <message>`: a client's PUBLISH, delivered to the follower's
//!   subscribers too (as Redis replicates PUBLISH);
//! - `PING`: sent when the stream has been idle, so offsets and the link's liveness move.

use bytes::Bytes;

use crate::resp::{Protocol, ReplyBuf};

/// The capability a follower announces (`REPLCONF capa presenced-v1`): the leader streams only
/// to followers that read this version.
pub const CAPA: &str = "presenced-v1";

/// Users drained from one shard into one frame.
pub const USERS_PER_FRAME: usize = 4096;

/// Appends one frame, an array of bulk strings (`resp` writes the bytes).
pub fn frame(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let mut encoded = ReplyBuf::new(Protocol::Resp2);
    encoded.array(parts.len());
    for part in parts {
        encoded.bulk(part);
    }
    out.extend_from_slice(&encoded.buf);
}

/// What a follower does with one decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    State {
        shard: usize,
        records: &'a [u8],
    },
    FlushAll,
    Publish {
        channel: &'a [u8],
        message: &'a [u8],
    },
    Ping,
    /// `REPLCONF GETACK *`: answer with the applied offset now.
    GetAck,
    /// Anything else: skipped (a later version's frame an older follower does not know).
    Unknown,
}

pub fn parse(args: &[Bytes]) -> Result<Frame<'_>, String> {
    let name = args
        .first()
        .map(|n| n.to_ascii_uppercase())
        .unwrap_or_default();
    Ok(match (&name[..], args.len()) {
        (b"STATE", 3) => {
            let shard = std::str::from_utf8(&args[1])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| "STATE frame with a bad shard index".to_string())?;
            Frame::State {
                shard,
                records: &args[2],
            }
        }
        (b"FLUSHALL", _) => Frame::FlushAll,
        (b"PUBLISH", 3) => Frame::Publish {
            channel: &args[1],
            message: &args[2],
        },
        (b"PING", _) => Frame::Ping,
        (b"REPLCONF", 3) if args[1].eq_ignore_ascii_case(b"GETACK") => Frame::GetAck,
        _ => Frame::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        frame(&mut out, &[b"STATE", b"1", b"\x00abc"]);
        let mut expected = ReplyBuf::new(Protocol::Resp2);
        expected.array(3);
        for part in [&b"STATE"[..], b"1", b"\x00abc"] {
            expected.bulk(part);
        }
        assert_eq!(out, expected.buf);
        let args: Vec<Bytes> = [&b"STATE"[..], b"1", b"\x00abc"]
            .iter()
            .map(|a| Bytes::copy_from_slice(a))
            .collect();
        assert_eq!(
            parse(&args),
            Ok(Frame::State {
                shard: 1,
                records: b"\x00abc"
            })
        );
        let bad: Vec<Bytes> = [&b"STATE"[..], b"x", b""]
            .iter()
            .map(|a| Bytes::copy_from_slice(a))
            .collect();
        assert!(parse(&bad).is_err());
    }
}
