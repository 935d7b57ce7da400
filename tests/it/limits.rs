//! Misbehaving clients: garbage, oversized frames, huge declared lengths, the query-buffer
//! limit and --maxclients. Each must cost only the offending connection.

use std::io::Write;
use std::time::Duration;

use crate::support::{TestServer, exchange};
use crate::util::{
    heartbeat, info, info_field, poll, read_until_closed, read_until_suffix, roundtrip,
    roundtrip_then_closed, show, status,
};

/// The server's resident memory in bytes, from INFO memory.
fn rss_bytes(con: &mut redis::Connection) -> u64 {
    let memory = info(con, "memory");
    info_field(&memory, "used_memory_rss")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("used_memory_rss in {memory}"))
}

/// Raw clients sending garbage and oversized frames each get their protocol error and are
/// closed, while a redis-crate client connected throughout keeps working and a user stored
/// before (TTL 300) has exactly the same STATUS afterwards.
#[test]
fn garbage_from_one_client_leaves_others_untouched() {
    let server = TestServer::start();
    let mut con = server.client();
    assert_eq!(heartbeat(&mut con, "4242", Some(300)), 1);
    assert_eq!(heartbeat(&mut con, "keeper-uuid-1", Some(300)), 1);
    let before = (status(&mut con, "4242"), status(&mut con, "keeper-uuid-1"));
    assert_eq!(before.0.0, "online");

    let mut binary_garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 13) as u8).collect();
    binary_garbage[0] = b'*';
    let garbage: Vec<(Vec<u8>, &str)> = vec![
        (b"*2\r\n:1\r\n:2\r\n".to_vec(), "expected '$', got ':'"),
        (binary_garbage, "invalid multibulk length"),
        (vec![b'z'; 200_000], "too big inline request"),
        (b"*1\r\n$600000000\r\n".to_vec(), "invalid bulk length"),
        (
            b"*99999999999999999999\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            b"HEARTBEAT \"4242\r\n".to_vec(),
            "unbalanced quotes in request",
        ),
    ];
    for (request, detail) in &garbage {
        let mut stream = server.raw();
        let _ = stream.write_all(request);
        let got = read_until_closed(&mut stream);
        let expected = format!("-ERR Protocol error: {detail}\r\n<CLOSED>");
        // A client whose unread garbage is still in flight may see the close as a reset that
        // arrives before the error line; the close itself is what must always happen.
        assert!(
            show(&got) == expected || got == b"<CLOSED>",
            "garbage {:?}: got {:?}",
            show(&request[..request.len().min(40)]),
            show(&got)
        );
        // Meanwhile the well-behaved client is served.
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG");
    }
    let after = (status(&mut con, "4242"), status(&mut con, "keeper-uuid-1"));
    assert_eq!(after, before, "the stored users are unchanged");
    assert_eq!(heartbeat(&mut con, "4243", None), 1);
    let mut fresh = server.client();
    assert_eq!(status(&mut fresh, "4242"), before.0);
}

