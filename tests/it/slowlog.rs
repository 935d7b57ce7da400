//! SLOWLOG GET/LEN/RESET/HELP with `slowlog-log-slower-than` and `slowlog-max-len`, and INFO
//! commandstats with its calls, rejected and failed counts: Redis 7's replies and texts, on the
//! real binary.

use std::io::Write;
use std::net::TcpStream;

use redis::Value;

use crate::support::{TestServer, error_text, resp_command};
use crate::util::{as_text, info, info_field, now_ms, read_until, read_until_suffix, show};

/// One `SLOWLOG GET` entry.
#[derive(Debug)]
struct Entry {
    id: i64,
    time_s: i64,
    duration_us: i64,
    args: Vec<Vec<u8>>,
    peer: String,
    name: String,
}

impl Entry {
    fn words(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }
}

fn bytes_of(value: &Value) -> Vec<u8> {
    match value {
        Value::BulkString(b) => b.clone(),
        other => panic!("not a bulk string: {other:?}"),
    }
}

fn int_of(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

/// Parses a SLOWLOG GET reply, checking each entry has Redis's six fields.
fn parse_entries(reply: &Value) -> Vec<Entry> {
    let Value::Array(entries) = reply else {
        panic!("SLOWLOG GET is not an array: {reply:?}")
    };
    entries
        .iter()
        .map(|entry| {
            let Value::Array(fields) = entry else {
                panic!("an entry is not an array: {entry:?}")
            };
            assert_eq!(fields.len(), 6, "six fields: {fields:?}");
            let Value::Array(args) = &fields[3] else {
                panic!("arguments are not an array: {fields:?}")
            };
            Entry {
                id: int_of(&fields[0]),
                time_s: int_of(&fields[1]),
                duration_us: int_of(&fields[2]),
                args: args.iter().map(bytes_of).collect(),
                peer: String::from_utf8(bytes_of(&fields[4])).expect("ip:port"),
                name: String::from_utf8(bytes_of(&fields[5])).expect("a name"),
            }
        })
        .collect()
}

fn slowlog_get(con: &mut redis::Connection, count: Option<&str>) -> Vec<Entry> {
    let mut cmd = redis::cmd("SLOWLOG");
    cmd.arg("GET");
    if let Some(count) = count {
        cmd.arg(count);
    }
    parse_entries(&cmd.query::<Value>(con).expect("SLOWLOG GET"))
}

fn slowlog_len(con: &mut redis::Connection) -> i64 {
    redis::cmd("SLOWLOG")
        .arg("LEN")
        .query(con)
        .expect("SLOWLOG LEN")
}

fn ok(con: &mut redis::Connection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    let reply: String = cmd.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert_eq!(reply, "OK", "{args:?}");
}

/// This connection's `ip:port` as the server sees it (CLIENT INFO's `addr=`).
fn peer_of(con: &mut redis::Connection) -> String {
    let line: String = redis::cmd("CLIENT").arg("INFO").query(con).unwrap();
    line.split(' ')
        .find_map(|f| f.strip_prefix("addr="))
        .expect("addr= in CLIENT INFO")
        .to_string()
}

/// With a threshold of 0 every command is logged after it ran, newest first: ids decrease by
/// one, times are now, arguments are as sent (case kept), the peer is the client's address and
/// the name is the one the command left (SETNAME's own entry has it). GET takes a count (10 by
/// default, -1 for all, 0 for none); RESET empties the log and is itself the first new entry;
/// ids go on increasing after it.
#[test]
fn slowlog_lists_commands_newest_first() {
    let server = TestServer::start_with(&["--slowlog-log-slower-than", "0"]);
    let mut con = server.client();
    let peer = peer_of(&mut con);
    ok(&mut con, &["SLOWLOG", "RESET"]);
    let _: i64 = redis::cmd("heartbeat").arg("7").query(&mut con).unwrap();
    ok(&mut con, &["CLIENT", "SETNAME", "gw-1"]);
    let _: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(slowlog_len(&mut con), 4);
    let entries = slowlog_get(&mut con, None);
    let words: Vec<Vec<String>> = entries.iter().map(Entry::words).collect();
    assert_eq!(
        words,
        [
            vec!["SLOWLOG", "LEN"],
            vec!["PING"],
            vec!["CLIENT", "SETNAME", "gw-1"],
            vec!["heartbeat", "7"],
            vec!["SLOWLOG", "RESET"],
        ]
    );
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["gw-1", "gw-1", "gw-1", "", ""]);
    let now_s = now_ms() / 1000;
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.id, entries[0].id - i as i64, "{entries:?}");
        assert!((entry.time_s - now_s).abs() <= 60, "{entry:?}");
        assert!((0..10_000_000).contains(&entry.duration_us), "{entry:?}");
        assert_eq!(entry.peer, peer);
    }

    let two = slowlog_get(&mut con, Some("2"));
    let words: Vec<Vec<String>> = two.iter().map(Entry::words).collect();
    assert_eq!(words, [vec!["SLOWLOG", "GET"], vec!["SLOWLOG", "LEN"]]);
    assert!(slowlog_get(&mut con, Some("0")).is_empty());
    for _ in 0..12 {
        let _: String = redis::cmd("PING").query(&mut con).unwrap();
    }
    assert_eq!(slowlog_get(&mut con, None).len(), 10, "10 by default");
    let all = slowlog_get(&mut con, Some("-1"));
    assert_eq!(
        all.len() as i64,
        slowlog_len(&mut con) - 1,
        "-1 is every entry"
    );
    let last_id = all[0].id;
    ok(&mut con, &["SLOWLOG", "RESET"]);
    assert_eq!(
        slowlog_len(&mut con),
        1,
        "RESET logs itself after emptying the log"
    );
    let after = slowlog_get(&mut con, None);
    assert_eq!(after[1].words(), ["SLOWLOG", "RESET"]);
    assert!(after[1].id > last_id, "ids are never reused");
}

