//! A small RESP2 client of the harness's own: it connects from a chosen loopback source
//! address (so the proxies can tell which process a connection belongs to), sends one
//! command at a time and bounds every wait, so an operation ends as ok, fail or unknown.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A reply, as RESP2 has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Reply::Integer(n) => Some(n.to_string()),
            _ => None,
        }
    }

    pub fn items(&self) -> &[Reply] {
        match self {
            Reply::Array(Some(items)) => items,
            _ => &[],
        }
    }
}

/// Why a request has no reply: `Io` before anything was sent (it surely did not run), or
/// `Unknown` once it may have reached the server (a timeout or a broken connection).
#[derive(Debug)]
pub enum Failure {
    Io(String),
    Unknown(String),
}

pub struct Connection {
    stream: TcpStream,
    input: Vec<u8>,
    timeout: Duration,
}

impl Connection {
    pub async fn connect(
        addr: SocketAddr,
        source: IpAddr,
        timeout: Duration,
    ) -> Result<Connection, Failure> {
        let socket = TcpSocket::new_v4().map_err(|e| Failure::Io(e.to_string()))?;
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| Failure::Io(format!("bind {source}: {e}")))?;
        let stream = tokio::time::timeout(timeout, socket.connect(addr))
            .await
            .map_err(|_| Failure::Io(format!("connect {addr}: timed out")))?
            .map_err(|e| Failure::Io(format!("connect {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream,
            input: Vec::with_capacity(4096),
            timeout,
        })
    }

    /// Sends one command and reads its reply within the timeout.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, Failure> {
        self.send(args).await?;
        self.read_reply().await
    }

    pub async fn send(&mut self, args: &[&[u8]]) -> Result<(), Failure> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        tokio::time::timeout(self.timeout, self.stream.write_all(&out))
            .await
            .map_err(|_| Failure::Unknown("write timed out".into()))?
            .map_err(|e| Failure::Unknown(format!("write: {e}")))
    }

    /// The next reply (also a pushed pub/sub message), within the timeout.
    pub async fn read_reply(&mut self) -> Result<Reply, Failure> {
        self.read_reply_within(self.timeout).await
    }

    pub async fn read_reply_within(&mut self, within: Duration) -> Result<Reply, Failure> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some((reply, used)) = parse(&self.input).map_err(Failure::Unknown)? {
                self.input.drain(..used);
                return Ok(reply);
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .map_err(|_| Failure::Unknown("reply timed out".into()))?
                .map_err(|e| Failure::Unknown(format!("read: {e}")))?;
            if read == 0 {
                return Err(Failure::Unknown("connection closed".into()));
            }
            self.input.extend_from_slice(&chunk[..read]);
        }
    }
}

const NESTING_MAX: usize = 8;
const LEN_MAX: i64 = 64 * 1024 * 1024;

/// One reply from the front of `buf` and the bytes it used; `None` if incomplete.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    parse_at(buf, 0, 0)
}

fn line(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let end = buf[from..].windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[from..from + end], from + end + 2))
}

fn number(text: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("bad number {:?}", String::from_utf8_lossy(text)))
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, String> {
    if depth > NESTING_MAX {
        return Err("reply nested too deep".into());
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((text, next)) = line(buf, at + 1) else {
        return Ok(None);
    };
    let text_string = || String::from_utf8_lossy(text).into_owned();
    Ok(Some(match kind {
        b'+' => (Reply::Simple(text_string()), next),
        b'-' => (Reply::Error(text_string()), next),
        b':' => (Reply::Integer(number(text)?), next),
        b'$' => {
            let len = number(text)?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            if len > LEN_MAX {
                return Err("bulk too long".into());
            }
            let end = next + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            (Reply::Bulk(Some(buf[next..end].to_vec())), end + 2)
        }
        b'*' => {
            let count = number(text)?;
            if count < 0 {
                return Ok(Some((Reply::Array(None), next)));
            }
            if count > LEN_MAX {
                return Err("array too long".into());
            }
            let mut items = Vec::with_capacity(count.min(1024) as usize);
            let mut pos = next;
            for _ in 0..count {
                match parse_at(buf, pos, depth + 1)? {
                    Some((item, used)) => {
                        items.push(item);
                        pos = used;
                    }
                    None => return Ok(None),
                }
            }
            (Reply::Array(Some(items)), pos)
        }
        other => return Err(format!("unexpected reply type byte {other:#x}")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_and_incomplete_ones_wait() {
        let cases: &[(&[u8], Reply)] = &[
            (b"+OK\r\n", Reply::Simple("OK".into())),
            (b"-ERR no\r\n", Reply::Error("ERR no".into())),
            (b":42\r\n", Reply::Integer(42)),
            (b"$3\r\nabc\r\n", Reply::Bulk(Some(b"abc".to_vec()))),
            (b"$-1\r\n", Reply::Bulk(None)),
            (
                b"*2\r\n$1\r\na\r\n:1\r\n",
                Reply::Array(Some(vec![
                    Reply::Bulk(Some(b"a".to_vec())),
                    Reply::Integer(1),
                ])),
            ),
        ];
        for (bytes, expected) in cases {
            let (reply, used) = parse(bytes).unwrap().unwrap();
            assert_eq!(&reply, expected);
            assert_eq!(used, bytes.len());
            for cut in 0..bytes.len() {
                assert!(parse(&bytes[..cut]).unwrap().is_none(), "{cut}");
            }
        }
        assert!(parse(b"?x\r\n").is_err());
    }
}
