//! `CLIENT PAUSE`: while paused, the writes of other clients (or, with ALL, every command) wait
//! and run in order once the pause ends or `CLIENT UNPAUSE` comes; reads go on in WRITE mode;
//! nothing expires during a pause.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::TestServer;
use crate::util::{read_until, roundtrip, status};

/// Whether nothing at all arrives on `stream` for `ms` (the pause holds the reply back).
fn nothing_within(stream: &mut TcpStream, ms: u64) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(ms)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    let quiet = matches!(
        stream.read(&mut byte),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            || e.kind() == std::io::ErrorKind::TimedOut
    );
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    quiet
}

/// In WRITE mode a SET waits (and so does the read pipelined after it on the same connection)
/// while another client's reads are answered; UNPAUSE lets the SET run, then the read.
#[test]
fn writes_wait_until_unpause() {
    let server = TestServer::start();
    let mut admin = server.client();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(30_000)
        .arg("WRITE")
        .query(&mut admin)
        .unwrap();
    let clients = crate::util::info(&mut admin, "clients");
    let field = |name: &str| crate::util::info_field(&clients, name).unwrap_or_default();
    assert_eq!(field("paused_reason"), "client_pause");
    assert_eq!(field("paused_actions"), "write");
    let left_ms: u64 = field("paused_timeout_milliseconds").parse().expect("ms");
    assert!(left_ms > 0 && left_ms <= 30_000, "{left_ms}");
    let mut writer = server.raw();
    writer
        .write_all(b"SET user:1:presence online\r\nGET user:1:presence\r\n")
        .unwrap();
    // The read of another client is answered at once, and the write has not happened.
    let mut reader = server.raw();
    roundtrip(&mut reader, b"GET user:1:presence\r\n", b"$-1\r\n");
    roundtrip(
        &mut reader,
        b"STATUS 1\r\n",
        b"*2\r\n$7\r\noffline\r\n$-1\r\n",
    );
    std::thread::sleep(Duration::from_millis(100));
    roundtrip(&mut reader, b"EXISTS user:1:presence\r\n", b":0\r\n");
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut admin)
        .unwrap();
    let got = read_until(&mut writer, |out| {
        out.len() >= b"+OK\r\n$6\r\nonline\r\n".len()
    });
    assert_eq!(got, b"+OK\r\n$6\r\nonline\r\n");
}

/// In ALL mode every command waits (a PING is not answered while the pause lasts), and the
/// pause ends by itself when its time is up.
#[test]
fn all_mode_holds_reads_until_the_time_is_up() {
    let server = TestServer::start();
    let mut admin = server.client();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(600)
        .arg("ALL")
        .query(&mut admin)
        .unwrap();
    let mut reader = server.raw();
    reader.write_all(b"PING\r\n").unwrap();
    assert!(
        nothing_within(&mut reader, 150),
        "PING answered during an ALL pause"
    );
    let after = read_until(&mut reader, |out| out.len() >= 7);
    assert_eq!(after, b"+PONG\r\n", "answered once the pause is over");
    let mut con = server.client();
    assert_eq!(status(&mut con, "1").0, "offline");
}

/// Nothing expires while clients are paused: a user whose TTL runs out during the pause is
/// declared offline only after it.
#[test]
fn nothing_expires_during_a_pause() {
    let server = TestServer::start();
    let mut con = server.client();
    let _: i64 = redis::cmd("HEARTBEAT")
        .arg("5")
        .arg("TTL")
        .arg("1")
        .query(&mut con)
        .unwrap();
    let mut sub = server.raw();
    roundtrip(
        &mut sub,
        b"SUBSCRIBE presence:5\r\n",
        b"*3\r\n$9\r\nsubscribe\r\n$10\r\npresence:5\r\n:1\r\n",
    );
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2_500)
        .arg("WRITE")
        .query(&mut con)
        .unwrap();
    // The TTL runs out 1 s after the heartbeat; no event may come while the pause lasts.
    assert!(nothing_within(&mut sub, 1_800), "an event during the pause");
    let after = read_until(&mut sub, |out| out.windows(7).any(|w| w == b"offline"));
    assert!(
        after.windows(7).any(|w| w == b"offline"),
        "the offline event after the pause: {:?}",
        String::from_utf8_lossy(&after)
    );
}
