//! Redis drop-in mode end to end: presence keys (`--key-pattern`) through the string and
//! generic key commands, with Redis 7's replies, errors and keyspace notifications — and Redis's
//! own tools (redis-benchmark, redis-cli) pointed at presenced.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use redis::Value;

use crate::subscriber::RawSubscriber;
use crate::support::{TestServer, error_text, exchange, heavy_test_lock, resp_command};
use crate::util::{now_ms, parse_status, poll, read_until, roundtrip, status};

/// The presence key of `id` under the default pattern `user:{id}:presence`.
fn key(id: impl std::fmt::Display) -> String {
    format!("user:{id}:presence")
}

/// The command given as words.
fn command(args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    cmd
}

/// Runs a command that must succeed; its reply as a `Value`.
fn run(con: &mut redis::Connection, args: &[&str]) -> Value {
    command(args)
        .query(con)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

fn ok(con: &mut redis::Connection, args: &[&str]) {
    assert_eq!(run(con, args), Value::Okay, "{args:?}");
}

fn int(con: &mut redis::Connection, args: &[&str]) -> i64 {
    match run(con, args) {
        Value::Int(n) => n,
        other => panic!("{args:?} replied {other:?}, not an integer"),
    }
}

/// A bulk string reply as bytes, nil as `None`.
fn bulk(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::Nil => None,
        Value::BulkString(bytes) => Some(bytes),
        other => panic!("not a bulk string or nil: {other:?}"),
    }
}

fn get(con: &mut redis::Connection, key: &str) -> Option<String> {
    bulk(run(con, &["GET", key])).map(|b| String::from_utf8(b).expect("utf-8 value"))
}

/// The error a command must answer with, code included.
fn err(con: &mut redis::Connection, args: &[&str]) -> String {
    error_text::<Value>(con, &mut command(args))
}

/// Sends `args` over raw TCP and asserts the exact reply bytes.
fn rt(stream: &mut TcpStream, args: &[&str], expected: &[u8]) {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    roundtrip(stream, &resp_command(&args), expected);
}

/// Asserts that the key's TTL in seconds is `secs`, give or take the seconds a loaded machine
/// may take between the command and the check.
fn assert_ttl_near(con: &mut redis::Connection, key: &str, secs: i64) {
    let ttl = int(con, &["TTL", key]);
    assert!(
        (secs - 2..=secs).contains(&ttl),
        "TTL of {key} is {ttl}, expected about {secs}"
    );
}

/// Waits (up to 10 s) until `key` no longer exists.
fn wait_gone(con: &mut redis::Connection, key: &str) {
    poll(Duration::from_secs(10), || {
        (int(con, &["EXISTS", key]) == 0).then_some(())
    })
    .unwrap_or_else(|| panic!("{key} still exists after 10 s"));
}

/// The program's path in `PATH`, or a failed test saying how to install it.
fn require_tool(program: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!("`{program}` is not in PATH: run scripts/install-test-deps to install it")
        })
}

/// Runs a program to completion (killed after `timeout`), collecting its output.
fn run_tool(program: &std::path::Path, args: &[String], timeout: Duration) -> Output {
    let program = program.display().to_string();
    let mut child = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} starts: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits for the tool") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} did not finish within {timeout:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// SET and its options
// ---------------------------------------------------------------------------------------------

/// SET's replies byte for byte as Redis 7 sends them: +OK when applied, a nil bulk when NX or
/// XX refuse, the old value (or nil) with GET — also when NX refuses — and `_` in RESP3.
#[test]
fn set_reply_shapes_over_raw_tcp() {
    let server = TestServer::start();
    let mut s = server.raw();
    let k = key(1);
    rt(&mut s, &["SET", &k, "online"], b"+OK\r\n");
    rt(&mut s, &["SET", &k, "away", "NX"], b"$-1\r\n");
    rt(&mut s, &["GET", &k], b"$6\r\nonline\r\n");
    rt(&mut s, &["SET", &key(2), "away", "XX"], b"$-1\r\n");
    rt(&mut s, &["EXISTS", &key(2)], b":0\r\n");
    rt(&mut s, &["SET", &k, "busy", "XX"], b"+OK\r\n");
    rt(&mut s, &["GET", &k], b"$4\r\nbusy\r\n");
    rt(&mut s, &["SET", &k, "{\"a\":1}", "GET"], b"$4\r\nbusy\r\n");
    // NX refuses, and GET still returns what is there.
    rt(
        &mut s,
        &["SET", &k, "dnd", "NX", "GET"],
        b"$7\r\n{\"a\":1}\r\n",
    );
    rt(&mut s, &["GET", &k], b"$7\r\n{\"a\":1}\r\n");
    rt(
        &mut s,
        &["SET", &k, "away", "XX", "GET"],
        b"$7\r\n{\"a\":1}\r\n",
    );
    rt(&mut s, &["GET", &k], b"$4\r\naway\r\n");
    // XX refuses a missing key: nil, and nothing is created.
    rt(&mut s, &["SET", &key(3), "online", "XX", "GET"], b"$-1\r\n");
    rt(&mut s, &["EXISTS", &key(3)], b":0\r\n");
    // GET on a missing key sets it and returns nil.
    rt(&mut s, &["SET", &key(3), "online", "GET"], b"$-1\r\n");
    rt(&mut s, &["GET", &key(3)], b"$6\r\nonline\r\n");
    rt(&mut s, &["SET", &key(4), "v", "NX", "GET"], b"$-1\r\n");
    rt(&mut s, &["GET", &key(4)], b"$1\r\nv\r\n");

    let mut r3 = server.raw();
    let hello = exchange(&mut r3, b"HELLO 3\r\n");
    assert!(
        hello.starts_with(b"%"),
        "{}",
        String::from_utf8_lossy(&hello)
    );
    rt(&mut r3, &["SET", &k, "x", "NX"], b"_\r\n");
    rt(&mut r3, &["SET", &key(5), "x", "GET"], b"_\r\n");
    rt(&mut r3, &["SET", &key(5), "y", "GET"], b"$1\r\nx\r\n");
    rt(&mut r3, &["GET", &key(6)], b"_\r\n");
    rt(&mut r3, &["SET", &key(6), "online"], b"+OK\r\n");
}

/// EX, PX, EXAT and PXAT set the deadline TTL, PTTL, EXPIRETIME and PEXPIRETIME report (the
/// absolute forms to the millisecond); KEEPTTL keeps it exactly; a plain SET removes it; an
/// absolute time already past deletes the key; TTLs beyond HEARTBEAT's 86,400 s limit work.
#[test]
fn set_expiry_options() {
    let server = TestServer::start();
    let mut con = server.client();
    let k = key(10);

    ok(&mut con, &["SET", &k, "online", "EX", "100"]);
    assert_eq!(get(&mut con, &k).as_deref(), Some("online"));
    assert_ttl_near(&mut con, &k, 100);
    let pttl = int(&mut con, &["PTTL", &k]);
    assert!((90_000..=100_000).contains(&pttl), "PTTL {pttl}");
    let remaining = int(&mut con, &["PEXPIRETIME", &k]) - now_ms();
    assert!((90_000..=100_000).contains(&remaining), "{remaining}");

    ok(&mut con, &["SET", &k, "away", "PX", "1500"]);
    let pttl = int(&mut con, &["PTTL", &k]);
    assert!((1..=1_500).contains(&pttl), "PTTL {pttl}");
    assert!((0..=2).contains(&int(&mut con, &["TTL", &k])));

    let at_s = now_ms() / 1000 + 200;
    ok(&mut con, &["SET", &k, "busy", "EXAT", &at_s.to_string()]);
    assert_eq!(int(&mut con, &["EXPIRETIME", &k]), at_s);
    assert_eq!(int(&mut con, &["PEXPIRETIME", &k]), at_s * 1000);
    assert_ttl_near(&mut con, &k, 200);
    assert_eq!(get(&mut con, &k).as_deref(), Some("busy"));

    let at_ms = now_ms() + 123_456;
    ok(
        &mut con,
        &["SET", &k, "{\"x\":1}", "PXAT", &at_ms.to_string()],
    );
    assert_eq!(int(&mut con, &["PEXPIRETIME", &k]), at_ms);
    assert_eq!(int(&mut con, &["EXPIRETIME", &k]), at_ms / 1000);
    assert_eq!(get(&mut con, &k).as_deref(), Some("{\"x\":1}"));

    // KEEPTTL keeps the deadline to the millisecond, whatever the new value.
    ok(&mut con, &["SET", &k, "dnd", "KEEPTTL"]);
    assert_eq!(int(&mut con, &["PEXPIRETIME", &k]), at_ms);
    assert_eq!(get(&mut con, &k).as_deref(), Some("dnd"));
    ok(&mut con, &["SET", &k, "[1,2]", "KEEPTTL"]);
    assert_eq!(int(&mut con, &["PEXPIRETIME", &k]), at_ms);
    assert_eq!(get(&mut con, &k).as_deref(), Some("[1,2]"));

    // A SET without an expiry option removes the TTL.
    ok(&mut con, &["SET", &k, "online"]);
    assert_eq!(int(&mut con, &["TTL", &k]), -1);
    assert_eq!(int(&mut con, &["PEXPIRETIME", &k]), -1);
    // KEEPTTL of a key without a TTL, or of a missing key: no TTL.
    ok(&mut con, &["SET", &k, "away", "KEEPTTL"]);
    assert_eq!(int(&mut con, &["TTL", &k]), -1);
    ok(&mut con, &["SET", &key(11), "away", "KEEPTTL"]);
    assert_eq!(int(&mut con, &["TTL", &key(11)]), -1);

    // Far beyond HEARTBEAT's 1..86400 and the slot's 17-bit TTL field.
    ok(&mut con, &["SET", &k, "online", "EX", "1000000"]);
    assert_ttl_near(&mut con, &k, 1_000_000);
    ok(&mut con, &["SET", &k, "online", "PX", "86400001"]);
    let pttl = int(&mut con, &["PTTL", &k]);
    assert!((86_390_000..=86_400_001).contains(&pttl), "PTTL {pttl}");

    // An absolute time already past: +OK, and the key is gone at once.
    ok(&mut con, &["SET", &k, "online", "EXAT", "1"]);
    assert_eq!(get(&mut con, &k), None);
    assert_eq!(int(&mut con, &["TTL", &k]), -2);
    ok(&mut con, &["SET", &k, "online"]);
    ok(
        &mut con,
        &["SET", &k, "x", "PXAT", &(now_ms() - 1_000).to_string()],
    );
    assert_eq!(int(&mut con, &["EXISTS", &k]), 0);
    assert_eq!(status(&mut con, "10").0, "offline");

    // As in Redis, an option may be repeated; the last expiry wins.
    ok(&mut con, &["SET", &k, "online", "EX", "10", "EX", "20"]);
    assert_ttl_near(&mut con, &k, 20);
    ok(
        &mut con,
        &["SET", &k, "online", "PX", "5000", "PX", "60000"],
    );
    assert!(int(&mut con, &["PTTL", &k]) > 5_000);
    assert_eq!(run(&mut con, &["SET", &k, "x", "NX", "NX"]), Value::Nil);
    assert_eq!(
        bulk(run(&mut con, &["SET", &k, "busy", "GET", "GET", "KEEPTTL"])).as_deref(),
        Some(&b"online"[..])
    );
    ok(&mut con, &["SET", &k, "busy", "KEEPTTL", "KEEPTTL"]);
    assert_ttl_near(&mut con, &k, 60);

    // Errors leave the key as it was.
    let before = (get(&mut con, &k), int(&mut con, &["PEXPIRETIME", &k]));
    let cases: &[(&[&str], &str)] = &[
        (&["EX", "0"], "ERR invalid expire time in 'set' command"),
        (&["PX", "-1"], "ERR invalid expire time in 'set' command"),
        (&["EXAT", "0"], "ERR invalid expire time in 'set' command"),
        (
            &["PXAT", "9223372036854775807", "EX", "1"],
            "ERR syntax error",
        ),
        (
            &["EX", "9223372036854775807"],
            "ERR invalid expire time in 'set' command",
        ),
        (
            &["EX", "abc"],
            "ERR value is not an integer or out of range",
        ),
        (&["EX", "10", "PX", "10"], "ERR syntax error"),
        (&["EX", "10", "KEEPTTL"], "ERR syntax error"),
        (&["KEEPTTL", "PXAT", "99999999999999"], "ERR syntax error"),
        (&["NX", "XX"], "ERR syntax error"),
        (&["XX", "NX"], "ERR syntax error"),
        (&["EX"], "ERR syntax error"),
        (&["FOO"], "ERR syntax error"),
        // Syntax is judged before the expiry's value, as in Redis.
        (&["EX", "abc", "FOO"], "ERR syntax error"),
    ];
    for (options, expected) in cases {
        let mut args = vec!["SET", k.as_str(), "changed"];
        args.extend_from_slice(options);
        assert_eq!(err(&mut con, &args), *expected, "{args:?}");
        assert_eq!(
            (get(&mut con, &k), int(&mut con, &["PEXPIRETIME", &k])),
            before,
            "{args:?} changed the key"
        );
    }
    assert_eq!(
        err(&mut con, &["SET", &k]),
        "ERR wrong number of arguments for 'set' command"
    );
}

