//! The replication stream's frames (version 2, docs/design/replication.md). Each frame is a
//! RESP array of bulk strings, so stream offsets are RESP byte counts as in Redis:
//!
//! - `STATE <shard> <leader_now_ms> <packed> <records>`: users of that shard as they are now,
//!   drained from its dirty set — the plain dense ones bit-packed (`store::packed`), the
//!   others as `store::persist`'s replication records;
//! - `FLUSHALL`: every user forgotten, a barrier between the changes before and after it;
//! - `PUBLISH <channel> <message>`: a client's PUBLISH, delivered to the follower's
//!   subscribers too (as Redis replicates PUBLISH);
//! - `PING`: sent when the stream has been idle, so offsets and the link's liveness move.

use bytes::Bytes;

use crate::resp::{Protocol, ReplyBuf};
use crate::store::ReplicatedBatch;

/// The capability a follower announces (`REPLCONF capa presenced-v2`): the leader streams only
/// to followers that read this version.
pub const CAPA: &str = "presenced-v2";

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
        batch: ReplicatedBatch<'a>,
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
        (b"STATE", 5) => {
            let shard = decimal(&args[1]).ok_or("STATE frame with a bad shard index")?;
            let leader_now_ms = decimal(&args[2]).ok_or("STATE frame with a bad clock")?;
            Frame::State {
                shard: shard as usize,
                batch: ReplicatedBatch {
                    leader_now_ms,
                    packed: &args[3],
                    records: &args[4],
                },
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

fn decimal(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse::<u64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let parts = [&b"STATE"[..], b"1", b"1796000000000", b"\x00", b"\x00abc"];
        let mut out = Vec::new();
        frame(&mut out, &parts);
        let mut expected = ReplyBuf::new(Protocol::Resp2);
        expected.array(parts.len());
        for part in parts {
            expected.bulk(part);
        }
        assert_eq!(out, expected.buf);
        let args: Vec<Bytes> = parts.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        match parse(&args) {
            Ok(Frame::State { shard: 1, batch }) => {
                assert_eq!(batch.leader_now_ms, 1_796_000_000_000);
                assert_eq!(batch.packed, b"\x00");
                assert_eq!(batch.records, b"\x00abc");
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            [&b"STATE"[..], b"x", b"1", b"", b""],
            [&b"STATE"[..], b"1", b"-1", b"", b""],
        ] {
            let bad: Vec<Bytes> = bad.iter().map(|a| Bytes::copy_from_slice(a)).collect();
            assert!(parse(&bad).is_err());
        }
    }
}
