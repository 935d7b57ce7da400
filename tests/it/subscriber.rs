//! A raw-TCP subscriber that records every pushed message with the instant it arrived, read
//! by a background thread. Used where the `redis` crate's pub/sub would be the bottleneck
//! (hundreds of thousands of events) or where exact arrival times matter.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One message: its elements (`message`, channel, payload / `pmessage`, pattern, channel,
/// payload) and its arrival in Unix milliseconds.
#[derive(Clone, Debug)]
pub struct Received {
    pub parts: Vec<Vec<u8>>,
    pub arrived_ms: u64,
}

impl Received {
    pub fn kind(&self) -> &[u8] {
        &self.parts[0]
    }

    pub fn payload(&self) -> &[u8] {
        self.parts.last().map_or(&[][..], |p| &p[..])
    }

    /// A field of the JSON presence payload, as text (`"online"` comes back as `online`).
    pub fn field(&self, name: &str) -> Option<String> {
        let text = std::str::from_utf8(self.payload()).ok()?;
        let key = format!("\"{name}\":");
        let rest = &text[text.find(&key)? + key.len()..];
        let value = if let Some(stripped) = rest.strip_prefix('"') {
            &stripped[..stripped.find('"')?]
        } else {
            &rest[..rest.find([',', '}'])?]
        };
        Some(value.to_string())
    }
}

pub struct RawSubscriber {
    /// The writing half, kept so the subscription lives as long as this value.
    _stream: TcpStream,
    received: Arc<Mutex<Vec<Received>>>,
    closed: Arc<Mutex<bool>>,
}

#[allow(clippy::disallowed_methods)] // Tests and the clock module read the wall clock.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RawSubscriber {
    /// Connects, optionally switches to RESP3, and sends `command` (e.g. PSUBSCRIBE ...).
    pub fn connect(port: u16, resp3: bool, command: &[&[u8]]) -> RawSubscriber {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        if resp3 {
            // The HELLO map is skipped by the reader as a frame that is not a message.
            stream.write_all(b"HELLO 3\r\n").expect("write");
        }
        let reader_stream = stream.try_clone().expect("clone");
        let subscriber = RawSubscriber::start(stream, reader_stream, command);
        subscriber.wait_confirmations(command.len() - 1);
        subscriber
    }

    /// Waits for `count` (p)subscribe confirmations, so that nothing published after this
    /// returns can be missed.
    fn wait_confirmations(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let confirmed = self
                .frames()
                .iter()
                .filter(|f| f.kind() == b"subscribe" || f.kind() == b"psubscribe")
                .count();
            if confirmed >= count {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no subscription confirmation within 10 s");
    }

    fn start(mut stream: TcpStream, mut reader: TcpStream, command: &[&[u8]]) -> RawSubscriber {
        stream
            .write_all(&crate::support::resp_command(command))
            .expect("write");
        let received = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(false));
        let sink = Arc::clone(&received);
        let closed_flag = Arc::clone(&closed);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 256 * 1024];
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                let arrived_ms = now_ms();
                let mut at = 0;
                let mut batch = Vec::new();
                while let Some((frame, used)) = parse_frame(&buf[at..]) {
                    at += used;
                    if let Some(parts) = frame {
                        batch.push(Received { parts, arrived_ms });
                    }
                }
                buf.drain(..at);
                sink.lock().unwrap().extend(batch);
            }
            *closed_flag.lock().unwrap() = true;
        });
        RawSubscriber {
            _stream: stream,
            received,
            closed,
        }
    }

    /// Messages (`message`/`pmessage`) received so far.
    pub fn messages(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.kind() == b"message" || r.kind() == b"pmessage")
            .cloned()
            .collect()
    }

    /// Every array or push frame received so far, confirmations included.
    pub fn frames(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `count` messages arrived or `timeout` passed; returns the messages.
    pub fn wait_messages(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count || Instant::now() >= deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.lock().unwrap()
    }
}

/// Parses one frame: `Some((Some(parts), used))` for an array or push of bulk strings and
/// integers, `Some((None, used))` for anything else (skipped), `None` if incomplete.
fn parse_frame(buf: &[u8]) -> Option<(Option<Vec<Vec<u8>>>, usize)> {
    let (line, mut at) = read_line(buf, 0)?;
    match line.first()? {
        b'*' | b'>' => {
            let count: i64 = std::str::from_utf8(&line[1..]).ok()?.parse().ok()?;
            let mut parts = Vec::new();
            for _ in 0..count.max(0) {
                let (element, used) = parse_element(buf, at)?;
                at = used;
                parts.push(element);
            }
            Some((Some(parts), at))
        }
        b'%' => {
            let count: usize = std::str::from_utf8(&line[1..]).ok()?.parse().ok()?;
            for _ in 0..count * 2 {
                let (_, used) = skip_value(buf, at)?;
                at = used;
            }
            Some((None, at))
        }
        _ => Some((None, at)),
    }
}

fn parse_element(buf: &[u8], at: usize) -> Option<(Vec<u8>, usize)> {
    let (line, next) = read_line(buf, at)?;
    match line.first()? {
        b'$' => {
            let len: i64 = std::str::from_utf8(&line[1..]).ok()?.parse().ok()?;
            if len < 0 {
                return Some((Vec::new(), next));
            }
            let end = next + len as usize;
            if buf.len() < end + 2 {
                return None;
            }
            Some((buf[next..end].to_vec(), end + 2))
        }
        _ => Some((line[1..].to_vec(), next)),
    }
}

fn skip_value(buf: &[u8], at: usize) -> Option<((), usize)> {
    let (line, next) = read_line(buf, at)?;
    match line.first()? {
        b'$' => {
            let len: usize = std::str::from_utf8(&line[1..]).ok()?.parse().ok()?;
            if buf.len() < next + len + 2 {
                return None;
            }
            Some(((), next + len + 2))
        }
        b'*' | b'~' => {
            let count: usize = std::str::from_utf8(&line[1..]).ok()?.parse().ok()?;
            let mut at = next;
            for _ in 0..count {
                at = skip_value(buf, at)?.1;
            }
            Some(((), at))
        }
        _ => Some(((), next)),
    }
}

fn read_line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}
