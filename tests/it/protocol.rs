//! The wire protocol: pipelining, inline commands, requests split across writes, and the exact
//! bytes of RESP2 and RESP3 replies.

use std::io::Write;

use redis::Value;

use crate::support::{TestServer, read_exact_len, resp_command};
use crate::util::{parse_status, read_lines, read_until_suffix, roundtrip, show};

/// Sends 10,000 pipelined commands on `con` and checks the 10,000 replies arrive in order.
fn check_pipeline_order(con: &mut redis::Connection, prefix: &str) {
    // Commands cycle through three kinds whose replies differ, so any reordering shows:
    // HEARTBEAT of a new user (:1), HEARTBEAT of that user again (:0), STATUS of a user never
    // seen ([offline, nil]).
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        match i % 3 {
            0 => pipe.cmd("HEARTBEAT").arg(format!("{prefix}{i}")),
            1 => pipe.cmd("HEARTBEAT").arg(format!("{prefix}{}", i - 1)),
            _ => pipe.cmd("STATUS").arg(format!("{prefix}never-{i}")),
        };
    }
    let replies: Vec<Value> = pipe.query(con).expect("pipeline succeeds");
    assert_eq!(replies.len(), 10_000);
    for (i, reply) in replies.iter().enumerate() {
        match i % 3 {
            0 => assert_eq!(reply, &Value::Int(1), "reply {i}"),
            1 => assert_eq!(reply, &Value::Int(0), "reply {i}"),
            _ => assert_eq!(
                parse_status(reply),
                ("offline".to_string(), None),
                "reply {i}"
            ),
        }
    }
    // Every user the pipeline heartbeated is online afterwards.
    let status: Value = redis::cmd("STATUS")
        .arg(format!("{prefix}9999"))
        .query(con)
        .unwrap();
    assert_eq!(parse_status(&status).0, "online");
}

/// 10,000 HEARTBEAT/STATUS commands sent as one redis-crate pipeline get 10,000 replies in
/// request order, over RESP2 and over RESP3.
#[test]
fn pipeline_of_10000_commands_replies_in_order() {
    let server = TestServer::start();
    check_pipeline_order(&mut server.client(), "");
    check_pipeline_order(&mut server.client_resp3(), "r3-");
}

/// 10,000 inline and multibulk commands written in one go over raw TCP are answered with
/// exactly the concatenation of their 10,000 replies, in order.
#[test]
fn raw_pipeline_of_10000_commands_exact_bytes() {
    let server = TestServer::start();
    let mut stream = server.raw();
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..10_000 {
        let id = i.to_string();
        match i % 4 {
            0 => {
                request.extend_from_slice(format!("HEARTBEAT {id}\r\n").as_bytes());
                expected.extend_from_slice(b":1\r\n");
            }
            1 => {
                request.extend(resp_command(&[
                    b"HEARTBEAT",
                    (i - 1).to_string().as_bytes(),
                ]));
                expected.extend_from_slice(b":0\r\n");
            }
            2 => {
                request.extend(resp_command(&[b"ECHO", id.as_bytes()]));
                expected.extend_from_slice(format!("${}\r\n{id}\r\n", id.len()).as_bytes());
            }
            _ => {
                request.extend_from_slice(format!("OFFLINE {}\r\n", i - 3).as_bytes());
                expected.extend_from_slice(b":1\r\n");
            }
        }
    }
    stream.write_all(&request).expect("write");
    let got = read_exact_len(&mut stream, expected.len());
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "replies differ from the expected sequence");
}

