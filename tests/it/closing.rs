//! Every way a connection ends is counted by its reason in `INFO stats`
//! (`connections_closed_<reason>`, and Redis's `client_*_buffer_limit_disconnections`), and
//! every refused command in `total_error_replies`: each reason is provoked once over a real
//! socket and the counters are read back.

use std::io::Write;
use std::time::Duration;

use crate::support::TestServer;
use crate::util::{info, info_field, poll, read_until_closed};

fn stat(con: &mut redis::Connection, field: &str) -> u64 {
    info_field(&info(con, "stats"), field)
        .unwrap_or_else(|| panic!("INFO stats has {field}"))
        .parse()
        .expect("a counter")
}

/// Waits until `field` reaches `want` (connections are counted as their tasks end).
fn await_stat(con: &mut redis::Connection, field: &str, want: u64) {
    let reached = poll(Duration::from_secs(5), || {
        (stat(con, field) >= want).then_some(())
    });
    assert!(
        reached.is_some(),
        "{field} reached {want}: {}",
        stat(con, field)
    );
}

/// QUIT, an end of stream, a protocol error, CLIENT KILL and the query-buffer limit are each
/// counted under their own reason; error replies are counted and leave the connection open.
#[test]
fn close_reasons_and_error_replies_are_counted() {
    let mut server = TestServer::start_with(&["--client-query-buffer-limit", "1048576"]);
    server.expect_log("query buffer limit");
    let mut admin = server.client();
    for field in [
        "connections_closed_quit",
        "connections_closed_client_closed",
        "connections_closed_protocol_error",
        "connections_closed_killed",
        "client_query_buffer_limit_disconnections",
        "total_error_replies",
    ] {
        assert_eq!(stat(&mut admin, field), 0, "{field} starts at 0");
    }

    let mut quitter = server.raw();
    quitter.write_all(b"QUIT\r\n").unwrap();
    assert!(read_until_closed(&mut quitter).starts_with(b"+OK\r\n"));
    await_stat(&mut admin, "connections_closed_quit", 1);

    drop(server.raw());
    await_stat(&mut admin, "connections_closed_client_closed", 1);

    let mut breaker = server.raw();
    breaker.write_all(b"*1\r\n$x\r\n").unwrap();
    let reply = read_until_closed(&mut breaker);
    assert!(reply.starts_with(b"-ERR Protocol error"), "{reply:?}");
    await_stat(&mut admin, "connections_closed_protocol_error", 1);

    let mut victim = server.client();
    let victim_id: u64 = redis::cmd("CLIENT").arg("ID").query(&mut victim).unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(victim_id)
        .query(&mut admin)
        .unwrap();
    assert_eq!(killed, 1);
    await_stat(&mut admin, "connections_closed_killed", 1);

    let mut flooder = server.raw();
    let chunk = vec![b'a'; 64 * 1024];
    let _ = flooder.write_all(b"*1\r\n$2000000\r\n");
    for _ in 0..32 {
        if flooder.write_all(&chunk).is_err() {
            break;
        }
    }
    await_stat(&mut admin, "client_query_buffer_limit_disconnections", 1);
    assert_eq!(stat(&mut admin, "connections_closed_query_buffer_limit"), 1);

    let before = stat(&mut admin, "total_error_replies");
    let refused: redis::RedisResult<()> = redis::cmd("NOSUCHCOMMAND").query(&mut admin);
    assert!(refused.is_err());
    let refused: redis::RedisResult<()> = redis::cmd("HEARTBEAT")
        .arg("1")
        .arg("TTL")
        .arg("0")
        .query(&mut admin);
    assert!(refused.is_err());
    assert_eq!(stat(&mut admin, "total_error_replies"), before + 2);
}