/// NX sets only a missing key (also one that expired or was deleted), XX only an existing
/// one; a refused SET changes neither value nor TTL, and an applied XX without KEEPTTL removes
/// the TTL as in Redis.
#[test]
fn set_nx_and_xx_effects() {
    let server = TestServer::start();
    let mut con = server.client();
    let k = key(20);
    ok(&mut con, &["SET", &k, "away", "NX", "EX", "100"]);
    assert_eq!(
        run(&mut con, &["SET", &k, "busy", "NX", "EX", "5"]),
        Value::Nil
    );
    assert_eq!(get(&mut con, &k).as_deref(), Some("away"));
    assert_ttl_near(&mut con, &k, 100);
    ok(&mut con, &["SET", &k, "busy", "XX", "KEEPTTL"]);
    assert_eq!(get(&mut con, &k).as_deref(), Some("busy"));
    assert_ttl_near(&mut con, &k, 100);
    ok(&mut con, &["SET", &k, "dnd", "XX"]);
    assert_eq!(int(&mut con, &["TTL", &k]), -1);
    assert_eq!(status(&mut con, "20").0, "dnd");

    let missing = key(21);
    assert_eq!(
        run(&mut con, &["SET", &missing, "online", "XX"]),
        Value::Nil
    );
    assert_eq!(
        run(&mut con, &["SET", &missing, "online", "XX", "EX", "9"]),
        Value::Nil
    );
    assert_eq!(int(&mut con, &["EXISTS", &missing]), 0);
    assert_eq!(status(&mut con, "21"), ("offline".to_string(), None));

    // A key that expired is missing again: NX sets it, XX refuses it.
    ok(&mut con, &["SET", &missing, "online", "PX", "200"]);
    wait_gone(&mut con, &missing);
    assert_eq!(run(&mut con, &["SET", &missing, "away", "XX"]), Value::Nil);
    ok(&mut con, &["SET", &missing, "away", "NX"]);
    assert_eq!(get(&mut con, &missing).as_deref(), Some("away"));
    // So is a deleted one, and a user logged out with OFFLINE.
    assert_eq!(int(&mut con, &["DEL", &missing]), 1);
    ok(&mut con, &["SET", &missing, "busy", "NX"]);
    assert_eq!(int(&mut con, &["OFFLINE", "21"]), 1);
    assert_eq!(
        run(&mut con, &["SET", &missing, "online", "XX"]),
        Value::Nil
    );
    ok(&mut con, &["SET", &missing, "online", "NX", "PX", "30000"]);
    assert_ttl_near(&mut con, &missing, 30);
}

// ---------------------------------------------------------------------------------------------
// Values: status words and everything else
// ---------------------------------------------------------------------------------------------

/// A status word stored with SET is the user's presence (STATUS and MSTATUS agree with GET),
/// and presence set with HEARTBEAT, SETSTATUS and OFFLINE is what GET returns: one truth.
#[test]
fn status_words_are_one_truth() {
    let server = TestServer::start();
    let mut con = server.client();
    ok(&mut con, &["SET", "user:42:presence", "away", "EX", "30"]);
    assert_eq!(status(&mut con, "42").0, "away");
    for word in ["online", "away", "busy", "dnd"] {
        let before = now_ms();
        ok(&mut con, &["SET", &key(42), word, "EX", "30"]);
        let (state, last_seen) = status(&mut con, "42");
        assert_eq!(state, word);
        assert!(last_seen.expect("last-seen") >= before);
        assert_eq!(get(&mut con, &key(42)).as_deref(), Some(word));
        let Value::Array(views) = run(&mut con, &["MSTATUS", "41", "42"]) else {
            panic!("MSTATUS is an array");
        };
        assert_eq!(parse_status(&views[0]), ("offline".to_string(), None));
        assert_eq!(parse_status(&views[1]).0, word);
        // The same with a TTL that is not whole seconds, and with none.
        ok(&mut con, &["SET", &key(50), word, "PX", "30500"]);
        ok(&mut con, &["SET", &key(51), word]);
        let Value::Array(views) = run(&mut con, &["MSTATUS", "50", "51"]) else {
            panic!("MSTATUS is an array");
        };
        assert_eq!(parse_status(&views[0]).0, word);
        assert_eq!(parse_status(&views[1]).0, word);
        let values = run(&mut con, &["MGET", &key(50), &key(51)]);
        assert_eq!(
            values,
            Value::Array(vec![
                Value::BulkString(word.as_bytes().to_vec()),
                Value::BulkString(word.as_bytes().to_vec())
            ])
        );
    }

    // HEARTBEAT and friends write the same key.
    assert_eq!(get(&mut con, &key(43)), None);
    assert_eq!(int(&mut con, &["HEARTBEAT", "43"]), 1);
    assert_eq!(get(&mut con, "user:43:presence").as_deref(), Some("online"));
    assert_ttl_near(&mut con, &key(43), 30);
    assert_eq!(int(&mut con, &["HEARTBEAT", "43", "STATUS", "busy"]), 0);
    assert_eq!(get(&mut con, &key(43)).as_deref(), Some("busy"));
    ok(&mut con, &["SETSTATUS", "43", "dnd"]);
    assert_eq!(get(&mut con, &key(43)).as_deref(), Some("dnd"));
    ok(&mut con, &["SETSTATUS", "43", "invisible"]);
    assert_eq!(get(&mut con, &key(43)), None, "invisible reads as offline");
    ok(&mut con, &["SETSTATUS", "43", "none"]);
    assert_eq!(get(&mut con, &key(43)).as_deref(), Some("busy"));
    let (_, seen) = status(&mut con, "43");
    assert_eq!(int(&mut con, &["OFFLINE", "43"]), 1);
    assert_eq!(get(&mut con, &key(43)), None);
    assert_eq!(int(&mut con, &["EXISTS", &key(43)]), 0);
    assert_eq!(status(&mut con, "43"), ("offline".to_string(), seen));

    // Any other value (JSON, another spelling) means online and is returned as stored.
    ok(
        &mut con,
        &["SET", &key(44), "{\"status\":\"away\"}", "EX", "30"],
    );
    assert_eq!(status(&mut con, "44").0, "online");
    assert_eq!(
        get(&mut con, &key(44)).as_deref(),
        Some("{\"status\":\"away\"}")
    );
    ok(&mut con, &["SET", &key(45), "Away"]);
    assert_eq!(get(&mut con, &key(45)).as_deref(), Some("Away"));
    assert_eq!(status(&mut con, "45").0, "online");

    // DEL forgets the user, as a Redis key is gone: offline and never seen.
    assert_eq!(int(&mut con, &["DEL", &key(42)]), 1);
    assert_eq!(status(&mut con, "42"), ("offline".to_string(), None));
}