/// SLOWLOG's refusals read exactly as Redis 7's, and COMMAND describes it as a container of
/// get, len, reset and help.
#[test]
fn slowlog_errors_and_help_match_redis() {
    let server = TestServer::start();
    let mut con = server.client();
    let count_error = "ERR count should be greater than or equal to -1";
    for count in ["-2", "abc", "01", "+1", "9223372036854775808", ""] {
        assert_eq!(
            error_text::<Value>(&mut con, redis::cmd("SLOWLOG").arg("GET").arg(count)),
            count_error,
            "{count:?}"
        );
    }
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("SLOWLOG").arg("GET").arg(1).arg(2)),
        "ERR unknown subcommand or wrong number of arguments for 'GET'. Try SLOWLOG HELP."
    );
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("slowlog").arg("Get").arg(1).arg(2)),
        "ERR unknown subcommand or wrong number of arguments for 'Get'. Try SLOWLOG HELP."
    );
    for sub in ["LEN", "RESET", "HELP"] {
        assert_eq!(
            error_text::<Value>(&mut con, redis::cmd("SLOWLOG").arg(sub).arg("x")),
            format!(
                "ERR wrong number of arguments for 'slowlog|{}' command",
                sub.to_lowercase()
            )
        );
    }
    assert_eq!(
        error_text::<Value>(&mut con, &mut redis::cmd("SLOWLOG")),
        "ERR wrong number of arguments for 'slowlog' command"
    );
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("SLOWLOG").arg("FOO")),
        "ERR unknown subcommand 'FOO'. Try SLOWLOG HELP."
    );
    let help: Vec<String> = redis::cmd("SLOWLOG").arg("HELP").query(&mut con).unwrap();
    assert_eq!(
        help,
        [
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
            "HELP",
            "    Prints this help.",
        ]
    );
    let info: Vec<Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("slowlog")
        .query(&mut con)
        .unwrap();
    let Value::Array(ref fields) = info[0] else {
        panic!("COMMAND INFO slowlog: {info:?}")
    };
    assert_eq!(fields[1], Value::Int(-2));
    let Value::Array(ref subs) = fields[9] else {
        panic!("subcommands: {fields:?}")
    };
    let names: Vec<String> = subs
        .iter()
        .map(|s| match s {
            Value::Array(f) => as_text(&f[0]),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "slowlog|get",
            "slowlog|len",
            "slowlog|reset",
            "slowlog|help"
        ]
    );
    let listed: Vec<String> = redis::cmd("COMMAND").arg("LIST").query(&mut con).unwrap();
    assert!(listed.iter().any(|n| n == "slowlog"));
    let docs: Value = redis::cmd("COMMAND")
        .arg("DOCS")
        .arg("slowlog")
        .query(&mut con)
        .unwrap();
    assert!(format!("{docs:?}").contains("slowlog|get"), "{docs:?}");
}

