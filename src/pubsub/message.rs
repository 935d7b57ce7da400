//! Redis's pub/sub message shapes, encoded once per protocol and shared by every receiver.
//!
//! RESP2 receivers get arrays (`*3 message <channel> <payload>`); RESP3 receivers get push
//! frames (`>3 ...`), which RESP3 clients tell apart from command replies.

use bytes::{BufMut, Bytes, BytesMut};

use crate::resp::Protocol;

/// One published message, encoded for RESP2 up front and for RESP3 only if a RESP3
/// subscriber receives it (the two differ only in the first byte: `*` or `>`).
#[derive(Debug, Clone)]
pub struct Encoded {
    resp2: Bytes,
    resp3: Option<Bytes>,
}

impl Encoded {
    pub fn for_protocol(&mut self, protocol: Protocol) -> &Bytes {
        match protocol {
            Protocol::Resp2 => &self.resp2,
            Protocol::Resp3 => self.resp3.get_or_insert_with(|| {
                let mut push = BytesMut::from(&self.resp2[..]);
                push[0] = b'>';
                push.freeze()
            }),
        }
    }
}

fn header(buf: &mut BytesMut, protocol: Protocol, len: usize) {
    buf.put_u8(match protocol {
        Protocol::Resp2 => b'*',
        Protocol::Resp3 => b'>',
    });
    buf.put_slice(len.to_string().as_bytes());
    buf.put_slice(b"\r\n");
}

fn bulk(buf: &mut BytesMut, data: &[u8]) {
    buf.put_u8(b'$');
    buf.put_slice(data.len().to_string().as_bytes());
    buf.put_slice(b"\r\n");
    buf.put_slice(data);
    buf.put_slice(b"\r\n");
}

fn encode(protocol: Protocol, parts: &[&[u8]]) -> Bytes {
    let size: usize = parts.iter().map(|p| p.len() + 16).sum::<usize>() + 8;
    let mut buf = BytesMut::with_capacity(size);
    header(&mut buf, protocol, parts.len());
    for part in parts {
        bulk(&mut buf, part);
    }
    buf.freeze()
}

/// `message <channel> <payload>`.
pub fn message(channel: &[u8], payload: &[u8]) -> Encoded {
    let parts: [&[u8]; 3] = [b"message", channel, payload];
    Encoded {
        resp2: encode(Protocol::Resp2, &parts),
        resp3: None,
    }
}

/// `pmessage <pattern> <channel> <payload>`.
pub fn pmessage(pattern: &[u8], channel: &[u8], payload: &[u8]) -> Encoded {
    let parts: [&[u8]; 4] = [b"pmessage", pattern, channel, payload];
    Encoded {
        resp2: encode(Protocol::Resp2, &parts),
        resp3: None,
    }
}

/// A (un)subscribe confirmation: `<kind> <channel or null> <count>`, written into a reply
/// buffer because it answers the client's own command.
pub fn confirmation(
    out: &mut BytesMut,
    protocol: Protocol,
    kind: &[u8],
    channel: Option<&[u8]>,
    count: usize,
) {
    header(out, protocol, 3);
    bulk(out, kind);
    match (channel, protocol) {
        (Some(channel), _) => bulk(out, channel),
        (None, Protocol::Resp2) => out.put_slice(b"$-1\r\n"),
        (None, Protocol::Resp3) => out.put_slice(b"_\r\n"),
    }
    out.put_u8(b':');
    out.put_slice(count.to_string().as_bytes());
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_redis() {
        let mut m = message(b"presence:42", b"hi");
        assert_eq!(
            &m.for_protocol(Protocol::Resp2)[..],
            b"*3\r\n$7\r\nmessage\r\n$11\r\npresence:42\r\n$2\r\nhi\r\n"
        );
        assert_eq!(
            &m.for_protocol(Protocol::Resp3)[..],
            b">3\r\n$7\r\nmessage\r\n$11\r\npresence:42\r\n$2\r\nhi\r\n"
        );
        let mut p = pmessage(b"presence:*", b"presence:42", b"hi");
        assert!(
            p.for_protocol(Protocol::Resp2)
                .starts_with(b"*4\r\n$8\r\npmessage\r\n$10\r\npresence:*\r\n")
        );
        let mut out = BytesMut::new();
        confirmation(&mut out, Protocol::Resp2, b"unsubscribe", None, 0);
        assert_eq!(&out[..], b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
    }
}