/// Values that are not status words come back byte for byte from GET and MGET — binary bytes
/// included, 64 KiB and 4 MiB values, set by every command that stores one. The value goes with
/// the key when it expires.
#[test]
fn custom_values_byte_for_byte() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut s = server.raw();
    let binary: &[u8] = b"\x00\xff\r\n{\"a\":[1,2]}\x80\x01 end\r\n";
    let k = key(60);
    roundtrip(
        &mut s,
        &resp_command(&[b"SET", k.as_bytes(), binary]),
        b"+OK\r\n",
    );
    let mut expected = format!("${}\r\n", binary.len()).into_bytes();
    expected.extend_from_slice(binary);
    expected.extend_from_slice(b"\r\n");
    roundtrip(&mut s, &resp_command(&[b"GET", k.as_bytes()]), &expected);
    let mut expected_mget = b"*3\r\n".to_vec();
    expected_mget.extend_from_slice(&expected);
    expected_mget.extend_from_slice(b"$-1\r\n");
    expected_mget.extend_from_slice(&expected);
    roundtrip(
        &mut s,
        &resp_command(&[b"MGET", k.as_bytes(), key(61).as_bytes(), k.as_bytes()]),
        &expected_mget,
    );
    assert_eq!(status(&mut con, "60").0, "online");

    let json = r#"{"status":"online","device":"ios","server":"gw-7","ts":1795704729295}"#;
    ok(&mut con, &["SET", &key(62), json, "EX", "30"]);
    assert_eq!(get(&mut con, &key(62)).as_deref(), Some(json));

    // 64 KiB exactly is accepted and returned whole.
    let largest: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let stored: Value = redis::cmd("SET")
        .arg(key(63))
        .arg(&largest[..])
        .query(&mut con)
        .unwrap();
    assert_eq!(stored, Value::Okay);
    assert_eq!(
        bulk(run(&mut con, &["GET", &key(63)])),
        Some(largest.clone())
    );
    let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
        .arg(key(64))
        .arg(key(63))
        .query(&mut con)
        .unwrap();
    assert_eq!(values, vec![None, Some(largest.clone())]);

    // Larger values are kept too, as Redis keeps strings up to 512 MB, by every command that
    // stores a value (issue 10 lifted the earlier 64 KiB limit).
    let larger: Vec<u8> = (0..4 * 1024 * 1024 + 1).map(|i| (i % 253) as u8).collect();
    for (i, cmd) in [
        redis::cmd("SET").arg(key(63)).arg(&larger[..]).clone(),
        redis::cmd("SET")
            .arg(key(63))
            .arg(&larger[..])
            .arg("EX")
            .arg(10)
            .clone(),
        redis::cmd("SETEX")
            .arg(key(63))
            .arg(10)
            .arg(&larger[..])
            .clone(),
        redis::cmd("MSET")
            .arg(key(65))
            .arg("fine")
            .arg(key(63))
            .arg(&larger[..])
            .clone(),
    ]
    .into_iter()
    .enumerate()
    {
        let stored: Value = cmd.query(&mut con).unwrap();
        assert_eq!(stored, Value::Okay, "command {i}");
        assert_eq!(
            bulk(run(&mut con, &["GET", &key(63)])),
            Some(larger.clone())
        );
    }
    assert_eq!(int(&mut con, &["TTL", &key(63)]), -1, "MSET set no TTL");
    assert_eq!(int(&mut con, &["EXISTS", &key(65)]), 1);

    // A status word replaces a custom value; a custom value replaces a status word.
    ok(&mut con, &["SET", &key(62), "away", "KEEPTTL"]);
    assert_eq!(get(&mut con, &key(62)).as_deref(), Some("away"));
    ok(&mut con, &["SET", &key(62), json, "KEEPTTL"]);
    assert_eq!(get(&mut con, &key(62)).as_deref(), Some(json));
    // A heartbeat keeps the user online and the value as it is.
    assert_eq!(int(&mut con, &["HEARTBEAT", "62"]), 0);
    assert_eq!(get(&mut con, &key(62)).as_deref(), Some(json));

    // The value vanishes with the key: back online later, the key holds the state word.
    ok(&mut con, &["SET", &key(66), json, "PX", "300"]);
    wait_gone(&mut con, &key(66));
    assert_eq!(int(&mut con, &["HEARTBEAT", "66"]), 1);
    assert_eq!(get(&mut con, &key(66)).as_deref(), Some("online"));
}

/// A key set without a TTL (SET, MSET, SETNX) stays online with TTL -1 long after the
/// server's default TTL has passed, until DEL.
#[test]
fn key_without_ttl_stays_until_del() {
    let server = TestServer::start_with(&["--ttl", "1"]);
    let mut con = server.client();
    ok(&mut con, &["SET", &key(70), "online"]);
    ok(&mut con, &["SET", &key(71), "{\"v\":1}"]);
    ok(&mut con, &["MSET", &key(72), "busy", &key(73), "x"]);
    assert_eq!(int(&mut con, &["SETNX", &key(74), "away"]), 1);
    // A heartbeat at the default TTL of 1 s, as the yardstick of time passing.
    assert_eq!(int(&mut con, &["HEARTBEAT", "79"]), 1);
    poll(Duration::from_secs(10), || {
        (int(&mut con, &["DBSIZE"]) == 5).then_some(())
    })
    .expect("the heartbeat user expires by the timing wheel");
    let keys: Vec<String> = (70..75).map(key).collect();
    for k in &keys {
        assert_eq!(int(&mut con, &["TTL", k]), -1, "{k}");
        assert_eq!(int(&mut con, &["PTTL", k]), -1, "{k}");
        assert_eq!(int(&mut con, &["EXPIRETIME", k]), -1, "{k}");
    }
    let Value::Array(views) = run(&mut con, &["MSTATUS", "70", "71", "72", "73", "74"]) else {
        panic!("MSTATUS is an array");
    };
    let states: Vec<String> = views.iter().map(|v| parse_status(v).0).collect();
    assert_eq!(states, ["online", "online", "busy", "online", "away"]);
    assert_eq!(int(&mut con, &["DBSIZE"]), 5);
    assert_eq!(
        int(
            &mut con,
            &["DEL", &keys[0], &keys[1], &keys[2], &keys[3], &keys[4]]
        ),
        5
    );
    assert_eq!(int(&mut con, &["DBSIZE"]), 0);
    assert_eq!(int(&mut con, &["DEL", &keys[0]]), 0);
    assert_eq!(status(&mut con, "70").0, "offline");
}

// ---------------------------------------------------------------------------------------------
// Reads, counts and TTLs
// ---------------------------------------------------------------------------------------------

/// GET, MGET (request order, nils, repeats), EXISTS (repeats counted), DEL and UNLINK (only
/// keys that existed counted, each once) answer as Redis does.
#[test]
fn get_mget_exists_del_unlink() {
    let server = TestServer::start();
    let mut con = server.client();
    let (a, b, c, d) = (key(80), key("u-81"), key(82), key(83));
    ok(&mut con, &["SET", &a, "online"]);
    ok(&mut con, &["SET", &c, "{\"c\":3}", "EX", "60"]);
    assert_eq!(int(&mut con, &["HEARTBEAT", "u-81", "STATUS", "away"]), 1);
    assert_eq!(get(&mut con, &d), None);
    let values: Vec<Option<String>> = command(&["MGET", &d, &a, &c, &b, &d, &a])
        .query(&mut con)
        .unwrap();
    assert_eq!(
        values,
        vec![
            None,
            Some("online".to_string()),
            Some("{\"c\":3}".to_string()),
            Some("away".to_string()),
            None,
            Some("online".to_string())
        ]
    );
    assert_eq!(int(&mut con, &["EXISTS", &a]), 1);
    assert_eq!(int(&mut con, &["EXISTS", &d]), 0);
    assert_eq!(int(&mut con, &["EXISTS", &a, &b, &c, &d, &a, &a]), 5);
    assert_eq!(int(&mut con, &["DEL", &a, &d, &a]), 1);
    assert_eq!(int(&mut con, &["EXISTS", &a]), 0);
    assert_eq!(int(&mut con, &["UNLINK", &b, &b, &c, &d]), 2);
    assert_eq!(int(&mut con, &["EXISTS", &a, &b, &c, &d]), 0);
    assert_eq!(int(&mut con, &["DEL", &a]), 0);
    assert_eq!(int(&mut con, &["UNLINK", &a]), 0);
    assert_eq!(
        run(&mut con, &["MGET", &a, &b]),
        Value::Array(vec![Value::Nil, Value::Nil])
    );
    for (args, name) in [
        (&["GET"][..], "get"),
        (&["GET", "a", "b"][..], "get"),
        (&["MGET"][..], "mget"),
        (&["EXISTS"][..], "exists"),
        (&["DEL"][..], "del"),
        (&["UNLINK"][..], "unlink"),
        (&["TTL"][..], "ttl"),
        (&["PERSIST"][..], "persist"),
        (&["EXPIRE", "a"][..], "expire"),
    ] {
        assert_eq!(
            err(&mut con, args),
            format!("ERR wrong number of arguments for '{name}' command")
        );
    }
}

/// TTL, PTTL, EXPIRETIME and PEXPIRETIME answer -2 for a missing key, -1 for a key without a
/// TTL, and the deadline otherwise — a heartbeat's deadline being last-seen + its TTL.
#[test]
fn ttl_family() {
    let server = TestServer::start();
    let mut con = server.client();
    let k = key(90);
    for cmd in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
        assert_eq!(int(&mut con, &[cmd, &k]), -2, "{cmd} of a missing key");
    }
    ok(&mut con, &["SET", &k, "online"]);
    for cmd in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
        assert_eq!(int(&mut con, &[cmd, &k]), -1, "{cmd} of a key without TTL");
    }
    let at_ms = now_ms() + 45_678;
    ok(&mut con, &["SET", &k, "online", "PXAT", &at_ms.to_string()]);
    assert_eq!(int(&mut con, &["PEXPIRETIME", &k]), at_ms);
    assert_eq!(int(&mut con, &["EXPIRETIME", &k]), at_ms / 1000);
    let pttl = int(&mut con, &["PTTL", &k]);
    assert!((35_000..=45_678).contains(&pttl), "{pttl}");
    // TTL rounds to the nearest second, as Redis does.
    let ttl = int(&mut con, &["TTL", &k]);
    assert!((35..=46).contains(&ttl), "{ttl}");

    assert_eq!(int(&mut con, &["HEARTBEAT", "91", "TTL", "50"]), 1);
    let (_, seen) = status(&mut con, "91");
    let seen = seen.expect("last-seen");
    assert_eq!(int(&mut con, &["PEXPIRETIME", &key(91)]), seen + 50_000);
    assert_eq!(
        int(&mut con, &["EXPIRETIME", &key(91)]),
        (seen + 50_000) / 1000
    );
    assert_ttl_near(&mut con, &key(91), 50);

    ok(&mut con, &["SET", &k, "online", "PX", "200"]);
    wait_gone(&mut con, &k);
    for cmd in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
        assert_eq!(int(&mut con, &[cmd, &k]), -2, "{cmd} of an expired key");
    }
}