/// An entry keeps at most 32 arguments, the last of which then counts the rest, and at most 128
/// bytes of each argument followed by how many more there were; binary arguments are kept byte
/// for byte.
#[test]
fn slowlog_truncates_long_commands_as_redis() {
    let server = TestServer::start_with(&["--slowlog-log-slower-than", "0"]);
    let mut con = server.client();
    let mstatus = |con: &mut redis::Connection, users: usize| {
        let mut cmd = redis::cmd("MSTATUS");
        for user in 0..users {
            cmd.arg(user);
        }
        let _: Value = cmd.query(con).unwrap();
        slowlog_get(con, Some("1")).remove(0).words()
    };
    let kept = mstatus(&mut con, 31);
    assert_eq!(kept.len(), 32, "32 arguments are all kept");
    assert_eq!(kept[31], "30");
    let kept = mstatus(&mut con, 32);
    assert_eq!(kept.len(), 32);
    assert_eq!(kept[30], "29");
    assert_eq!(kept[31], "... (2 more arguments)");
    let kept = mstatus(&mut con, 39);
    assert_eq!(kept[31], "... (9 more arguments)");

    let id = |n: usize| "u".repeat(n);
    for (len, expected) in [
        (128, id(128)),
        (129, format!("{}... (1 more bytes)", id(128))),
        (200, format!("{}... (72 more bytes)", id(128))),
    ] {
        let _: i64 = redis::cmd("HEARTBEAT")
            .arg(id(len))
            .query(&mut con)
            .unwrap();
        let entry = slowlog_get(&mut con, Some("1")).remove(0);
        assert_eq!(
            entry.words(),
            ["HEARTBEAT", expected.as_str()],
            "{len} bytes"
        );
    }
    let binary = b"\xff\x00\r\nbin".to_vec();
    let _: Vec<u8> = redis::cmd("ECHO").arg(&binary[..]).query(&mut con).unwrap();
    let entry = slowlog_get(&mut con, Some("1")).remove(0);
    assert_eq!(entry.args, [b"ECHO".to_vec(), binary]);
}

