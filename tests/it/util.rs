//! Helpers the presence, protocol, error, auth, limit and admin modules share on top of
//! `support`: polling, reading raw replies up to a known end, and reading STATUS replies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Value;

/// How long a raw read waits for bytes the server is known to send; generous because tests
/// run in parallel on a small machine.
const RAW_DEADLINE: Duration = Duration::from_secs(20);

/// Wall-clock time in Unix milliseconds, as the server stamps last-seen times.
#[allow(clippy::disallowed_methods)] // Tests and the clock module read the wall clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Calls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Bytes as text for assertion messages.
pub fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads from `stream` until `done` says the bytes so far are enough, the server closes (then
/// `<CLOSED>` is appended, as `support::read_available` does) or 20 s pass. Unlike
/// `support::read_exact_len` it returns as soon as `done` holds, without waiting for quiet.
pub fn read_until(stream: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + RAW_DEADLINE;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while !done(&out) && Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => {
                out.extend_from_slice(b"<CLOSED>");
                break;
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                out.extend_from_slice(b"<CLOSED>");
                break;
            }
        }
    }
    out
}

/// Reads until the received bytes end with `suffix` (or the server closes, or 20 s pass).
pub fn read_until_suffix(stream: &mut TcpStream, suffix: &[u8]) -> Vec<u8> {
    read_until(stream, |out| out.ends_with(suffix))
}

/// Reads until at least `lines` CRLF-terminated lines arrived (or the server closes, or 20 s
/// pass): for replies whose length is not known in advance.
pub fn read_lines(stream: &mut TcpStream, lines: usize) -> Vec<u8> {
    read_until(stream, |out| {
        out.windows(2).filter(|w| w == b"\r\n").count() >= lines
    })
}

/// Reads until the server closes the connection (or 20 s pass): what it sent, then `<CLOSED>`.
pub fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    read_until(stream, |_| false)
}

/// Sends `request` and asserts the server answers exactly `expected` (and nothing else yet).
pub fn roundtrip(stream: &mut TcpStream, request: &[u8], expected: &[u8]) {
    stream.write_all(request).expect("write");
    let got = read_until(stream, |out| out.len() >= expected.len());
    assert_eq!(
        show(&got),
        show(expected),
        "reply to {:?}",
        show(&request[..request.len().min(80)])
    );
}

/// Sends `request` and asserts the server answers exactly `expected`, then closes.
pub fn roundtrip_then_closed(stream: &mut TcpStream, request: &[u8], expected: &[u8]) {
    // The server may close before reading everything; a failed write is then expected.
    let _ = stream.write_all(request);
    let got = read_until_closed(stream);
    let mut want = expected.to_vec();
    want.extend_from_slice(b"<CLOSED>");
    assert_eq!(
        show(&got),
        show(&want),
        "reply to {:?}",
        show(&request[..request.len().min(80)])
    );
}

/// A STATUS reply in either protocol as `(state, last_seen_ms)`, checking its exact shape:
/// RESP2 `[state, last_seen_ms|nil]`, RESP3 `{state: .., last_seen_ms: ..|null}`.
pub fn parse_status(value: &Value) -> (String, Option<i64>) {
    let (state, last_seen) = match value {
        Value::Array(items) if items.len() == 2 => (&items[0], &items[1]),
        Value::Map(pairs) if pairs.len() == 2 => {
            assert_eq!(
                pairs[0].0,
                Value::BulkString(b"state".to_vec()),
                "{value:?}"
            );
            assert_eq!(
                pairs[1].0,
                Value::BulkString(b"last_seen_ms".to_vec()),
                "{value:?}"
            );
            (&pairs[0].1, &pairs[1].1)
        }
        other => panic!("not a STATUS reply: {other:?}"),
    };
    let state = match state {
        Value::BulkString(s) => String::from_utf8(s.clone()).expect("utf-8 state"),
        other => panic!("state is not a bulk string: {other:?}"),
    };
    let last_seen = match last_seen {
        Value::Int(ms) => Some(*ms),
        Value::Nil => None,
        other => panic!("last_seen_ms is neither an integer nor null: {other:?}"),
    };
    (state, last_seen)
}

/// STATUS of one user over `con`, in whatever protocol it speaks.
pub fn status(con: &mut redis::Connection, user: &str) -> (String, Option<i64>) {
    let value: Value = redis::cmd("STATUS")
        .arg(user)
        .query(con)
        .expect("STATUS succeeds");
    parse_status(&value)
}

/// HEARTBEAT of one user, optionally with a TTL; the integer reply.
pub fn heartbeat(con: &mut redis::Connection, user: &str, ttl_s: Option<u64>) -> i64 {
    let mut cmd = redis::cmd("HEARTBEAT");
    cmd.arg(user);
    if let Some(ttl_s) = ttl_s {
        cmd.arg("TTL").arg(ttl_s);
    }
    cmd.query(con).expect("HEARTBEAT succeeds")
}

/// INFO text (RESP2 bulk string or RESP3 verbatim string) for `section` ("" for plain INFO).
pub fn info(con: &mut redis::Connection, section: &str) -> String {
    let mut cmd = redis::cmd("INFO");
    if !section.is_empty() {
        cmd.arg(section);
    }
    let value: Value = cmd.query(con).expect("INFO succeeds");
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).expect("utf-8 INFO"),
        Value::VerbatimString { text, .. } => text,
        other => panic!("INFO is not text: {other:?}"),
    }
}

/// The value of `field:value` in INFO text.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim_end().to_string())
}

/// Reads a Value as UTF-8 text (bulk, simple or verbatim string).
pub fn as_text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).expect("utf-8"),
        Value::SimpleString(s) => s.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::Okay => "OK".to_string(),
        other => panic!("not text: {other:?}"),
    }
}
