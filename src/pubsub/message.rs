//! Redis's pub/sub message shapes: `message <channel> <payload>`,
//! `pmessage <pattern> <channel> <payload>` and `smessage <shard channel> <payload>`, encoded by `resp` once per protocol and shared
//! by every receiver. This module knows the shapes, not the bytes.

use crate::resp::PushFrame;

/// `message <channel> <payload>`.
pub fn message(channel: &[u8], payload: &[u8]) -> PushFrame {
    PushFrame::of_bulks(&[b"message", channel, payload])
}

/// `pmessage <pattern> <channel> <payload>`.
pub fn pmessage(pattern: &[u8], channel: &[u8], payload: &[u8]) -> PushFrame {
    PushFrame::of_bulks(&[b"pmessage", pattern, channel, payload])
}

/// `smessage <shard channel> <payload>` (Redis 7's sharded pub/sub).
pub fn smessage(channel: &[u8], payload: &[u8]) -> PushFrame {
    PushFrame::of_bulks(&[b"smessage", channel, payload])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::Protocol;

    #[test]
    fn shapes_match_redis() {
        let mut m = message(b"presence:42", b"hi");
        assert_eq!(
            &m.for_protocol(Protocol::Resp2)[..],
            b"*3\r\n$7\r\nmessage\r\n$11\r\npresence:42\r\n$2\r\nhi\r\n"
        );
        let mut p = pmessage(b"presence:*", b"presence:42", b"hi");
        assert!(
            p.for_protocol(Protocol::Resp2)
                .starts_with(b"*4\r\n$8\r\npmessage\r\n$10\r\npresence:*\r\n")
        );
        let mut s = smessage(b"presence:{42}", b"hi");
        assert_eq!(
            &s.for_protocol(Protocol::Resp3)[..],
            b">3\r\n$8\r\nsmessage\r\n$13\r\npresence:{42}\r\n$2\r\nhi\r\n"
        );
    }
}