/// `slowlog-log-slower-than` (10,000 µs by default: a PING is not logged) and `slowlog-max-len`
/// (128) are read and changed with CONFIG GET/SET and take effect for the very next command,
/// pipelined ones included (and for the CONFIG SET itself, which runs before it is logged): -1
/// logs nothing, 0 everything; a shorter length drops the oldest entries at once. Values are
/// checked with Redis's texts before anything is applied.
#[test]
fn slowlog_settings_through_config() {
    let server = TestServer::start();
    let mut con = server.client();
    let get = |con: &mut redis::Connection, pattern: &str| -> Vec<String> {
        redis::cmd("CONFIG")
            .arg("GET")
            .arg(pattern)
            .query(con)
            .unwrap()
    };
    assert_eq!(
        get(&mut con, "slowlog-log-slower-than"),
        ["slowlog-log-slower-than", "10000"]
    );
    assert_eq!(get(&mut con, "slowlog-max-len"), ["slowlog-max-len", "128"]);
    assert_eq!(get(&mut con, "slowlog*").len(), 4);
    let _: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(slowlog_len(&mut con), 0, "a PING takes less than 10 ms");

    let mut raw = server.raw();
    let mut pipeline = Vec::new();
    for args in [
        &["CONFIG", "SET", "slowlog-log-slower-than", "0"][..],
        &["PING", "a"],
        &["CONFIG", "SET", "slowlog-log-slower-than", "-1"],
        &["PING", "b"],
        &["CONFIG", "SET", "SLOWLOG-LOG-SLOWER-THAN", "0"],
        &["PING", "c"],
    ] {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        pipeline.extend(resp_command(&args));
    }
    raw.write_all(&pipeline).unwrap();
    let replies = read_until_suffix(&mut raw, b"$1\r\nc\r\n");
    assert_eq!(
        show(&replies),
        "+OK\r\n$1\r\na\r\n+OK\r\n$1\r\nb\r\n+OK\r\n$1\r\nc\r\n"
    );
    let words: Vec<Vec<String>> = slowlog_get(&mut con, None)
        .iter()
        .map(Entry::words)
        .collect();
    assert_eq!(
        words,
        [
            vec!["PING", "c"],
            vec!["CONFIG", "SET", "SLOWLOG-LOG-SLOWER-THAN", "0"],
            vec!["PING", "a"],
            vec!["CONFIG", "SET", "slowlog-log-slower-than", "0"],
        ]
    );
    assert_eq!(
        get(&mut con, "slowlog-log-slower-than"),
        ["slowlog-log-slower-than", "0"]
    );

    ok(&mut con, &["CONFIG", "SET", "slowlog-max-len", "2"]);
    assert_eq!(slowlog_len(&mut con), 2, "trimmed at once, to SET and GET");
    for _ in 0..5 {
        let _: String = redis::cmd("PING").query(&mut con).unwrap();
    }
    assert_eq!(slowlog_len(&mut con), 2);
    assert_eq!(slowlog_get(&mut con, Some("-1")).len(), 2);
    ok(&mut con, &["CONFIG", "SET", "slowlog-max-len", "0"]);
    assert_eq!(slowlog_len(&mut con), 0);
    assert_eq!(get(&mut con, "slowlog-max-len"), ["slowlog-max-len", "0"]);
    ok(&mut con, &["CONFIG", "SET", "slowlog-max-len", "100000"]);

    let failed = |what: &str, reason: &str| {
        format!("ERR CONFIG SET failed (possibly related to argument '{what}') - {reason}")
    };
    let not_integer = "argument couldn't be parsed into an integer";
    for (args, expected) in [
        (
            &["slowlog-max-len", "x"][..],
            failed("slowlog-max-len", not_integer),
        ),
        (
            &["SLOWLOG-MAX-LEN", "05"],
            failed("slowlog-max-len", not_integer),
        ),
        (
            &["slowlog-max-len", "-1"],
            failed(
                "slowlog-max-len",
                "argument must be between 0 and 100000 inclusive",
            ),
        ),
        (
            &["slowlog-max-len", "100001"],
            failed(
                "slowlog-max-len",
                "argument must be between 0 and 100000 inclusive",
            ),
        ),
        (
            &["Slowlog-Log-Slower-Than", "-2"],
            failed(
                "slowlog-log-slower-than",
                "argument must be between -1 and 9223372036854775807 inclusive",
            ),
        ),
        (
            &["slowlog-log-slower-than", "9223372036854775808"],
            failed("slowlog-log-slower-than", not_integer),
        ),
        (
            &["slowlog-max-len", "5", "Slowlog-Max-Len", "6"],
            failed("Slowlog-Max-Len", "duplicate parameter"),
        ),
        (
            &["slowlog-max-len", "x", "nosuch", "1"],
            "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'".to_string(),
        ),
        (
            &["slowlog-max-len", "x", "maxclients", "1"],
            failed("maxclients", "can't set immutable config"),
        ),
        (
            &["slowlog-max-len", "1", "x"],
            "ERR syntax error".to_string(),
        ),
    ] {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("SET").arg(args);
        assert_eq!(
            error_text::<Value>(&mut con, &mut cmd),
            expected,
            "{args:?}"
        );
    }
    // Nothing was applied by the refused requests: the one valid pair of the last one
    // included.
    assert_eq!(
        get(&mut con, "slowlog-max-len"),
        ["slowlog-max-len", "100000"]
    );
    ok(
        &mut con,
        &[
            "CONFIG",
            "SET",
            "slowlog-max-len",
            "7",
            "slowlog-log-slower-than",
            "-1",
        ],
    );
    assert_eq!(get(&mut con, "slowlog-max-len"), ["slowlog-max-len", "7"]);
    assert_eq!(
        get(&mut con, "slowlog-log-slower-than"),
        ["slowlog-log-slower-than", "-1"]
    );
}

