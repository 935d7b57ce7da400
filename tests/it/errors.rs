//! Every error a client can provoke, with the exact text (Redis's where Redis has one), and the
//! protocol errors after which the server closes the connection.

use redis::Value;

use crate::support::{TestServer, error_text, resp_command};
use crate::util::{roundtrip, roundtrip_then_closed, status};

/// An unknown command is answered with Redis's text, including the quoted first arguments and
/// the trailing space, cut after about 128 bytes of arguments; the connection stays usable.
#[test]
fn unknown_command() {
    let server = TestServer::start();
    let mut con = server.client();
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("foo").arg("a").arg("b")),
        "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        error_text::<Value>(&mut con, &mut redis::cmd("FOO")),
        "ERR unknown command 'FOO', with args beginning with: "
    );
    let mut stream = server.raw();
    let mut long = b"foo".to_vec();
    for _ in 0..20 {
        long.extend_from_slice(b" abcdefghij");
    }
    long.extend_from_slice(b"\r\n");
    // Byte for byte what Redis 7 answers to the same line.
    roundtrip(
        &mut stream,
        &long,
        b"-ERR unknown command 'foo', with args beginning with: 'abcdefghij' 'abcdefghij' \
          'abcdefghij' 'abcdefghij' 'abcdefghij' 'abcdefghij' 'abcdefghij' 'abcdefghij' \
          'abcdefghij' 'abcdefghij' \r\n",
    );
    roundtrip(&mut stream, b"PING\r\n", b"+PONG\r\n");
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

/// A wrong argument count names the command, or `parent|sub` for a subcommand, as Redis does.
#[test]
fn wrong_number_of_arguments() {
    let server = TestServer::start();
    let mut con = server.client();
    let cases: &[(&[&str], &str)] = &[
        (&["HEARTBEAT"], "heartbeat"),
        (&["MHEARTBEAT"], "mheartbeat"),
        (&["STATUS"], "status"),
        (&["STATUS", "1", "2"], "status"),
        (&["MSTATUS"], "mstatus"),
        (&["OFFLINE"], "offline"),
        (&["ECHO"], "echo"),
        (&["PING", "a", "b"], "ping"),
        (&["SELECT"], "select"),
        (&["DBSIZE", "x"], "dbsize"),
        (&["TIME", "x"], "time"),
        (&["CLIENT"], "client"),
        (&["CLIENT", "SETNAME"], "client|setname"),
        (&["CLIENT", "ID", "x"], "client|id"),
        (&["CONFIG", "GET"], "config|get"),
        (&["COMMAND", "COUNT", "x"], "command|count"),
    ];
    for (args, name) in cases {
        let mut cmd = redis::cmd(args[0]);
        cmd.arg(&args[1..]);
        assert_eq!(
            error_text::<Value>(&mut con, &mut cmd),
            format!("ERR wrong number of arguments for '{name}' command"),
            "{args:?}"
        );
    }
}

/// An unknown subcommand is echoed as typed with the family's HELP hint.
#[test]
fn unknown_subcommand() {
    let server = TestServer::start();
    let mut con = server.client();
    for (family, hint) in [
        ("CLIENT", "CLIENT"),
        ("command", "COMMAND"),
        ("Config", "CONFIG"),
    ] {
        assert_eq!(
            error_text::<Value>(&mut con, redis::cmd(family).arg("foo")),
            format!("ERR unknown subcommand 'foo'. Try {hint} HELP.")
        );
    }
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("CLIENT").arg("FOO")),
        "ERR unknown subcommand 'FOO'. Try CLIENT HELP."
    );
}

/// A TTL that is not an integer from 1 to 86400 is refused with one message and changes
/// nothing; a missing TTL value or an unknown option is a syntax error; 1 and 86400 work.
#[test]
fn bad_ttl() {
    let server = TestServer::start();
    let mut con = server.client();
    for ttl in ["0", "86401", "abc", "1.5", "-1", "", " 5", "+5", "05"] {
        assert_eq!(
            error_text::<Value>(
                &mut con,
                redis::cmd("HEARTBEAT").arg("9").arg("TTL").arg(ttl)
            ),
            format!("ERR invalid TTL '{ttl}': must be an integer from 1 to 86400 seconds"),
            "TTL {ttl:?}"
        );
    }
    assert_eq!(status(&mut con, "9"), ("offline".to_string(), None));
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("HEARTBEAT").arg("9").arg("TTL")),
        "ERR syntax error"
    );
    assert_eq!(
        error_text::<Value>(
            &mut con,
            redis::cmd("HEARTBEAT").arg("9").arg("EX").arg("5")
        ),
        "ERR syntax error"
    );
    for ttl in [1, 86_400] {
        let n: i64 = redis::cmd("HEARTBEAT")
            .arg(format!("ttl-{ttl}"))
            .arg("ttl")
            .arg(ttl)
            .query(&mut con)
            .unwrap();
        assert_eq!(n, 1);
    }
}

/// An empty user ID or one longer than 256 bytes is refused by every presence command; 256
/// bytes is fine.
#[test]
fn bad_user_id() {
    let server = TestServer::start();
    let mut con = server.client();
    let too_long = "u".repeat(257);
    for (id, message) in [
        ("", "ERR invalid user id: empty"),
        (
            too_long.as_str(),
            "ERR invalid user id: longer than 256 bytes",
        ),
    ] {
        for command in ["HEARTBEAT", "STATUS", "OFFLINE", "MHEARTBEAT", "MSTATUS"] {
            assert_eq!(
                error_text::<Value>(&mut con, redis::cmd(command).arg(id)),
                message,
                "{command} of a {}-byte id",
                id.len()
            );
        }
        assert_eq!(
            error_text::<Value>(&mut con, redis::cmd("MSTATUS").arg("1").arg(id).arg("2")),
            message
        );
    }
    let longest = "u".repeat(256);
    let n: i64 = redis::cmd("HEARTBEAT")
        .arg(&longest)
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
}

