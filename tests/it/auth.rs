//! Authentication with --requirepass: NOAUTH before AUTH, AUTH and HELLO AUTH, passwords in
//! redis-crate URLs, RESET, and AUTH on a server without a password.

use std::io::Write;

use redis::Value;

use crate::support::{TestServer, error_text, resp_command};
use crate::util::{read_until_suffix, roundtrip, roundtrip_then_closed, show};

const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// On a --requirepass server every command but AUTH, HELLO and QUIT (RESET included, by
/// presenced's choice) answers exactly `NOAUTH Authentication required.` before AUTH and
/// changes nothing; unknown commands and wrong arities are still reported as such.
#[test]
fn every_command_but_auth_hello_quit_needs_auth() {
    let server = TestServer::start_with(&["--requirepass", "secret"]);
    let mut stream = server.raw();
    let commands: &[&[&[u8]]] = &[
        &[b"PING"],
        &[b"ECHO", b"x"],
        &[b"HEARTBEAT", b"1"],
        &[b"HEARTBEAT", b"2", b"TTL", b"5"],
        &[b"MHEARTBEAT", b"1", b"2"],
        &[b"STATUS", b"1"],
        &[b"MSTATUS", b"1", b"2"],
        &[b"OFFLINE", b"1"],
        &[b"SELECT", b"0"],
        &[b"RESET"],
        &[b"CLIENT", b"ID"],
        &[b"CLIENT", b"SETNAME", b"x"],
        &[b"CLIENT", b"LIST"],
        &[b"CLIENT", b"KILL", b"ID", b"1"],
        &[b"CLIENT", b"FOO"],
        &[b"COMMAND"],
        &[b"COMMAND", b"COUNT"],
        &[b"INFO"],
        &[b"DBSIZE"],
        &[b"CONFIG", b"GET", b"requirepass"],
        &[b"TIME"],
        &[b"FLUSHALL"],
        &[b"SHUTDOWN"],
    ];
    for args in commands {
        roundtrip(&mut stream, &resp_command(args), NOAUTH);
    }
    roundtrip(&mut stream, b"ping\r\n", NOAUTH);
    roundtrip(
        &mut stream,
        b"NOSUCH a\r\n",
        b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n",
    );
    roundtrip(
        &mut stream,
        b"STATUS\r\n",
        b"-ERR wrong number of arguments for 'status' command\r\n",
    );
    roundtrip(
        &mut stream,
        b"HELLO 3\r\n",
        b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the \
          HELLO AUTH <user> <pass> option can be used to authenticate the client and select \
          the RESP protocol version at the same time\r\n",
    );
    roundtrip(&mut stream, b"AUTH secret\r\n", b"+OK\r\n");
    // Nothing the unauthenticated commands asked for happened.
    roundtrip(
        &mut stream,
        b"STATUS 1\r\n",
        b"*2\r\n$7\r\noffline\r\n$-1\r\n",
    );
    roundtrip(&mut stream, b"DBSIZE\r\n", b":0\r\n");
    // QUIT works before AUTH.
    let mut stream = server.raw();
    roundtrip_then_closed(&mut stream, b"QUIT\r\n", b"+OK\r\n");
    // The redis crate without a password connects but its commands are refused.
    let mut con = server.client();
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("HEARTBEAT").arg("1")),
        "NOAUTH Authentication required."
    );
}