/// The argument that makes `command` set a deadline `secs` seconds from now.
fn expire_arg(command: &str, secs: i64) -> String {
    match command {
        "EXPIRE" => secs.to_string(),
        "PEXPIRE" => (secs * 1000).to_string(),
        "EXPIREAT" => (now_ms() / 1000 + secs).to_string(),
        "PEXPIREAT" => (now_ms() + secs * 1000).to_string(),
        other => panic!("not an expire command: {other}"),
    }
}

/// EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT with NX, XX, GT, LT and XX+GT / XX+LT: each
/// condition both met (1, TTL changed) and not (0, TTL kept), with Redis's rule that a key
/// without a TTL has an infinite one; a missing key answers 0 and stays missing.
#[test]
fn expire_family_conditions() {
    let server = TestServer::start();
    let mut con = server.client();
    for cmd in ["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"] {
        let k = key(format!("exp-{cmd}"));
        ok(&mut con, &["SET", &k, "online"]);
        // (options, seconds from now, reply, TTL after: None = no TTL)
        let steps: &[(&[&str], i64, i64, Option<i64>)] = &[
            (&["NX"], 100, 1, Some(100)),
            (&["NX"], 200, 0, Some(100)),
            (&["XX"], 200, 1, Some(200)),
            (&["GT"], 100, 0, Some(200)),
            (&["GT"], 300, 1, Some(300)),
            (&["LT"], 400, 0, Some(300)),
            (&["LT"], 150, 1, Some(150)),
            (&["XX", "GT"], 250, 1, Some(250)),
            (&["GT", "XX"], 100, 0, Some(250)),
            (&["XX", "LT"], 120, 1, Some(120)),
            (&["LT", "XX"], 500, 0, Some(120)),
            (&[], 400, 1, Some(400)),
            (&["nx", "nx"], 500, 0, Some(400)),
        ];
        let check = |con: &mut redis::Connection, steps: &[(&[&str], i64, i64, Option<i64>)]| {
            for (options, secs, reply, after) in steps {
                let arg = expire_arg(cmd, *secs);
                let mut args = vec![cmd, k.as_str(), arg.as_str()];
                args.extend_from_slice(options);
                assert_eq!(int(con, &args), *reply, "{args:?}");
                match after {
                    Some(secs) => assert_ttl_near(con, &k, *secs),
                    None => assert_eq!(int(con, &["TTL", &k]), -1, "{args:?}"),
                }
            }
        };
        check(&mut con, steps);
        assert_eq!(int(&mut con, &["PERSIST", &k]), 1);
        // Without a TTL: XX and GT refuse (no TTL is infinite), LT accepts unless with XX.
        check(
            &mut con,
            &[
                (&["XX"], 100, 0, None),
                (&["GT"], 100, 0, None),
                (&["XX", "GT"], 100, 0, None),
                (&["XX", "LT"], 100, 0, None),
                (&["LT"], 100, 1, Some(100)),
            ],
        );
        assert_eq!(int(&mut con, &["PERSIST", &k]), 1);
        check(&mut con, &[(&["NX"], 100, 1, Some(100))]);

        // A missing key: 0 whatever the options, and it stays missing.
        let missing = key(format!("missing-{cmd}"));
        for options in [&[][..], &["NX"], &["XX"], &["GT"], &["LT"]] {
            let arg = expire_arg(cmd, 100);
            let mut args = vec![cmd, missing.as_str(), arg.as_str()];
            args.extend_from_slice(options);
            assert_eq!(int(&mut con, &args), 0, "{args:?}");
        }
        assert_eq!(int(&mut con, &["EXISTS", &missing]), 0);

        // Errors, judged as Redis judges them, leave the TTL alone.
        let arg = expire_arg(cmd, 300);
        let cases: &[(&[&str], &str, &str)] = &[
            (
                &["NX", "XX"],
                &arg,
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ),
            (
                &["GT", "NX"],
                &arg,
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ),
            (
                &["NX", "LT"],
                &arg,
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ),
            (
                &["GT", "LT"],
                &arg,
                "ERR GT and LT options at the same time are not compatible",
            ),
            (
                &["XX", "LT", "GT"],
                &arg,
                "ERR GT and LT options at the same time are not compatible",
            ),
            (&["FOO"], &arg, "ERR Unsupported option FOO"),
            (&["NX", "XX", "FOO"], &arg, "ERR Unsupported option FOO"),
            (&[], "abc", "ERR value is not an integer or out of range"),
            (&["BAR"], "abc", "ERR Unsupported option BAR"),
            (
                &["NX", "XX"],
                "abc",
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ),
        ];
        for (options, value, expected) in cases {
            let mut args = vec![cmd, k.as_str(), value];
            args.extend_from_slice(options);
            assert_eq!(err(&mut con, &args), *expected, "{args:?}");
            assert_ttl_near(&mut con, &k, 100);
        }
        // Past i64 milliseconds once converted (and, for the relative forms, added to now).
        let huge = match cmd {
            "EXPIRE" | "EXPIREAT" => Some("99999999999999999"),
            "PEXPIRE" => Some("9223372036854775807"),
            _ => None,
        };
        if let Some(huge) = huge {
            assert_eq!(
                err(&mut con, &[cmd, &k, huge]),
                format!(
                    "ERR invalid expire time in '{}' command",
                    cmd.to_lowercase()
                )
            );
        }
    }
}

/// A deadline at or before now — EXPIRE 0, a negative EXPIRE, an EXPIREAT in 1970 — deletes
/// the key (a logout) and answers 1, unless a condition refuses it; on a missing key it is 0.
#[test]
fn non_positive_expire_deletes_the_key() {
    let server = TestServer::start();
    let mut con = server.client();
    let cases: &[(&str, &str)] = &[
        ("EXPIRE", "0"),
        ("EXPIRE", "-5"),
        ("PEXPIRE", "0"),
        ("PEXPIRE", "-1"),
        ("EXPIREAT", "1"),
        ("EXPIREAT", "-1"),
        ("PEXPIREAT", "0"),
        ("PEXPIREAT", "1000"),
    ];
    for (i, &(cmd, value)) in cases.iter().enumerate() {
        let user = (100 + i).to_string();
        let k = key(&user);
        ok(&mut con, &["SET", &k, "online", "EX", "100"]);
        // GT refuses an earlier deadline and NX a key with a TTL: the key stays.
        assert_eq!(int(&mut con, &[cmd, &k, value, "GT"]), 0);
        assert_eq!(int(&mut con, &[cmd, &k, value, "NX"]), 0);
        assert_eq!(int(&mut con, &["EXISTS", &k]), 1);
        assert_eq!(int(&mut con, &[cmd, &k, value]), 1, "{cmd} {value}");
        assert_eq!(int(&mut con, &["EXISTS", &k]), 0, "{cmd} {value}");
        assert_eq!(status(&mut con, &user).0, "offline");
        assert_eq!(int(&mut con, &[cmd, &k, value]), 0, "now missing");
        // LT accepts it.
        ok(&mut con, &["SET", &k, "online", "EX", "100"]);
        assert_eq!(int(&mut con, &[cmd, &k, value, "LT"]), 1);
        assert_eq!(int(&mut con, &["EXISTS", &k]), 0);
        // As does a key without TTL.
        ok(&mut con, &["SET", &k, "{}"]);
        assert_eq!(int(&mut con, &[cmd, &k, value]), 1);
        assert_eq!(get(&mut con, &k), None);
    }
}

/// PERSIST removes a TTL (1) and is 0 for a key without one or a missing key; TYPE is
/// `string` for a presence key that exists and `none` otherwise.
#[test]
fn persist_and_type() {
    let server = TestServer::start();
    let mut con = server.client();
    let k = key(120);
    assert_eq!(
        run(&mut con, &["TYPE", &k]),
        Value::SimpleString("none".into())
    );
    assert_eq!(int(&mut con, &["PERSIST", &k]), 0);
    ok(&mut con, &["SET", &k, "away", "EX", "2"]);
    assert_eq!(
        run(&mut con, &["TYPE", &k]),
        Value::SimpleString("string".into())
    );
    assert_eq!(int(&mut con, &["PERSIST", &k]), 1);
    assert_eq!(int(&mut con, &["TTL", &k]), -1);
    assert_eq!(int(&mut con, &["PERSIST", &k]), 0);
    assert_eq!(get(&mut con, &k).as_deref(), Some("away"));
    // A heartbeat's TTL can be removed too: the user stays online with no deadline.
    assert_eq!(int(&mut con, &["HEARTBEAT", "121", "TTL", "1"]), 1);
    assert_eq!(int(&mut con, &["PERSIST", &key(121)]), 1);
    assert_eq!(int(&mut con, &["HEARTBEAT", "122", "TTL", "1"]), 1);
    // Once 122's second is over, 121 and 120 are still there.
    wait_gone(&mut con, &key(122));
    assert_eq!(int(&mut con, &["EXISTS", &k, &key(121)]), 2);
    assert_eq!(status(&mut con, "121").0, "online");
    assert_eq!(
        run(&mut con, &["TYPE", &key(122)]),
        Value::SimpleString("none".into())
    );
}

// ---------------------------------------------------------------------------------------------
// Iteration and counting
// ---------------------------------------------------------------------------------------------

/// Iterates `SCAN` from cursor 0 back to 0 with `options`; every key returned.
fn scan_all(con: &mut redis::Connection, options: &[&str]) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    for _ in 0..1_000_000 {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(options);
        let (next, batch): (String, Vec<String>) = command(&args).query(con).unwrap();
        keys.extend(batch);
        if next == "0" {
            return keys;
        }
        cursor = next;
    }
    panic!("SCAN {options:?} did not come back to cursor 0");
}

