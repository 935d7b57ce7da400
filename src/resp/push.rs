//! Out-of-band frames (pub/sub messages) encoded once and shared by every receiver.
//!
//! RESP2 receivers get an array (`*3 message <channel> <payload>`); RESP3 receivers get a
//! push frame (`>3 ...`), which RESP3 clients tell apart from command replies. The two differ
//! only in the first byte, so the RESP3 form is derived from the RESP2 one, and only if a RESP3
//! subscriber receives it.

use bytes::{Bytes, BytesMut};

use super::{Protocol, ReplyBuf};

#[derive(Debug, Clone)]
pub struct PushFrame {
    resp2: Bytes,
    resp3: Option<Bytes>,
}

impl PushFrame {
    /// A frame of bulk strings, as Redis sends `message` and `pmessage`.
    pub fn of_bulks(parts: &[&[u8]]) -> PushFrame {
        let size: usize = parts.iter().map(|p| p.len() + 16).sum::<usize>() + 8;
        let mut out = ReplyBuf {
            buf: BytesMut::with_capacity(size),
            protocol: Protocol::Resp2,
        };
        out.array(parts.len());
        for part in parts {
            out.bulk(part);
        }
        PushFrame {
            resp2: out.buf.freeze(),
            resp3: None,
        }
    }

    /// The frame's bytes for a receiver speaking `protocol`.
    pub fn for_protocol(&mut self, protocol: Protocol) -> &Bytes {
        match protocol {
            Protocol::Resp2 => &self.resp2,
            Protocol::Resp3 => self.resp3.get_or_insert_with(|| {
                let mut push = BytesMut::from(&self.resp2[..]);
                debug_assert_eq!(push.first(), Some(&b'*'), "a RESP2 array header");
                push[0] = b'>';
                push.freeze()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp2_array_and_resp3_push() {
        let mut m = PushFrame::of_bulks(&[b"message", b"presence:42", b"hi"]);
        assert_eq!(
            &m.for_protocol(Protocol::Resp2)[..],
            b"*3\r\n$7\r\nmessage\r\n$11\r\npresence:42\r\n$2\r\nhi\r\n"
        );
        assert_eq!(
            &m.for_protocol(Protocol::Resp3)[..],
            b">3\r\n$7\r\nmessage\r\n$11\r\npresence:42\r\n$2\r\nhi\r\n"
        );
    }
}