/// Every command in the server's own table (read with COMMAND after authenticating, so that
/// commands added later are covered too) except AUTH, HELLO and QUIT answers exactly NOAUTH
/// on an unauthenticated connection, given the fewest arguments its arity allows.
#[test]
fn every_listed_command_needs_auth() {
    let server = TestServer::start_with(&["--requirepass", "secret"]);
    let mut con = redis::Client::open(format!("redis://:secret@127.0.0.1:{}/", server.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let table: Vec<Value> = redis::cmd("COMMAND").query(&mut con).unwrap();
    assert!(table.len() >= 20, "{table:?}");
    let mut stream = server.raw();
    let mut checked = 0;
    for entry in &table {
        let Value::Array(fields) = entry else {
            panic!("COMMAND entry {entry:?}")
        };
        let name = crate::util::as_text(&fields[0]);
        let Value::Int(arity) = fields[1] else {
            panic!("arity of {name}: {:?}", fields[1])
        };
        if ["auth", "hello", "quit"].contains(&name.as_str()) {
            continue;
        }
        let mut args: Vec<&[u8]> = vec![name.as_bytes()];
        args.extend(std::iter::repeat_n(
            &b"1"[..],
            arity.unsigned_abs() as usize - 1,
        ));
        roundtrip(&mut stream, &resp_command(&args), NOAUTH);
        checked += 1;
    }
    assert_eq!(checked, table.len() - 3);
    roundtrip(&mut stream, b"AUTH secret\r\nPING\r\n", b"+OK\r\n+PONG\r\n");
}

/// AUTH with a wrong password or user answers WRONGPASS and leaves the connection
/// unauthenticated; AUTH secret and AUTH default secret answer OK and commands then work.
#[test]
fn auth_with_wrong_and_right_passwords() {
    let server = TestServer::start_with(&["--requirepass", "secret"]);
    let mut stream = server.raw();
    roundtrip(&mut stream, b"AUTH wrong\r\n", WRONGPASS);
    roundtrip(&mut stream, b"AUTH secre\r\n", WRONGPASS);
    roundtrip(&mut stream, b"AUTH default wrong\r\n", WRONGPASS);
    roundtrip(&mut stream, b"AUTH bob secret\r\n", WRONGPASS);
    roundtrip(&mut stream, b"PING\r\n", NOAUTH);
    roundtrip(&mut stream, b"AUTH a b c\r\n", b"-ERR syntax error\r\n");
    roundtrip(&mut stream, b"AUTH secret\r\n", b"+OK\r\n");
    roundtrip(&mut stream, b"HEARTBEAT 5\r\n", b":1\r\n");
    roundtrip(&mut stream, b"PING\r\n", b"+PONG\r\n");
    // A wrong AUTH after a right one does not log the connection out (as in Redis).
    roundtrip(&mut stream, b"AUTH wrong\r\n", WRONGPASS);
    roundtrip(&mut stream, b"PING\r\n", b"+PONG\r\n");

    let mut stream = server.raw();
    roundtrip(&mut stream, b"AUTH default secret\r\n", b"+OK\r\n");
    roundtrip(&mut stream, b"HEARTBEAT 5\r\n", b":0\r\n");
}

/// HELLO 3 AUTH default secret authenticates and switches to RESP3 in one step (wrong
/// credentials get WRONGPASS), and HELLO AUTH with SETNAME names the connection.
#[test]
fn hello_with_auth() {
    let server = TestServer::start_with(&["--requirepass", "secret"]);
    let mut stream = server.raw();
    roundtrip(&mut stream, b"HELLO 3 AUTH default wrong\r\n", WRONGPASS);
    roundtrip(&mut stream, b"PING\r\n", NOAUTH);
    stream
        .write_all(b"HELLO 3 AUTH default secret SETNAME gateway-1\r\nPING\r\n")
        .unwrap();
    let reply = read_until_suffix(&mut stream, b"+PONG\r\n");
    assert!(
        reply.starts_with(b"%7\r\n$6\r\nserver\r\n"),
        "{}",
        show(&reply)
    );
    assert!(
        show(&reply).contains("$5\r\nproto\r\n:3\r\n"),
        "{}",
        show(&reply)
    );
    roundtrip(&mut stream, b"CLIENT GETNAME\r\n", b"$9\r\ngateway-1\r\n");
    roundtrip(
        &mut stream,
        b"STATUS 4\r\n",
        b"%2\r\n$5\r\nstate\r\n$7\r\noffline\r\n$12\r\nlast_seen_ms\r\n_\r\n",
    );
    // HELLO 2 AUTH works the same way and stays in RESP2.
    let mut stream = server.raw();
    stream
        .write_all(b"HELLO 2 AUTH default secret\r\nSTATUS 4\r\n")
        .unwrap();
    let reply = read_until_suffix(&mut stream, b"$-1\r\n");
    assert!(reply.starts_with(b"*14\r\n"), "{}", show(&reply));
    assert!(
        reply.ends_with(b"*2\r\n$7\r\noffline\r\n$-1\r\n"),
        "{}",
        show(&reply)
    );
}

/// The redis crate authenticates from a URL password (redis://:secret@..., with or without the
/// user name, RESP2 and RESP3), and a wrong URL password fails to connect.
#[test]
fn redis_url_with_password_connects() {
    let server = TestServer::start_with(&["--requirepass", "secret"]);
    for url in [
        format!("redis://:secret@127.0.0.1:{}/", server.port),
        format!("redis://default:secret@127.0.0.1:{}/", server.port),
        format!("redis://:secret@127.0.0.1:{}/?protocol=resp3", server.port),
    ] {
        let mut con = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap_or_else(|e| panic!("{url} connects: {e}"));
        let n: i64 = redis::cmd("HEARTBEAT").arg("8").query(&mut con).unwrap();
        assert!(n == 0 || n == 1);
        let status: Value = redis::cmd("STATUS").arg("8").query(&mut con).unwrap();
        assert_eq!(crate::util::parse_status(&status).0, "online", "{url}");
    }
    let wrong = format!("redis://:nope@127.0.0.1:{}/", server.port);
    let result = redis::Client::open(wrong.as_str())
        .unwrap()
        .get_connection();
    assert!(result.is_err(), "a wrong password must not connect");
}

/// RESET after AUTH on a --requirepass server answers RESET and makes the connection
/// unauthenticated again, as in Redis.
#[test]
fn reset_logs_the_connection_out() {
    let server = TestServer::start_with(&["--requirepass", "secret"]);
    let mut stream = server.raw();
    roundtrip(&mut stream, b"AUTH secret\r\n", b"+OK\r\n");
    roundtrip(&mut stream, b"RESET\r\n", b"+RESET\r\n");
    roundtrip(&mut stream, b"PING\r\n", NOAUTH);
    roundtrip(&mut stream, b"AUTH secret\r\nPING\r\n", b"+OK\r\n+PONG\r\n");
}

/// Without --requirepass, AUTH <password> gets Redis's "no password configured" error, while
/// AUTH default <anything> is accepted (the default user has no password) and HELLO needs no
/// credentials.
#[test]
fn auth_without_requirepass() {
    let server = TestServer::start();
    let mut con = server.client();
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("AUTH").arg("x")),
        "ERR AUTH <password> called without any password configured for the default user. \
         Are you sure your configuration is correct?"
    );
    let ok: String = redis::cmd("AUTH")
        .arg("default")
        .arg("anything")
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("AUTH").arg("bob").arg("x")),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    let mut stream = server.raw();
    stream.write_all(b"HELLO 3\r\nPING\r\n").unwrap();
    let reply = read_until_suffix(&mut stream, b"+PONG\r\n");
    assert!(reply.starts_with(b"%7\r\n"), "{}", show(&reply));
}