/// SELECT of any database but 0, HELLO with an unsupported or non-numeric version or an
/// unknown option, and a client name with a space get Redis's exact errors.
#[test]
fn select_hello_and_name_errors() {
    let server = TestServer::start();
    let mut con = server.client();
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("SELECT").arg(1)),
        "ERR DB index is out of range"
    );
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("SELECT").arg("abc")),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("HELLO").arg(4)),
        "NOPROTO unsupported protocol version"
    );
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("HELLO").arg(1)),
        "NOPROTO unsupported protocol version"
    );
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("HELLO").arg("abc")),
        "ERR Protocol version is not an integer or out of range"
    );
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("HELLO").arg(3).arg("foo")),
        "ERR Syntax error in HELLO option 'foo'"
    );
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("CLIENT").arg("SETNAME").arg("a b")),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    // The failed HELLOs left the connection in RESP2.
    let mut stream = server.raw();
    roundtrip(
        &mut stream,
        b"HELLO 4\r\nSTATUS 1\r\n",
        b"-NOPROTO unsupported protocol version\r\n*2\r\n$7\r\noffline\r\n$-1\r\n",
    );
}

/// Each protocol violation is answered with Redis 7's exact `Protocol error` line and then the
/// server closes the connection; a command earlier in the same write is still answered.
#[test]
fn protocol_errors_close_the_connection() {
    let server = TestServer::start();
    let mut too_big_count = b"*".to_vec();
    too_big_count.extend(std::iter::repeat_n(b'1', 70_000));
    let mut too_big_bulk_count = b"*1\r\n$".to_vec();
    too_big_bulk_count.extend(std::iter::repeat_n(b'1', 70_000));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"*2\r\n:1\r\n".to_vec(), "expected '$', got ':'"),
        (b"*1\r\n+PING\r\n".to_vec(), "expected '$', got '+'"),
        (b"*abc\r\n".to_vec(), "invalid multibulk length"),
        (b"*3000000000\r\n".to_vec(), "invalid multibulk length"),
        (b"*01\r\n".to_vec(), "invalid multibulk length"),
        (b"*1\r\n$-1\r\n".to_vec(), "invalid bulk length"),
        (b"*1\r\n$abc\r\n".to_vec(), "invalid bulk length"),
        (b"*1\r\n$600000000\r\n".to_vec(), "invalid bulk length"),
        (vec![b'x'; 70_000], "too big inline request"),
        (b"ECHO \"a b\r\n".to_vec(), "unbalanced quotes in request"),
        (b"ECHO 'a\r\n".to_vec(), "unbalanced quotes in request"),
        (b"ECHO \"a\"b\r\n".to_vec(), "unbalanced quotes in request"),
        (too_big_count, "too big mbulk count string"),
        (too_big_bulk_count, "too big bulk count string"),
    ];
    for (request, detail) in &cases {
        let mut stream = server.raw();
        roundtrip_then_closed(
            &mut stream,
            request,
            format!("-ERR Protocol error: {detail}\r\n").as_bytes(),
        );
    }
    let mut stream = server.raw();
    let mut request = resp_command(&[b"HEARTBEAT", b"31"]);
    request.extend_from_slice(b"*2\r\n:1\r\nPING\r\n");
    roundtrip_then_closed(
        &mut stream,
        &request,
        b":1\r\n-ERR Protocol error: expected '$', got ':'\r\n",
    );
    // The server itself is fine and counted the errors.
    let mut con = server.client();
    assert_eq!(status(&mut con, "31").0, "online");
    let info = crate::util::info(&mut con, "stats");
    assert_eq!(
        crate::util::info_field(&info, "total_error_replies_protocol").as_deref(),
        Some((cases.len() + 1).to_string().as_str())
    );
}

/// Before AUTH on a --requirepass server, a multibulk of more than 10 arguments or a bulk of
/// more than 16 KiB is a protocol error that closes the connection (Redis's rule); after AUTH
/// the same sizes are accepted.
#[test]
fn unauthenticated_request_size_limits() {
    let server = TestServer::start_with(&["--requirepass", "secret"]);
    let mut stream = server.raw();
    roundtrip_then_closed(
        &mut stream,
        b"*11\r\n",
        b"-ERR Protocol error: unauthenticated multibulk length\r\n",
    );
    let mut stream = server.raw();
    roundtrip_then_closed(
        &mut stream,
        b"*1\r\n$16385\r\n",
        b"-ERR Protocol error: unauthenticated bulk length\r\n",
    );
    let mut stream = server.raw();
    roundtrip(
        &mut stream,
        &resp_command(&[&b"PING"[..]; 10]),
        b"-NOAUTH Authentication required.\r\n",
    );
    roundtrip(&mut stream, b"AUTH secret\r\n", b"+OK\r\n");
    let ids: Vec<Vec<u8>> = (0..11).map(|i| i.to_string().into_bytes()).collect();
    let mut args: Vec<&[u8]> = vec![b"MHEARTBEAT"];
    args.extend(ids.iter().map(|v| v.as_slice()));
    roundtrip(&mut stream, &resp_command(&args), b":11\r\n");
    let big = vec![b'e'; 20_000];
    let mut expected = b"$20000\r\n".to_vec();
    expected.extend_from_slice(&big);
    expected.extend_from_slice(b"\r\n");
    roundtrip(&mut stream, &resp_command(&[b"ECHO", &big]), &expected);
}