/// The flags `--slowlog-log-slower-than` and `--slowlog-max-len` set what CONFIG GET shows.
#[test]
fn slowlog_flags_set_the_start_values() {
    let server =
        TestServer::start_with(&["--slowlog-log-slower-than", "-1", "--slowlog-max-len", "5"]);
    let mut con = server.client();
    let values: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("slowlog-log-slower-than")
        .arg("slowlog-max-len")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        values,
        ["slowlog-log-slower-than", "-1", "slowlog-max-len", "5"]
    );
}

/// Where the RESP value starting at `at` ends, if `buf` holds all of it.
fn value_end(buf: &[u8], at: usize) -> Option<usize> {
    let line_end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    let header = std::str::from_utf8(&buf[at + 1..line_end]).ok()?;
    let after = line_end + 2;
    match buf[at] {
        b'$' | b'=' | b'!' if header != "-1" => {
            let end = after + header.parse::<usize>().ok()? + 2;
            (buf.len() >= end).then_some(end)
        }
        kind @ (b'*' | b'~' | b'>' | b'%') if header != "-1" => {
            let count = header.parse::<usize>().ok()? * if kind == b'%' { 2 } else { 1 };
            (0..count).try_fold(after, |next, _| value_end(buf, next))
        }
        _ => Some(after),
    }
}

/// Sends `args` on a raw connection and reads its whole reply (and nothing more: one request
/// at a time), as text.
fn raw_call(stream: &mut TcpStream, args: &[&str]) -> String {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    stream.write_all(&resp_command(&args)).unwrap();
    let reply = read_until(stream, |got| value_end(got, 0).is_some());
    assert_eq!(
        value_end(&reply, 0),
        Some(reply.len()),
        "one reply: {}",
        show(&reply)
    );
    show(&reply)
}