/// Inline commands as telnet or a tty-less redis-cli send them get exact replies: PING,
/// HEARTBEAT (:1 then :0), STATUS, Redis's quoting rules, bare LF line ends and blank lines.
#[test]
fn inline_commands_exact_bytes() {
    let server = TestServer::start();
    let mut stream = server.raw();
    roundtrip(&mut stream, b"PING\r\n", b"+PONG\r\n");
    roundtrip(&mut stream, b"HEARTBEAT 7\r\n", b":1\r\n");
    roundtrip(&mut stream, b"HEARTBEAT 7\r\n", b":0\r\n");
    stream.write_all(b"STATUS 7\r\n").unwrap();
    let reply = show(&read_lines(&mut stream, 4));
    let ms = reply
        .strip_prefix("*2\r\n$6\r\nonline\r\n:")
        .and_then(|rest| rest.strip_suffix("\r\n"))
        .unwrap_or_else(|| panic!("STATUS 7 answered {reply:?}"));
    let ms: i64 = ms.parse().expect("last-seen is an integer");
    assert!(ms > 1_577_836_800_000, "a Unix-millisecond time: {ms}");
    roundtrip(
        &mut stream,
        b"STATUS 8\r\n",
        b"*2\r\n$7\r\noffline\r\n$-1\r\n",
    );
    roundtrip(&mut stream, b"ECHO \"a b\"\r\n", b"$3\r\na b\r\n");
    roundtrip(&mut stream, b"ECHO 'it\\'s'\r\n", b"$4\r\nit's\r\n");
    roundtrip(&mut stream, b"ECHO \"\\x41\\tB\"\r\n", b"$3\r\nA\tB\r\n");
    roundtrip(&mut stream, b"ECHO \"\"\r\n", b"$0\r\n\r\n");
    roundtrip(&mut stream, b"  ping   \r\n", b"+PONG\r\n");
    roundtrip(&mut stream, b"ECHO a\nECHO b\n", b"$1\r\na\r\n$1\r\nb\r\n");
    roundtrip(&mut stream, b"\r\n\r\n\nPING\r\n", b"+PONG\r\n");
    roundtrip(&mut stream, b"*0\r\n*-1\r\nPING\r\n", b"+PONG\r\n");
    roundtrip(&mut stream, b"OFFLINE 7\r\n", b":1\r\n");
}

/// A multibulk request written one byte at a time, and a pipeline split at every header, is
/// answered exactly as if it had arrived whole.
#[test]
fn requests_split_across_writes() {
    let server = TestServer::start();
    let mut stream = server.raw();
    let request = resp_command(&[b"ECHO", b"split\r\nacross"]);
    for byte in &request {
        stream.write_all(&[*byte]).unwrap();
        stream.flush().unwrap();
    }
    let got = read_exact_len(&mut stream, b"$13\r\nsplit\r\nacross\r\n".len());
    assert_eq!(show(&got), "$13\r\nsplit\r\nacross\r\n");
    let mut pipeline = resp_command(&[b"HEARTBEAT", b"55"]);
    pipeline.extend(resp_command(&[b"HEARTBEAT", b"55"]));
    pipeline.extend_from_slice(b"PING\r\n");
    for piece in pipeline.chunks(5) {
        stream.write_all(piece).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let got = read_exact_len(&mut stream, b":1\r\n:0\r\n+PONG\r\n".len());
    assert_eq!(show(&got), ":1\r\n:0\r\n+PONG\r\n");
}

/// In RESP3 a missing value is `_`: after HELLO 3 the raw bytes of STATUS 999 end in `_\r\n`
/// inside a `%2` map, and CLIENT GETNAME of an unnamed connection is `_\r\n`; in RESP2 the same
/// requests answer `$-1\r\n`.
#[test]
fn resp3_null_is_underscore() {
    let server = TestServer::start();
    let mut stream = server.raw();
    roundtrip(
        &mut stream,
        b"STATUS 999\r\n",
        b"*2\r\n$7\r\noffline\r\n$-1\r\n",
    );
    roundtrip(&mut stream, b"CLIENT GETNAME\r\n", b"$-1\r\n");
    stream.write_all(b"HELLO 3\r\nPING\r\n").unwrap();
    let hello = read_until_suffix(&mut stream, b"+PONG\r\n");
    assert!(hello.starts_with(b"%7\r\n"), "{}", show(&hello));
    roundtrip(
        &mut stream,
        b"STATUS 999\r\n",
        b"%2\r\n$5\r\nstate\r\n$7\r\noffline\r\n$12\r\nlast_seen_ms\r\n_\r\n",
    );
    roundtrip(&mut stream, b"CLIENT GETNAME\r\n", b"_\r\n");
    roundtrip(
        &mut stream,
        b"MSTATUS 999 x\r\n",
        b"*2\r\n%2\r\n$5\r\nstate\r\n$7\r\noffline\r\n$12\r\nlast_seen_ms\r\n_\r\n\
          %2\r\n$5\r\nstate\r\n$7\r\noffline\r\n$12\r\nlast_seen_ms\r\n_\r\n",
    );
}
