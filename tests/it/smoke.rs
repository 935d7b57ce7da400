//! A first end-to-end check: the binary starts, answers PING and records a heartbeat.

use crate::support::TestServer;

/// One heartbeat over RESP2 makes a user online, as STATUS reports.
#[test]
fn heartbeat_then_status() {
    let server = TestServer::start();
    let mut con = server.client();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let came_online: i64 = redis::cmd("HEARTBEAT").arg("42").query(&mut con).unwrap();
    assert_eq!(came_online, 1);
    let (state, last_seen_ms): (String, Option<i64>) =
        redis::cmd("STATUS").arg("42").query(&mut con).unwrap();
    assert_eq!(state, "online");
    assert!(last_seen_ms.is_some());
    let mut con3 = server.client_resp3();
    let status: redis::Value = redis::cmd("STATUS").arg("42").query(&mut con3).unwrap();
    assert!(matches!(status, redis::Value::Map(_)), "{status:?}");
    let code = crate::support::error_text::<i64>(&mut con, redis::cmd("NOSUCH").arg("a"));
    assert_eq!(
        code,
        "ERR unknown command 'NOSUCH', with args beginning with: 'a' "
    );
}