/// As in Redis: EXEC is not logged but each command it ran is; a queued command is not logged
/// when queued; refused commands (unknown, wrong arity) are not logged at all; AUTH's and HELLO
/// AUTH's credentials and CONFIG SET requirepass's value are `(redacted)` (even when the
/// command fails), except in a request refused before they were read (`AUTH a b c`).
#[test]
fn slowlog_skips_exec_and_redacts_secrets() {
    let server =
        TestServer::start_with(&["--requirepass", "secret", "--slowlog-log-slower-than", "0"]);
    let mut raw = server.raw();
    let peer = raw.local_addr().unwrap().to_string();
    assert!(raw_call(&mut raw, &["AUTH", "wrong"]).starts_with("-WRONGPASS"));
    assert_eq!(raw_call(&mut raw, &["AUTH", "secret"]), "+OK\r\n");
    assert_eq!(
        raw_call(&mut raw, &["AUTH", "default", "secret"]),
        "+OK\r\n"
    );
    assert_eq!(
        raw_call(&mut raw, &["AUTH", "a", "b", "c"]),
        "-ERR syntax error\r\n"
    );
    let hello = raw_call(
        &mut raw,
        &["HELLO", "2", "AUTH", "default", "secret", "SETNAME", "gw"],
    );
    assert!(hello.starts_with("*14\r\n"), "{hello}");
    assert_eq!(raw_call(&mut raw, &["MULTI"]), "+OK\r\n");
    assert_eq!(raw_call(&mut raw, &["PING", "inside"]), "+QUEUED\r\n");
    assert_eq!(
        raw_call(&mut raw, &["HEARTBEAT", "1", "TTL", "0"]),
        "+QUEUED\r\n"
    );
    let exec = raw_call(&mut raw, &["EXEC"]);
    assert!(
        exec.starts_with("*2\r\n$6\r\ninside\r\n-ERR invalid TTL"),
        "{exec}"
    );
    assert_eq!(raw_call(&mut raw, &["MULTI"]), "+OK\r\n");
    assert!(raw_call(&mut raw, &["HEARTBEAT"]).starts_with("-ERR wrong number"));
    assert!(raw_call(&mut raw, &["EXEC"]).starts_with("-EXECABORT"));
    assert!(raw_call(&mut raw, &["NOSUCH", "x"]).starts_with("-ERR unknown command"));
    assert!(
        raw_call(&mut raw, &["CONFIG", "SET", "requirepass", "hunter2"])
            .contains("can't set immutable config")
    );
    assert!(
        raw_call(
            &mut raw,
            &["CONFIG", "SET", "nosuch", "1", "requirepass", "hunter3"]
        )
        .contains("Unknown option")
    );

    let mut con = redis::Client::open(format!("redis://:secret@127.0.0.1:{}/", server.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let entries = slowlog_get(&mut con, Some("-1"));
    let mine: Vec<&Entry> = entries.iter().filter(|e| e.peer == peer).collect();
    let words: Vec<Vec<String>> = mine.iter().map(|e| e.words()).collect();
    let r = "(redacted)";
    assert_eq!(
        words,
        [
            vec!["CONFIG", "SET", "nosuch", "1", "requirepass", r],
            vec!["CONFIG", "SET", "requirepass", r],
            vec!["MULTI"],
            vec!["HEARTBEAT", "1", "TTL", "0"],
            vec!["PING", "inside"],
            vec!["MULTI"],
            vec!["HELLO", "2", "AUTH", r, r, "SETNAME", "gw"],
            vec!["AUTH", "a", "b", "c"],
            vec!["AUTH", r, r],
            vec!["AUTH", r],
            vec!["AUTH", r],
        ]
    );
    let names: Vec<&str> = mine.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names[..7], ["gw"; 7]);
    assert_eq!(names[7..], [""; 4]);
    let log = format!("{entries:?}");
    assert!(!log.contains("secret") && !log.contains("hunter"), "{log}");
}

/// The fields of one `cmdstat_<name>` line, without the times: (calls, rejected, failed).
fn counts(text: &str, name: &str) -> Option<(u64, u64, u64)> {
    let value = info_field(text, &format!("cmdstat_{name}"))?;
    let field = |key: &str| -> u64 {
        value
            .split(',')
            .find_map(|f| f.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in {value}"))
            .parse()
            .unwrap_or_else(|_| panic!("{key} is a number in {value}"))
    };
    let per_call = value
        .split(',')
        .find_map(|f| f.strip_prefix("usec_per_call="))
        .expect("usec_per_call");
    let (whole, cents) = per_call.split_once('.').expect("two decimals");
    assert!(
        whole.parse::<u64>().is_ok() && cents.len() == 2,
        "usec_per_call={per_call}"
    );
    let _ = field("usec");
    Some((
        field("calls"),
        field("rejected_calls"),
        field("failed_calls"),
    ))
}

/// INFO commandstats counts as Redis does: `calls` every run (failed ones included, each
/// command an EXEC ran, and the EXEC), `rejected_calls` refusals before running (wrong arity,
/// NOAUTH, not allowed in a transaction or while subscribed; charged to the subcommand when
/// there is one), `failed_calls` runs that answered an error (an EXECABORT, an error inside
/// EXEC for the command that made it, not for the EXEC). Unknown commands and subcommands and
/// queued commands are not counted. CONFIG RESETSTAT zeroes everything, then counts itself.
#[test]
fn commandstats_counts_calls_rejections_and_failures() {
    let server = TestServer::start_with(&["--requirepass", "secret"]);
    // Connected (and authenticated) before the reset, so that its own AUTH is not counted.
    let mut con = redis::Client::open(format!("redis://:secret@127.0.0.1:{}/", server.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut raw = server.raw();
    assert_eq!(raw_call(&mut raw, &["AUTH", "secret"]), "+OK\r\n");
    assert_eq!(raw_call(&mut raw, &["PING"]), "+PONG\r\n");
    assert_eq!(raw_call(&mut raw, &["CONFIG", "RESETSTAT"]), "+OK\r\n");
    let stats = info(&mut con, "commandstats");
    assert!(stats.starts_with("# Commandstats\r\n"), "{stats}");
    assert_eq!(counts(&stats, "config|resetstat"), Some((1, 0, 0)));
    assert_eq!(counts(&stats, "ping"), None, "reset");
    assert_eq!(
        info_field(&stats, "cmdstat_config|resetstat")
            .map(|v| v.ends_with(",rejected_calls=0,failed_calls=0")),
        Some(true)
    );

    let steps: &[&[&str]] = &[
        &["RESET"],
        &["PING"],
        &["AUTH", "wrong"],
        &["AUTH", "secret"],
        &["CLIENT"],
        &["CLIENT", "FOO"],
        &["CLIENT", "GETNAME", "x"],
        &["CLIENT", "GETNAME"],
        &["GET"],
        &["HEARTBEAT", "1", "TTL", "0"],
        &["HEARTBEAT", "1"],
        &["MULTI"],
        &["WATCH", "user:1:presence"],
        &["GET"],
        &["NOSUCH"],
        &["EXEC"],
        &["MULTI"],
        &["HEARTBEAT", "1", "TTL", "0"],
        &["HEARTBEAT", "2"],
        &["EXEC"],
        &["MULTI"],
        &["SAVE"],
        &["DISCARD"],
        &["EXEC"],
        &["SUBSCRIBE", "ch"],
        &["GET", "user:1:presence"],
        &["PING"],
    ];
    for step in steps {
        let _ = raw_call(&mut raw, step);
    }
    let text = info(&mut con, "commandstats");
    for (name, expected) in [
        ("reset", (1, 0, 0)),
        ("ping", (1, 1, 0)),
        ("auth", (2, 0, 1)),
        ("client", (0, 1, 0)),
        ("client|getname", (1, 1, 0)),
        ("get", (0, 3, 0)),
        ("heartbeat", (4, 0, 2)),
        ("multi", (3, 0, 0)),
        ("watch", (1, 0, 1)),
        ("exec", (3, 0, 2)),
        ("save", (0, 1, 0)),
        ("discard", (1, 0, 0)),
        ("subscribe", (1, 0, 0)),
        ("info", (1, 0, 0)),
    ] {
        assert_eq!(counts(&text, name), Some(expected), "{name} in\n{text}");
    }
    assert!(
        !text.contains("nosuch") && !text.contains("client|foo"),
        "{text}"
    );
    assert_eq!(
        info_field(&text, "cmdstat_get").as_deref(),
        Some("calls=0,usec=0,usec_per_call=0.00,rejected_calls=3,failed_calls=0")
    );
}

/// INFO alone and INFO default leave Commandstats out, as Redis 7 does; `all`, `everything` and
/// its name bring it, in Redis's place (after CPU, before Errorstats).
#[test]
fn commandstats_section_is_not_a_default() {
    let server = TestServer::start();
    let mut con = server.client();
    let headings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("# "))
            .map(str::to_string)
            .collect()
    };
    for words in ["", "default"] {
        let text = info(&mut con, words);
        assert!(!text.contains("# Commandstats"), "INFO {words}: {text}");
        assert!(!text.contains("cmdstat_"), "INFO {words}");
    }
    for words in ["all", "everything", "ALL"] {
        let text = info(&mut con, words);
        let headings = headings(&text);
        let at = |h: &str| headings.iter().position(|x| x == h).expect(h);
        assert_eq!(at("# Commandstats"), at("# CPU") + 1, "INFO {words}");
        assert_eq!(at("# Errorstats"), at("# Commandstats") + 1, "INFO {words}");
        assert!(info_field(&text, "cmdstat_info").is_some(), "INFO {words}");
    }
    let both: String = redis::cmd("INFO")
        .arg("default")
        .arg("commandstats")
        .query(&mut con)
        .unwrap();
    assert!(headings(&both).len() > 2);
    assert!(both.contains("# Commandstats"));
    let only = info(&mut con, "commandstats");
    assert_eq!(headings(&only), ["# Commandstats"]);
}

/// Each thread counts in its own table and INFO sums them: 4 connections x 250 pipelined
/// PINGs are 1,000 calls, with two per-core threads and with the work-stealing runtime.
#[test]
fn commandstats_sum_every_thread() {
    for runtime in ["per-core", "multi"] {
        let server = TestServer::start_with(&["--threads", "2", "--runtime", runtime]);
        let mut streams: Vec<TcpStream> = (0..4).map(|_| server.raw()).collect();
        let pings = b"PING\r\n".repeat(250);
        for stream in &mut streams {
            stream.write_all(&pings).unwrap();
        }
        for stream in &mut streams {
            let replies = read_until_suffix(stream, &b"+PONG\r\n".repeat(250));
            assert_eq!(replies.len(), 250 * 7, "{runtime}");
        }
        let mut con = server.client();
        let text = info(&mut con, "commandstats");
        assert_eq!(
            counts(&text, "ping"),
            Some((1000, 0, 0)),
            "{runtime}: {text}"
        );
    }
}