/// SCAN with MATCH/COUNT/TYPE iterated to cursor 0, and KEYS, return every online presence key
/// (dense and side-table users, SET and HEARTBEAT alike) exactly once and no offline one; DBSIZE
/// counts them.
#[test]
fn scan_keys_and_dbsize() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut online = BTreeSet::new();
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg(key(i)).arg("online").ignore();
        online.insert(key(i));
    }
    for i in 0..100 {
        pipe.cmd("SET")
            .arg(key(format!("u-{i}")))
            .arg("{\"x\":1}")
            .arg("EX")
            .arg(600)
            .ignore();
        online.insert(key(format!("u-{i}")));
    }
    // Users spread over the whole dense range, and heartbeats.
    for id in [1_048_575u64, 700_001, 5_000] {
        pipe.cmd("HEARTBEAT").arg(id).ignore();
        online.insert(key(id));
    }
    // Users that were online and are not any more: deleted, logged out, expired.
    for i in 300..350 {
        pipe.cmd("SET").arg(key(i)).arg("online").ignore();
        pipe.cmd("DEL").arg(key(i)).ignore();
    }
    for i in 400..410 {
        pipe.cmd("HEARTBEAT").arg(i).ignore();
        pipe.cmd("OFFLINE").arg(i).ignore();
    }
    for i in 500..520 {
        pipe.cmd("SET")
            .arg(key(i))
            .arg("online")
            .arg("PX")
            .arg(100)
            .ignore();
    }
    pipe.cmd("SETSTATUS").arg("u-offline").arg("dnd").ignore();
    let () = pipe.query(&mut con).unwrap();
    wait_gone(&mut con, &key(519));
    for i in 500..520 {
        wait_gone(&mut con, &key(i));
    }

    for options in [
        &["COUNT", "7"][..],
        &["MATCH", "user:*", "COUNT", "3"],
        &[],
        &["COUNT", "1000", "TYPE", "string"],
        &["TYPE", "STRING", "MATCH", "*presence"],
    ] {
        let keys = scan_all(&mut con, options);
        let unique: BTreeSet<String> = keys.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            keys.len(),
            "SCAN {options:?} returned a key twice"
        );
        assert_eq!(unique, online, "SCAN {options:?}");
    }
    let side: BTreeSet<String> = scan_all(&mut con, &["MATCH", "user:u-*", "COUNT", "20"])
        .into_iter()
        .collect();
    assert_eq!(side.len(), 100);
    assert!(side.iter().all(|k| k.starts_with("user:u-")));
    let tens: BTreeSet<String> = scan_all(&mut con, &["MATCH", "user:1?:presence"])
        .into_iter()
        .collect();
    assert_eq!(tens, (10..20).map(key).collect());
    assert!(scan_all(&mut con, &["TYPE", "hash"]).is_empty());
    assert!(scan_all(&mut con, &["MATCH", "session:*"]).is_empty());

    let keys: Vec<String> = command(&["KEYS", "*"]).query(&mut con).unwrap();
    assert_eq!(keys.len(), online.len());
    assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), online);
    let keys: BTreeSet<String> = command(&["KEYS", "user:1?:presence"])
        .query::<Vec<String>>(&mut con)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(keys, (10..20).map(key).collect());
    let none: Vec<String> = command(&["KEYS", "nothing*"]).query(&mut con).unwrap();
    assert!(none.is_empty());

    let expected = online.len() as i64;
    poll(Duration::from_secs(10), || {
        (int(&mut con, &["DBSIZE"]) == expected).then_some(())
    })
    .unwrap_or_else(|| panic!("DBSIZE never reached {expected}"));

    assert_eq!(err(&mut con, &["SCAN", "x"]), "ERR invalid cursor");
    assert_eq!(err(&mut con, &["SCAN", "-1"]), "ERR invalid cursor");
    assert_eq!(
        err(&mut con, &["SCAN", "0", "COUNT", "0"]),
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut con, &["SCAN", "0", "COUNT", "abc"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(err(&mut con, &["SCAN", "0", "MATCH"]), "ERR syntax error");
    assert_eq!(
        err(&mut con, &["SCAN", "0", "FOO", "bar"]),
        "ERR syntax error"
    );
}

// ---------------------------------------------------------------------------------------------
// The other string commands
// ---------------------------------------------------------------------------------------------

/// SETEX, PSETEX, SETNX, GETDEL, GETEX and MSET: replies, effects on value and TTL, and
/// Redis's errors.
#[test]
fn setex_psetex_setnx_getdel_getex_mset() {
    let server = TestServer::start();
    let mut con = server.client();
    let k = key(130);

    ok(&mut con, &["SETEX", &k, "100", "away"]);
    assert_eq!(get(&mut con, &k).as_deref(), Some("away"));
    assert_ttl_near(&mut con, &k, 100);
    assert_eq!(status(&mut con, "130").0, "away");
    ok(&mut con, &["PSETEX", &k, "1500", "{\"p\":1}"]);
    assert_eq!(get(&mut con, &k).as_deref(), Some("{\"p\":1}"));
    let pttl = int(&mut con, &["PTTL", &k]);
    assert!((1..=1_500).contains(&pttl), "{pttl}");
    for (args, expected) in [
        (
            &["SETEX", &k, "0", "v"][..],
            "ERR invalid expire time in 'setex' command",
        ),
        (
            &["SETEX", &k, "-3", "v"],
            "ERR invalid expire time in 'setex' command",
        ),
        (
            &["PSETEX", &k, "0", "v"],
            "ERR invalid expire time in 'psetex' command",
        ),
        (
            &["SETEX", &k, "ten", "v"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["SETEX", &k, "10"],
            "ERR wrong number of arguments for 'setex' command",
        ),
    ] {
        assert_eq!(err(&mut con, args), expected, "{args:?}");
    }
    assert_eq!(get(&mut con, &k).as_deref(), Some("{\"p\":1}"));

    // SETNX: 1 and a key without TTL if missing, 0 and nothing changed otherwise.
    let n = key(131);
    assert_eq!(int(&mut con, &["SETNX", &n, "busy"]), 1);
    assert_eq!(int(&mut con, &["TTL", &n]), -1);
    assert_eq!(int(&mut con, &["SETNX", &n, "away"]), 0);
    assert_eq!(get(&mut con, &n).as_deref(), Some("busy"));

    // GETDEL: the value, and the key is gone (the user offline); nil when missing.
    assert_eq!(
        bulk(run(&mut con, &["GETDEL", &n])).as_deref(),
        Some(&b"busy"[..])
    );
    assert_eq!(get(&mut con, &n), None);
    assert_eq!(status(&mut con, "131").0, "offline");
    assert_eq!(run(&mut con, &["GETDEL", &n]), Value::Nil);

    // GETEX: the value, with the TTL changed as asked.
    let g = key(132);
    assert_eq!(run(&mut con, &["GETEX", &g]), Value::Nil);
    assert_eq!(run(&mut con, &["GETEX", &g, "EX", "10"]), Value::Nil);
    assert_eq!(int(&mut con, &["EXISTS", &g]), 0);
    ok(&mut con, &["SET", &g, "dnd", "EX", "100"]);
    let value = |v: Value| bulk(v).map(|b| String::from_utf8(b).unwrap());
    assert_eq!(value(run(&mut con, &["GETEX", &g])).as_deref(), Some("dnd"));
    assert_ttl_near(&mut con, &g, 100);
    assert_eq!(
        value(run(&mut con, &["GETEX", &g, "EX", "200"])).as_deref(),
        Some("dnd")
    );
    assert_ttl_near(&mut con, &g, 200);
    run(&mut con, &["GETEX", &g, "PX", "300000"]);
    assert_ttl_near(&mut con, &g, 300);
    let at_s = now_ms() / 1000 + 400;
    run(&mut con, &["GETEX", &g, "EXAT", &at_s.to_string()]);
    assert_eq!(int(&mut con, &["EXPIRETIME", &g]), at_s);
    let at_ms = now_ms() + 500_123;
    run(&mut con, &["GETEX", &g, "PXAT", &at_ms.to_string()]);
    assert_eq!(int(&mut con, &["PEXPIRETIME", &g]), at_ms);
    assert_eq!(
        value(run(&mut con, &["GETEX", &g, "PERSIST"])).as_deref(),
        Some("dnd")
    );
    assert_eq!(int(&mut con, &["TTL", &g]), -1);
    // Repeats as Redis allows them; the last expiry wins.
    run(&mut con, &["GETEX", &g, "EX", "10", "EX", "20"]);
    assert_ttl_near(&mut con, &g, 20);
    run(&mut con, &["GETEX", &g, "PERSIST", "PERSIST"]);
    assert_eq!(int(&mut con, &["TTL", &g]), -1);
    for (options, expected) in [
        (&["EX", "10", "PX", "10"][..], "ERR syntax error"),
        (&["EX", "10", "PERSIST"], "ERR syntax error"),
        (&["PERSIST", "EX", "10"], "ERR syntax error"),
        (&["FOO"], "ERR syntax error"),
        (&["EX"], "ERR syntax error"),
        (&["EX", "0"], "ERR invalid expire time in 'getex' command"),
        (&["PX", "-5"], "ERR invalid expire time in 'getex' command"),
        (&["EX", "x"], "ERR value is not an integer or out of range"),
    ] {
        let mut args = vec!["GETEX", g.as_str()];
        args.extend_from_slice(options);
        assert_eq!(err(&mut con, &args), expected, "{args:?}");
    }
    assert_eq!(int(&mut con, &["TTL", &g]), -1);
    // A time already past: the value, and the key is deleted.
    assert_eq!(
        value(run(&mut con, &["GETEX", &g, "PXAT", "1"])).as_deref(),
        Some("dnd")
    );
    assert_eq!(int(&mut con, &["EXISTS", &g]), 0);

    // MSET: every pair set, without TTL; an odd count or one bad key sets nothing.
    ok(&mut con, &["SET", &key(133), "x", "EX", "50"]);
    ok(
        &mut con,
        &["MSET", &key(133), "away", &key(134), "{\"m\":1}"],
    );
    assert_eq!(get(&mut con, &key(133)).as_deref(), Some("away"));
    assert_eq!(int(&mut con, &["TTL", &key(133)]), -1);
    assert_eq!(get(&mut con, &key(134)).as_deref(), Some("{\"m\":1}"));
    assert_eq!(
        err(&mut con, &["MSET", &key(135), "a", &key(136)]),
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(
        err(&mut con, &["MSET", &key(135), "a", "foo", "b"]),
        "ERR key 'foo' is not a presence key: keys must match 'user:{id}:presence' (--key-pattern)"
    );
    assert_eq!(int(&mut con, &["EXISTS", &key(135), &key(136)]), 0);
}

// ---------------------------------------------------------------------------------------------
// The key pattern
// ---------------------------------------------------------------------------------------------

fn not_a_presence_key(key: &str, pattern: &str) -> String {
    format!("ERR key '{key}' is not a presence key: keys must match '{pattern}' (--key-pattern)")
}

/// A key outside `user:{id}:presence` is refused by every read and write with an error naming
/// the pattern, and a command that names it together with valid keys changes nothing.
#[test]
fn keys_outside_the_pattern_are_refused() {
    let server = TestServer::start();
    let mut con = server.client();
    let good = key(140);
    ok(&mut con, &["SET", &good, "away", "EX", "100"]);
    let commands: &[&[&str]] = &[
        &["GET", "foo"],
        &["SET", "foo", "bar"],
        &["SET", "foo", "online", "EX", "10", "NX"],
        &["MGET", &good, "foo"],
        &["MSET", &good, "busy", "foo", "bar"],
        &["SETEX", "foo", "10", "v"],
        &["PSETEX", "foo", "10", "v"],
        &["SETNX", "foo", "v"],
        &["GETDEL", "foo"],
        &["GETEX", "foo", "EX", "10"],
        &["EXISTS", &good, "foo"],
        &["DEL", &good, "foo"],
        &["UNLINK", &good, "foo"],
        &["TTL", "foo"],
        &["PTTL", "foo"],
        &["EXPIRETIME", "foo"],
        &["PEXPIRETIME", "foo"],
        &["EXPIRE", "foo", "10"],
        &["PEXPIRE", "foo", "0"],
        &["EXPIREAT", "foo", "1"],
        &["PEXPIREAT", "foo", "1"],
        &["PERSIST", "foo"],
        &["TYPE", "foo"],
        &["LPUSH", "foo", "x"],
        &["HGET", "foo", "f"],
        &["SADD", "foo", "m"],
    ];
    for args in commands {
        assert_eq!(
            err(&mut con, args),
            not_a_presence_key("foo", "user:{id}:presence"),
            "{args:?}"
        );
    }
    // Nothing changed: the valid key kept its value and TTL, `foo`'s user was never seen.
    assert_eq!(get(&mut con, &good).as_deref(), Some("away"));
    assert_ttl_near(&mut con, &good, 100);
    assert_eq!(status(&mut con, "foo"), ("offline".to_string(), None));
    // Near misses are outside the pattern too.
    for near in [
        "user::presence",
        "user:1:presence:x",
        "USER:1:PRESENCE",
        "user:1:presences",
        "xuser:1:presence",
        "user:1",
    ] {
        assert_eq!(
            err(&mut con, &["GET", near]),
            not_a_presence_key(near, "user:{id}:presence")
        );
    }
    // Inside the pattern, the ID follows the user-ID rules.
    let long = key("x".repeat(257));
    assert_eq!(
        err(&mut con, &["SET", &long, "online"]),
        "ERR invalid user id: longer than 256 bytes"
    );
    // HEARTBEAT foo is user `foo`, whose key is user:foo:presence.
    assert_eq!(int(&mut con, &["HEARTBEAT", "foo"]), 1);
    assert_eq!(
        get(&mut con, "user:foo:presence").as_deref(),
        Some("online")
    );
    assert_eq!(
        err(&mut con, &["GET", "foo"]),
        not_a_presence_key("foo", "user:{id}:presence")
    );
    // SCAN and KEYS patterns are globs over presence keys: `foo` matches nothing.
    let keys: Vec<String> = command(&["KEYS", "foo"]).query(&mut con).unwrap();
    assert!(keys.is_empty());
}

/// With `--key-pattern '{id}'` every key is a presence key whose whole name is the user ID:
/// `SET foo bar` is user `foo` online with value `bar`.
#[test]
fn bare_id_pattern_accepts_any_key() {
    let server = TestServer::start_with(&["--key-pattern", "{id}"]);
    let mut con = server.client();
    ok(&mut con, &["SET", "foo", "bar"]);
    assert_eq!(get(&mut con, "foo").as_deref(), Some("bar"));
    assert_eq!(status(&mut con, "foo").0, "online");
    ok(&mut con, &["SET", "user:1:presence", "away", "EX", "60"]);
    assert_eq!(status(&mut con, "user:1:presence").0, "away");
    assert_eq!(int(&mut con, &["HEARTBEAT", "42"]), 1);
    assert_eq!(get(&mut con, "42").as_deref(), Some("online"));
    assert_eq!(int(&mut con, &["EXISTS", "foo", "42", "nobody"]), 2);
    let keys: BTreeSet<String> = command(&["KEYS", "*"])
        .query::<Vec<String>>(&mut con)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        keys,
        ["42", "foo", "user:1:presence"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    let pattern: Vec<String> = command(&["CONFIG", "GET", "key-pattern"])
        .query(&mut con)
        .unwrap();
    assert_eq!(pattern, ["key-pattern", "{id}"]);
    // The empty key is the one key outside: a user ID has at least one byte.
    assert_eq!(err(&mut con, &["GET", ""]), not_a_presence_key("", "{id}"));
    assert_eq!(int(&mut con, &["DEL", "foo"]), 1);
    assert_eq!(get(&mut con, "foo"), None);
}

/// Another pattern moves the ID (`session:{id}`); the default pattern's keys are then refused
/// with an error naming the pattern in force.
#[test]
fn custom_key_pattern() {
    let server = TestServer::start_with(&["--key-pattern", "session:{id}"]);
    let mut con = server.client();
    ok(&mut con, &["SET", "session:5", "busy", "EX", "60"]);
    assert_eq!(status(&mut con, "5").0, "busy");
    assert_eq!(
        err(&mut con, &["GET", "user:5:presence"]),
        not_a_presence_key("user:5:presence", "session:{id}")
    );
    let keys: Vec<String> = command(&["KEYS", "*"]).query(&mut con).unwrap();
    assert_eq!(keys, ["session:5"]);
}

/// `--key-pattern` without `{id}` exactly once stops the server at start with a message that
/// says why, and exit status 2.
#[test]
fn key_pattern_without_id_refuses_to_start() {
    for pattern in ["user:presence", "{id}:{id}", "", "user:{ID}:presence"] {
        let output = run_tool(
            std::path::Path::new(env!("CARGO_BIN_EXE_presenced")),
            &[
                "--port".to_string(),
                "0".to_string(),
                "--key-pattern".to_string(),
                pattern.to_string(),
            ],
            Duration::from_secs(20),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{pattern:?}: {stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!("presenced: --key-pattern must contain {{id}} exactly once, got '{pattern}'")
        );
    }
}

/// LPUSH, HGET, SADD and the other list, hash, set and sorted-set commands answer WRONGTYPE on
/// an existing presence key and leave it alone; on a missing key reads are empty and writes
/// refused.
#[test]
fn wrongtype_for_other_types() {
    let server = TestServer::start();
    let mut con = server.client();
    let k = key(150);
    ok(&mut con, &["SET", &k, "away", "EX", "100"]);
    let wrongtype = "WRONGTYPE Operation against a key holding the wrong kind of value";
    for args in [
        &["LPUSH", &k, "x"][..],
        &["RPUSH", &k, "x", "y"],
        &["LRANGE", &k, "0", "-1"],
        &["HGET", &k, "f"],
        &["HSET", &k, "f", "v"],
        &["HGETALL", &k],
        &["SADD", &k, "m"],
        &["SMEMBERS", &k],
        &["ZADD", &k, "1", "m"],
    ] {
        assert_eq!(err(&mut con, args), wrongtype, "{args:?}");
    }
    assert_eq!(get(&mut con, &k).as_deref(), Some("away"));
    assert_ttl_near(&mut con, &k, 100);
    let mut s = server.raw();
    rt(
        &mut s,
        &["LPUSH", &k, "x"],
        format!("-{wrongtype}\r\n").as_bytes(),
    );

    let missing = key(151);
    assert_eq!(run(&mut con, &["HGET", &missing, "f"]), Value::Nil);
    assert_eq!(
        run(&mut con, &["LRANGE", &missing, "0", "-1"]),
        Value::Array(vec![])
    );
    assert_eq!(run(&mut con, &["SMEMBERS", &missing]), Value::Array(vec![]));
    assert_eq!(run(&mut con, &["HGETALL", &missing]), Value::Array(vec![]));
    for args in [&["LPUSH", &missing, "x"][..], &["SADD", &missing, "m"]] {
        assert_eq!(
            err(&mut con, args),
            format!(
                "ERR presence keys hold strings only: '{missing}' cannot be created as another type"
            )
        );
    }
    assert_eq!(int(&mut con, &["EXISTS", &missing]), 0);
}

// ---------------------------------------------------------------------------------------------
// Keyspace notifications
// ---------------------------------------------------------------------------------------------

/// `CONFIG SET notify-keyspace-events` takes Redis's letters and `CONFIG GET` shows them in
/// Redis's canonical order (`KEx` reads back `xKE`); an unknown letter gets Redis's exact error
/// and changes nothing.
#[test]
fn notify_keyspace_events_config() {
    let server = TestServer::start();
    let mut con = server.client();
    let get_flags = |con: &mut redis::Connection| -> String {
        let pair: Vec<String> = command(&["CONFIG", "GET", "notify-keyspace-events"])
            .query(con)
            .unwrap();
        assert_eq!(pair[0], "notify-keyspace-events");
        pair[1].clone()
    };
    assert_eq!(get_flags(&mut con), "");
    for (letters, canonical) in [
        ("KEA", "AKE"),
        ("Ex", "xE"),
        ("KEx", "xKE"),
        ("g$xKE", "g$xKE"),
        ("E$g", "g$E"),
        ("Kgx", "gxK"),
        ("KElshzxetdg$m", "AKEm"),
        ("nKE", "nKE"),
        ("", ""),
    ] {
        ok(
            &mut con,
            &["CONFIG", "SET", "notify-keyspace-events", letters],
        );
        assert_eq!(get_flags(&mut con), canonical, "{letters}");
    }
    ok(
        &mut con,
        &["CONFIG", "SET", "notify-keyspace-events", "KEx"],
    );
    let mut s = server.raw();
    for bad in ["Q", "KEQ", "kex", "a"] {
        rt(
            &mut s,
            &["CONFIG", "SET", "notify-keyspace-events", bad],
            b"-ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - \
              Invalid event class character. Use 'Ag$lshzxeKEtmdn'.\r\n",
        );
    }
    assert_eq!(get_flags(&mut con), "xKE");
    rt(
        &mut s,
        &["CONFIG", "SET", "NOTIFY-KEYSPACE-EVENTS", "Eg"],
        b"+OK\r\n",
    );
    assert_eq!(get_flags(&mut con), "gE");
}

/// With `KEx`, a key set with PX 500 is announced on `__keyevent@0__:expired` (message: the
/// key) and `__keyspace@0__:<key>` (message: `expired`) within 1 s of its deadline — both a
/// JSON value with a sub-second TTL and a status word with a whole-second one.
#[test]
fn expired_events_within_a_second() {
    let server = TestServer::start();
    let mut con = server.client();
    ok(
        &mut con,
        &["CONFIG", "SET", "notify-keyspace-events", "KEx"],
    );
    let (k1, k2) = (key(160), key("u-161"));
    let keyevent = RawSubscriber::connect(
        server.port,
        false,
        &[b"SUBSCRIBE", b"__keyevent@0__:expired"],
    );
    let keyspace = RawSubscriber::connect(
        server.port,
        true,
        &[
            b"SUBSCRIBE",
            format!("__keyspace@0__:{k1}").as_bytes(),
            format!("__keyspace@0__:{k2}").as_bytes(),
        ],
    );
    let sent_ms = now_ms() as u64;
    ok(&mut con, &["SET", &k1, "{\"j\":1}", "PX", "500"]);
    ok(&mut con, &["SET", &k2, "away", "PX", "1000"]);
    let acked_ms = now_ms() as u64;

    let events = keyevent.wait_messages(2, Duration::from_secs(10));
    let spaces = keyspace.wait_messages(2, Duration::from_secs(10));
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(spaces.len(), 2, "{spaces:?}");
    for (k, ttl_ms) in [(&k1, 500), (&k2, 1_000)] {
        let event = events
            .iter()
            .find(|m| m.payload() == k.as_bytes())
            .unwrap_or_else(|| panic!("no keyevent for {k}: {events:?}"));
        assert_eq!(event.parts[1], b"__keyevent@0__:expired");
        let space = spaces
            .iter()
            .find(|m| m.parts[1] == format!("__keyspace@0__:{k}").as_bytes())
            .unwrap_or_else(|| panic!("no keyspace event for {k}: {spaces:?}"));
        assert_eq!(space.payload(), b"expired");
        for m in [event, space] {
            assert!(
                m.arrived_ms + 20 >= sent_ms + ttl_ms,
                "{k}: an event {} ms before its deadline",
                sent_ms + ttl_ms - m.arrived_ms
            );
            assert!(
                m.arrived_ms <= acked_ms + ttl_ms + 1_000,
                "{k}: an event {} ms after its deadline",
                m.arrived_ms - (acked_ms + ttl_ms)
            );
        }
    }
    assert_eq!(int(&mut con, &["EXISTS", &k1, &k2]), 0);
}

/// What one keyspace subscriber received: the event names on `__keyspace@0__:<key>`.
fn event_names(sub: &RawSubscriber, count: usize) -> Vec<String> {
    sub.wait_messages(count, Duration::from_secs(10))
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload()).into_owned())
        .collect()
}

/// With every class on, SET (and SETEX, MSET, ...) publishes `set` — followed by `expire` when
/// it gives a TTL, as Redis does — EXPIRE `expire`, PERSIST `persist`, DEL, GETDEL, an expiry
/// into the past and OFFLINE `del`; commands that change nothing publish nothing.
#[test]
fn write_events_with_their_flags_on() {
    let server = TestServer::start();
    let mut con = server.client();
    ok(
        &mut con,
        &["CONFIG", "SET", "notify-keyspace-events", "KEA"],
    );
    let k = key(170);
    let space = RawSubscriber::connect(
        server.port,
        false,
        &[b"SUBSCRIBE", format!("__keyspace@0__:{k}").as_bytes()],
    );
    let events = RawSubscriber::connect(server.port, false, &[b"PSUBSCRIBE", b"__keyevent@0__:*"]);
    let steps: &[(&[&str], &[&str])] = &[
        (&["SET", &k, "online"], &["set"]),
        (&["SET", &k, "away", "EX", "100"], &["set", "expire"]),
        (&["SET", &k, "away", "NX"], &[]),
        (&["SET", &k, "busy", "XX", "KEEPTTL"], &["set"]),
        (&["EXPIRE", &k, "200"], &["expire"]),
        (&["EXPIRE", &k, "100", "GT"], &[]),
        (&["PERSIST", &k], &["persist"]),
        (&["PERSIST", &k], &[]),
        (&["SETEX", &k, "100", "dnd"], &["set", "expire"]),
        (&["GETEX", &k, "PERSIST"], &["persist"]),
        (&["GETEX", &k, "PX", "100000"], &["expire"]),
        (&["GETEX", &k], &[]),
        (&["PSETEX", &k, "100000", "x"], &["set", "expire"]),
        (&["MSET", &k, "dnd"], &["set"]),
        (&["SETNX", &k, "v"], &[]),
        (&["DEL", &k], &["del"]),
        (&["DEL", &k], &[]),
        (&["SETNX", &k, "v"], &["set"]),
        (&["GETDEL", &k], &["del"]),
        (&["SET", &k, "online", "EX", "100"], &["set", "expire"]),
        (&["EXPIRE", &k, "0"], &["del"]),
        (&["SET", &k, "online"], &["set"]),
        (&["GETEX", &k, "PXAT", "1"], &["del"]),
        (&["SET", &k, "{}"], &["set"]),
        (&["PEXPIREAT", &k, "1"], &["del"]),
        (&["SET", &k, "online"], &["set"]),
        (&["OFFLINE", "170"], &["del"]),
        (&["UNLINK", &k], &[]),
        (&["HEARTBEAT", "170"], &[]),
        (&["UNLINK", &k], &["del"]),
    ];
    let mut expected: Vec<String> = Vec::new();
    for (args, names) in steps {
        run(&mut con, args);
        expected.extend(names.iter().map(|n| n.to_string()));
    }
    // One channel: the order is the commands' order.
    let got = event_names(&space, expected.len());
    assert_eq!(got, expected);
    // The key-event channels carry the same events, the key as the message.
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for name in &expected {
        *want.entry(format!("__keyevent@0__:{name}")).or_default() += 1;
    }
    let received = events.wait_messages(expected.len(), Duration::from_secs(10));
    let mut per_channel: BTreeMap<String, usize> = BTreeMap::new();
    for m in &received {
        assert_eq!(m.kind(), b"pmessage");
        assert_eq!(m.payload(), k.as_bytes(), "{m:?}");
        *per_channel
            .entry(String::from_utf8_lossy(&m.parts[2]).into_owned())
            .or_default() += 1;
    }
    assert_eq!(per_channel, want);
}

/// With a class's letter off, its events are not published (checked with markers published
/// after them on the same channels): no `set` without `$`, no `del`/`expire`/`persist` without
/// `g`, no `expired` without `x`, nothing on `__keyspace` without `K` nor on `__keyevent`
/// without `E`.
#[test]
fn write_events_not_published_with_their_flags_off() {
    let server = TestServer::start();
    let mut con = server.client();
    let (k, e) = (key(180), key(181));
    let (k_channel, e_channel) = (format!("__keyspace@0__:{k}"), format!("__keyspace@0__:{e}"));
    let space = RawSubscriber::connect(
        server.port,
        false,
        &[b"SUBSCRIBE", k_channel.as_bytes(), e_channel.as_bytes()],
    );
    let events = RawSubscriber::connect(server.port, false, &[b"PSUBSCRIBE", b"__keyevent@0__:*"]);
    let presence = RawSubscriber::connect(server.port, false, &[b"SUBSCRIBE", b"presence:181"]);
    let flags = |con: &mut redis::Connection, letters: &str| {
        ok(con, &["CONFIG", "SET", "notify-keyspace-events", letters]);
    };
    // Off by default.
    ok(&mut con, &["SET", &k, "online", "EX", "100"]);
    ok(&mut con, &["MSET", &k, "away"]);
    assert_eq!(int(&mut con, &["DEL", &k]), 1);
    // Only `x`: none of the write events.
    flags(&mut con, "KEx");
    ok(&mut con, &["SET", &k, "online", "EX", "100"]);
    assert_eq!(int(&mut con, &["EXPIRE", &k, "200"]), 1);
    assert_eq!(int(&mut con, &["PERSIST", &k]), 1);
    ok(&mut con, &["SETEX", &k, "100", "busy"]);
    run(&mut con, &["GETEX", &k, "PERSIST"]);
    assert_eq!(int(&mut con, &["DEL", &k]), 1);
    // `$` without `g`: set only.
    flags(&mut con, "KE$");
    ok(&mut con, &["SET", &k, "online", "EX", "100"]); // set
    assert_eq!(int(&mut con, &["PERSIST", &k]), 1);
    assert_eq!(int(&mut con, &["EXPIRE", &k, "0"]), 1);
    // `g` without `$`: del/expire/persist, no set.
    flags(&mut con, "KEg");
    ok(&mut con, &["SET", &k, "online"]);
    assert_eq!(int(&mut con, &["EXPIRE", &k, "50"]), 1); // expire
    assert_eq!(int(&mut con, &["DEL", &k]), 1); // del
    // `K` only: keyspace, no keyevent; `E` only: keyevent, no keyspace.
    flags(&mut con, "Kg$");
    ok(&mut con, &["SET", &k, "online"]); // keyspace set
    flags(&mut con, "Eg$");
    assert_eq!(int(&mut con, &["EXPIRE", &k, "60"]), 1); // keyevent expire
    // Everything but `x`: an expiry publishes no `expired`. Its presence event shows that the
    // expiry was handled before the flags change again.
    flags(&mut con, "KEg$lshzetd");
    ok(&mut con, &["SET", &e, "online", "PX", "300"]); // set, expire
    let transitions = presence.wait_messages(2, Duration::from_secs(10));
    let states: Vec<String> = transitions
        .iter()
        .filter_map(|m| m.field("state"))
        .collect();
    assert_eq!(states, ["online", "offline"]);

    // Markers with everything on: each channel's next messages must be these.
    flags(&mut con, "KEA");
    ok(&mut con, &["SET", &k, "online", "EX", "100"]); // set, expire
    assert_eq!(int(&mut con, &["PERSIST", &k]), 1); // persist
    assert_eq!(int(&mut con, &["DEL", &k]), 1); // del
    ok(&mut con, &["SET", &e, "online", "PX", "300"]); // set, expire, then expired

    let expected_k = [
        "set", // KE$
        "expire", "del", // KEg
        "set", // Kg$
        "set", "expire", "persist", "del", // KEA
    ];
    let expected_e = ["set", "expire", "set", "expire", "expired"];
    let received =
        space.wait_messages(expected_k.len() + expected_e.len(), Duration::from_secs(10));
    let names_on = |channel: &str| -> Vec<String> {
        received
            .iter()
            .filter(|m| m.parts[1] == channel.as_bytes())
            .map(|m| String::from_utf8_lossy(m.payload()).into_owned())
            .collect()
    };
    assert_eq!(names_on(&k_channel), expected_k);
    assert_eq!(names_on(&e_channel), expected_e);

    let want: BTreeMap<String, Vec<String>> = [
        ("set", vec![&k, &e, &k, &e]),
        ("expire", vec![&k, &k, &e, &k, &e]),
        ("persist", vec![&k]),
        ("del", vec![&k, &k]),
        ("expired", vec![&e]),
    ]
    .into_iter()
    .map(|(event, keys)| {
        (
            format!("__keyevent@0__:{event}"),
            keys.into_iter().cloned().collect(),
        )
    })
    .collect();
    let total: usize = want.values().map(Vec::len).sum();
    let received = events.wait_messages(total, Duration::from_secs(10));
    let mut per_channel: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &received {
        per_channel
            .entry(String::from_utf8_lossy(&m.parts[2]).into_owned())
            .or_default()
            .push(String::from_utf8_lossy(m.payload()).into_owned());
    }
    assert_eq!(per_channel, want);
}

// ---------------------------------------------------------------------------------------------
// At scale, and with Redis's own tools
// ---------------------------------------------------------------------------------------------

/// 100,000 keys set with `PX 2000` in one pipelined batch all expire together, and every
/// `expired` event — on `__keyevent@0__:expired` and on each `__keyspace@0__:<key>` — arrives
/// within 1 s of its key's deadline, for all 100,000 distinct keys.
#[test]
fn hundred_thousand_expired_events_on_time() {
    const KEYS: usize = 100_000;
    let _heavy = heavy_test_lock();
    let server = TestServer::start();
    let mut con = server.client();
    ok(
        &mut con,
        &["CONFIG", "SET", "notify-keyspace-events", "KEx"],
    );
    let keyevent = RawSubscriber::connect(
        server.port,
        false,
        &[b"SUBSCRIBE", b"__keyevent@0__:expired"],
    );
    let keyspace =
        RawSubscriber::connect(server.port, false, &[b"PSUBSCRIBE", b"__keyspace@0__:*"]);
    let mut batch = Vec::with_capacity(KEYS * 56);
    for i in 0..KEYS {
        batch.extend(resp_command(&[
            b"SET",
            key(i).as_bytes(),
            b"online",
            b"PX",
            b"2000",
        ]));
    }
    let mut stream = server.raw();
    let mut writer = stream.try_clone().expect("clone");
    let batch_start = now_ms() as u64;
    // Written from another thread so that neither side waits on a full socket buffer.
    let write = std::thread::spawn(move || writer.write_all(&batch));
    let replies = read_until(&mut stream, |out| out.len() >= KEYS * 5);
    let batch_end = now_ms() as u64;
    write.join().expect("writer").expect("write");
    assert!(replies == b"+OK\r\n".repeat(KEYS), "one +OK per SET");
    println!(
        "100,000 SETs acknowledged in {} ms",
        batch_end - batch_start
    );

    // Every event is due by batch_end + 3 s; looking earlier would only copy the subscribers'
    // growing lists again and again, taking CPU from the delivery being measured.
    let started = Instant::now();
    let due = batch_end + 3_000 + 100;
    while (now_ms() as u64) < due {
        std::thread::sleep(Duration::from_millis(100));
    }
    let events = keyevent.wait_messages(KEYS, Duration::from_secs(60));
    let spaces = keyspace.wait_messages(KEYS, Duration::from_secs(60));
    println!(
        "{} keyevent and {} keyspace events {:?} after the batch",
        events.len(),
        spaces.len(),
        started.elapsed()
    );
    let lags = |ms: &[&crate::subscriber::Received]| {
        let mut lags: Vec<i64> = ms
            .iter()
            .map(|m| m.arrived_ms as i64 - (batch_end + 2_000) as i64)
            .collect();
        lags.sort_unstable();
        [0.0, 0.5, 0.9, 0.99, 1.0].map(|q| lags[((lags.len() - 1) as f64 * q) as usize])
    };
    println!(
        "keyevent lag after the last deadline (min/p50/p90/p99/max ms): {:?}; keyspace: {:?}",
        lags(&events.iter().collect::<Vec<_>>()),
        lags(&spaces.iter().collect::<Vec<_>>())
    );
    let earliest = batch_start + 2_000;
    let latest = batch_end + 2_000 + 1_000;
    let mut worst_ms = 0;
    let mut event_keys = BTreeSet::new();
    for m in &events {
        assert_eq!(m.parts[1], b"__keyevent@0__:expired");
        event_keys.insert(m.payload().to_vec());
        worst_ms = worst_ms.max(m.arrived_ms.saturating_sub(batch_end + 2_000));
        assert!(
            m.arrived_ms + 50 >= earliest,
            "an event before any deadline"
        );
        assert!(
            m.arrived_ms <= latest,
            "expired event for {} {} ms after the last deadline",
            String::from_utf8_lossy(m.payload()),
            m.arrived_ms - (batch_end + 2_000)
        );
    }
    let mut space_keys = BTreeSet::new();
    for m in &spaces {
        assert_eq!(m.kind(), b"pmessage");
        assert_eq!(m.payload(), b"expired");
        let channel = m.parts[2]
            .strip_prefix(b"__keyspace@0__:")
            .expect("a keyspace channel");
        space_keys.insert(channel.to_vec());
        worst_ms = worst_ms.max(m.arrived_ms.saturating_sub(batch_end + 2_000));
        assert!(
            m.arrived_ms + 50 >= earliest,
            "an event before any deadline"
        );
        assert!(
            m.arrived_ms <= latest,
            "keyspace event {} ms after the last deadline",
            m.arrived_ms - (batch_end + 2_000)
        );
    }
    let all: BTreeSet<Vec<u8>> = (0..KEYS).map(|i| key(i).into_bytes()).collect();
    assert_eq!(events.len(), KEYS, "one keyevent message per key");
    assert_eq!(event_keys, all, "every key's keyevent message");
    assert_eq!(spaces.len(), KEYS, "one keyspace message per key");
    assert_eq!(space_keys, all, "every key's keyspace message");
    println!("worst delivery {worst_ms} ms after the last deadline");
    assert_eq!(int(&mut con, &["DBSIZE"]), 0);
}

/// `redis-benchmark -n 500000 -P 16 -r 1000000 SET user:__rand_int__:presence online EX 30`
/// runs to the end without an error, and the keys it wrote are online presence keys.
#[test]
fn redis_benchmark_set_with_ex() {
    let _heavy = heavy_test_lock();
    let server = TestServer::start();
    let args: Vec<String> = [
        "-p",
        &server.port.to_string(),
        "-n",
        "500000",
        "-P",
        "16",
        "-r",
        "1000000",
        "-q",
        "SET",
        "user:__rand_int__:presence",
        "online",
        "EX",
        "30",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let started = Instant::now();
    let output = run_tool(
        &require_tool("redis-benchmark"),
        &args,
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "redis-benchmark in {:?}:\n{stdout}{stderr}",
        started.elapsed()
    );
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{stderr}",
        output.status
    );
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains("ERR") && !text.contains("Error"),
            "{stdout}\n{stderr}"
        );
    }
    assert!(stdout.contains("requests per second"), "{stdout}");
    // 500,000 draws among 1,000,000 IDs: about 393,000 distinct keys.
    let mut con = server.client();
    let online = int(&mut con, &["DBSIZE"]);
    assert!((350_000..=500_000).contains(&online), "DBSIZE {online}");
    let (_, sample): (String, Vec<String>) = command(&["SCAN", "0", "COUNT", "50"])
        .query(&mut con)
        .unwrap();
    assert!(!sample.is_empty());
    for k in &sample {
        let id = k
            .strip_prefix("user:")
            .and_then(|r| r.strip_suffix(":presence"))
            .expect("a presence key");
        assert!(
            id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()),
            "{k}"
        );
        assert_eq!(get(&mut con, k).as_deref(), Some("online"));
        let ttl = int(&mut con, &["TTL", k]);
        assert!((1..=30).contains(&ttl), "{k}: TTL {ttl}");
    }
}

/// `redis-cli MGET` with 100 presence keys prints 100 lines: each set key's value in order and
/// an empty line for each missing one.
#[test]
fn redis_cli_mget_of_a_hundred_keys() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut expected = Vec::new();
    for i in 0..100 {
        let value = match i % 4 {
            0 => String::new(),
            1 => "online".to_string(),
            2 => format!("{{\"n\":{i}}}"),
            _ => "away".to_string(),
        };
        if !value.is_empty() {
            ok(&mut con, &["SET", &key(i), &value, "EX", "300"]);
        }
        expected.push(value);
    }
    let mut args = vec![
        "-p".to_string(),
        server.port.to_string(),
        "MGET".to_string(),
    ];
    args.extend((0..100).map(key));
    let output = run_tool(&require_tool("redis-cli"), &args, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 100, "{stdout}");
    assert_eq!(lines, expected);
}