/// A bulk length above proto-max-bulk-len (512 MB) is refused as soon as its header arrives,
/// without waiting for (or allocating) the body: the error comes back although no body byte
/// was sent, and the server's resident memory does not grow by anything near 600 MB.
#[test]
fn huge_declared_bulk_is_refused_before_its_body() {
    let server = TestServer::start();
    let mut con = server.client();
    let rss_before = rss_bytes(&mut con);
    for _ in 0..4 {
        let mut stream = server.raw();
        roundtrip_then_closed(
            &mut stream,
            b"*2\r\n$4\r\nECHO\r\n$600000000\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        );
    }
    let rss_after = rss_bytes(&mut con);
    assert!(
        rss_after < rss_before + 64 * 1024 * 1024,
        "resident memory grew from {rss_before} to {rss_after} bytes"
    );
    // A lower limit set with --proto-max-bulk-len is enforced the same way.
    let small = TestServer::start_with(&["--proto-max-bulk-len", "1024"]);
    let mut stream = small.raw();
    let early = exchange(&mut stream, b"*2\r\n$4\r\nECHO\r\n$1024\r\n");
    assert_eq!(show(&early), "", "a bulk at the limit waits for its body");
    let mut body = vec![b'b'; 1024];
    body.extend_from_slice(b"\r\n");
    let mut expected = b"$1024\r\n".to_vec();
    expected.extend_from_slice(&body);
    roundtrip(&mut stream, &body, &expected);
    roundtrip_then_closed(
        &mut stream,
        b"*2\r\n$4\r\nECHO\r\n$1025\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    );
}

/// With --client-query-buffer-limit 1048576, a client that sends more than 1 MiB of one
/// unfinished request is disconnected (with a WARN log line, and, as in Redis, no reply)
/// while another client keeps working; a complete request just under the limit is served.
#[test]
fn query_buffer_limit_disconnects_the_client() {
    let mut server = TestServer::start_with(&["--client-query-buffer-limit", "1048576"]);
    server.expect_log("query buffer limit");
    let mut con = server.client();
    assert_eq!(heartbeat(&mut con, "9", Some(300)), 1);

    let mut ok_stream = server.raw();
    let arg = vec![b'a'; 1_000_000];
    let mut expected = b"$1000000\r\n".to_vec();
    expected.extend_from_slice(&arg);
    expected.extend_from_slice(b"\r\n");
    roundtrip(
        &mut ok_stream,
        &crate::support::resp_command(&[b"ECHO", &arg]),
        &expected,
    );

    let mut stream = server.raw();
    let _ = stream.write_all(b"*2\r\n$4\r\nECHO\r\n$4000000\r\n");
    let chunk = vec![b'q'; 64 * 1024];
    for _ in 0..24 {
        // 1.5 MiB of the declared 4 MB body; the server may close while we are writing.
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    let got = read_until_closed(&mut stream);
    assert_eq!(show(&got), "<CLOSED>", "closed without a reply");
    let warned = poll(Duration::from_secs(10), || {
        server
            .log_lines()
            .into_iter()
            .find(|l| l.contains(" WARN ") && l.contains("query buffer limit"))
    });
    assert!(warned.is_some(), "a WARN line names the query buffer limit");
    assert_eq!(status(&mut con, "9").0, "online");
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

/// With --maxclients 2, a third connection is refused with exactly
/// `-ERR max number of clients reached` and closed (INFO counts it); once a slot frees up,
/// connecting works again.
#[test]
fn maxclients_refuses_the_extra_connection() {
    let server = TestServer::start_with(&["--maxclients", "2"]);
    let mut first = server.raw();
    let mut second = server.raw();
    roundtrip(&mut first, b"PING\r\n", b"+PONG\r\n");
    roundtrip(&mut second, b"PING\r\n", b"+PONG\r\n");
    let mut third = server.raw();
    let got = read_until_closed(&mut third);
    assert_eq!(show(&got), "-ERR max number of clients reached\r\n<CLOSED>");
    // The two admitted clients are unaffected.
    roundtrip(&mut first, b"HEARTBEAT 1\r\n", b":1\r\n");
    second.write_all(b"INFO clients\r\n").unwrap();
    let clients = show(&read_until_suffix(
        &mut second,
        b"blocked_clients:0\r\n\r\n",
    ));
    assert_eq!(
        info_field(&clients, "connected_clients").as_deref(),
        Some("2")
    );
    assert_eq!(info_field(&clients, "maxclients").as_deref(), Some("2"));

    roundtrip_then_closed(&mut second, b"QUIT\r\n", b"+OK\r\n");
    let reconnected = poll(Duration::from_secs(10), || {
        let mut stream = server.raw();
        let _ = stream.write_all(b"STATUS 1\r\n");
        let reply = read_until_suffix(&mut stream, b"\r\n");
        (reply.starts_with(b"*2\r\n")).then_some(stream)
    });
    assert!(reconnected.is_some(), "a freed slot can be used again");
    first.write_all(b"INFO stats\r\n").unwrap();
    let stats = show(&read_until_suffix(
        &mut first,
        b"total_error_replies_protocol:0\r\n\r\n",
    ));
    let rejected: u64 = info_field(&stats, "rejected_connections")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("rejected_connections in {stats}"));
    assert!(rejected >= 1, "{stats}");
}
