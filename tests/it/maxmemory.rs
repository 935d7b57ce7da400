//! `maxmemory`: past the limit, commands that would add a user or a value answer Redis's exact
//! OOM error while known users' heartbeats, reads and deletes go on (and `CONFIG SET maxmemory
//! 0` lifts it); transactions follow Redis's queue-time and EXEC-time rules; the flag and
//! `CONFIG SET` take Redis's units; `DEL` and `FLUSHDB` free what a user held; `SCAN` during
//! churn returns every key present throughout; and a snapshot of a table with freed entries
//! loads whole. Redis texts were checked against redis-server 7.0.15.

use std::collections::HashSet;
use std::process::{Command, Stdio};

use redis::Value;

use crate::support::{TestServer, error_text, unique_temp_dir};
use crate::util::{heartbeat, info, info_field, status};

const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";
const EXECABORT_OOM: &str = "EXECABORT Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'.";

fn command(args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd
}

fn run(con: &mut redis::Connection, args: &[&str]) -> Value {
    command(args)
        .query(con)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn int(con: &mut redis::Connection, args: &[&str]) -> i64 {
    command(args)
        .query(con)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn refused(con: &mut redis::Connection, args: &[&str]) -> String {
    error_text::<Value>(con, &mut command(args))
}

fn ok(con: &mut redis::Connection, args: &[&str]) {
    assert_eq!(run(con, args), Value::Okay, "{args:?}");
}

fn memory_field(con: &mut redis::Connection, field: &str) -> u64 {
    info_field(&info(con, "memory"), field)
        .unwrap_or_else(|| panic!("INFO memory has {field}"))
        .parse()
        .expect("a number")
}

fn presence_field(con: &mut redis::Connection, field: &str) -> u64 {
    info_field(&info(con, "presence"), field)
        .unwrap_or_else(|| panic!("INFO presence has {field}"))
        .parse()
        .expect("a number")
}

/// With `CONFIG SET maxmemory 1` (always exceeded), every command that would add a user or a
/// value gets the exact OOM text and changes nothing; heartbeats of known users (online or
/// offline, with a device or not), SET of a status word for a known user, lookups, OFFLINE,
/// DISCONNECT, EXPIRE and DEL work; MHEARTBEAT keeps its known users alive and answers OOM for
/// the unknown ones; INFO and CONFIG GET show the limit; `CONFIG SET maxmemory 0` lifts it.
#[test]
fn past_maxmemory_only_growth_is_refused() {
    let server = TestServer::start();
    let mut con = server.client();
    assert_eq!(heartbeat(&mut con, "1", None), 1);
    assert_eq!(heartbeat(&mut con, "u-1", None), 1);
    ok(&mut con, &["SET", "user:2:presence", "online", "EX", "60"]);
    assert_eq!(heartbeat(&mut con, "3", None), 1);
    assert_eq!(int(&mut con, &["OFFLINE", "3"]), 1);
    ok(&mut con, &["CONFIG", "SET", "maxmemory", "1"]);

    for args in [
        &["HEARTBEAT", "10"][..],
        &["HEARTBEAT", "u-10", "DEVICE", "phone"],
        &["SETSTATUS", "11", "dnd"],
        &["SET", "user:12:presence", "online"],
        &["SET", "user:u-12:presence", "away", "EX", "30"],
        &["SET", "user:2:presence", "{\"custom\":1}"],
        &["SETEX", "user:13:presence", "30", "online"],
        &["PSETEX", "user:13:presence", "30000", "online"],
        &["SETNX", "user:13:presence", "online"],
        &[
            "MSET",
            "user:2:presence",
            "away",
            "user:14:presence",
            "online",
        ],
        &["LPUSH", "user:2:presence", "x"],
    ] {
        assert_eq!(refused(&mut con, args), OOM, "{args:?}");
    }
    assert_eq!(
        run(&mut con, &["GET", "user:2:presence"]),
        Value::BulkString(b"online".to_vec()),
        "MSET set nothing"
    );
    for user in ["10", "u-10", "11", "12", "u-12", "13", "14"] {
        assert_eq!(
            status(&mut con, user),
            ("offline".to_string(), None),
            "{user}"
        );
    }

    // Known users: heartbeats (coming back from offline too), devices, status words, overrides.
    assert_eq!(heartbeat(&mut con, "1", None), 0);
    assert_eq!(heartbeat(&mut con, "u-1", None), 0);
    assert_eq!(heartbeat(&mut con, "3", None), 1, "offline but tracked");
    assert_eq!(int(&mut con, &["HEARTBEAT", "1", "DEVICE", "phone"]), 0);
    ok(&mut con, &["SET", "user:2:presence", "away", "EX", "60"]);
    ok(&mut con, &["SETSTATUS", "1", "busy"]);
    assert_eq!(status(&mut con, "1").0, "busy");
    assert_eq!(status(&mut con, "2").0, "away");
    let Value::Array(views) = run(&mut con, &["MSTATUS", "1", "u-1", "10"]) else {
        panic!("MSTATUS is an array");
    };
    assert_eq!(views.len(), 3);
    assert_eq!(
        run(&mut con, &["MGET", "user:2:presence", "user:10:presence"]),
        Value::Array(vec![Value::BulkString(b"away".to_vec()), Value::Nil])
    );
    assert_eq!(int(&mut con, &["EXPIRE", "user:2:presence", "100"]), 1);
    assert_eq!(int(&mut con, &["DISCONNECT", "u-1"]), 1);

    // MHEARTBEAT: the known users are heartbeated, the unknown one left out, and OOM said.
    let (_, seen_before) = status(&mut con, "3");
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(refused(&mut con, &["MHEARTBEAT", "1", "3", "20"]), OOM);
    let (state, seen_after) = status(&mut con, "3");
    assert_eq!(state, "online");
    assert!(seen_after > seen_before, "user 3 was heartbeated");
    assert_eq!(status(&mut con, "20"), ("offline".to_string(), None));
    assert_eq!(
        int(&mut con, &["MHEARTBEAT", "1", "3"]),
        0,
        "all known: no error"
    );

    assert_eq!(int(&mut con, &["OFFLINE", "1"]), 1);
    assert_eq!(int(&mut con, &["DEL", "user:2:presence"]), 1);
    let memory = info(&mut con, "memory");
    assert_eq!(info_field(&memory, "maxmemory").as_deref(), Some("1"));
    assert_eq!(
        info_field(&memory, "maxmemory_human").as_deref(),
        Some("1B")
    );
    assert_eq!(
        info_field(&memory, "maxmemory_policy").as_deref(),
        Some("noeviction")
    );
    let used: u64 = info_field(&memory, "used_memory")
        .expect("used_memory")
        .parse()
        .expect("bytes");
    assert!(used > 1 << 20, "used_memory is the resident size: {used}");
    assert!(
        info(&mut con, "errorstats").contains("errorstat_OOM:count=12"),
        "{}",
        info(&mut con, "errorstats")
    );
    assert_eq!(
        run(&mut con, &["CONFIG", "GET", "maxmemory"]),
        Value::Array(vec![
            Value::BulkString(b"maxmemory".to_vec()),
            Value::BulkString(b"1".to_vec())
        ])
    );

    ok(&mut con, &["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(heartbeat(&mut con, "10", None), 1);
    ok(&mut con, &["SET", "user:12:presence", "{\"custom\":1}"]);
    assert_eq!(int(&mut con, &["MHEARTBEAT", "20", "21"]), 2);
}

/// `--maxmemory` and `CONFIG SET maxmemory` take Redis's units; bad values are refused with
/// Redis's texts (the server refuses to start on a bad flag); `maxmemory-policy` takes only
/// `noeviction`; a limit above what the server uses refuses nothing.
#[test]
fn maxmemory_units_and_policy() {
    let server = TestServer::start_with(&["--maxmemory", "1gb"]);
    let mut con = server.client();
    assert_eq!(memory_field(&mut con, "maxmemory"), 1 << 30);
    assert_eq!(
        info_field(&info(&mut con, "memory"), "maxmemory_human").as_deref(),
        Some("1.00G")
    );
    assert_eq!(heartbeat(&mut con, "1", None), 1, "well under the limit");
    for (value, bytes) in [
        ("100mb", 100 << 20),
        ("10k", 10_000),
        ("2GB", 2 << 30),
        ("100b", 100),
        ("0", 0),
    ] {
        ok(&mut con, &["CONFIG", "SET", "maxmemory", value]);
        assert_eq!(memory_field(&mut con, "maxmemory"), bytes, "{value}");
    }
    let invalid = "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value";
    for value in ["-1", "1.5mb", "abc", "10 mb", ""] {
        assert_eq!(
            refused(&mut con, &["CONFIG", "SET", "maxmemory", value]),
            invalid,
            "{value:?}"
        );
    }
    ok(
        &mut con,
        &["CONFIG", "SET", "MaxMemory-Policy", "NOEVICTION"],
    );
    let policy = "ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: noeviction";
    for value in ["allkeys-lru", "volatile-ttl", "bogus"] {
        assert_eq!(
            refused(&mut con, &["CONFIG", "SET", "maxmemory-policy", value]),
            policy
        );
    }
    // All pairs are checked first: a bad policy keeps the limit from changing too.
    assert_eq!(
        refused(
            &mut con,
            &[
                "CONFIG",
                "SET",
                "maxmemory",
                "1",
                "maxmemory-policy",
                "allkeys-lru"
            ]
        ),
        policy
    );
    assert_eq!(memory_field(&mut con, "maxmemory"), 0);
    assert_eq!(
        refused(
            &mut con,
            &["CONFIG", "SET", "maxmemory", "1", "maxmemory", "2"]
        ),
        "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - duplicate parameter"
    );
    assert_eq!(
        run(&mut con, &["CONFIG", "GET", "maxmemory-policy"]),
        Value::Array(vec![
            Value::BulkString(b"maxmemory-policy".to_vec()),
            Value::BulkString(b"noeviction".to_vec())
        ])
    );

    let started = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args(["--port", "0", "--maxmemory", "12x"])
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert_eq!(started.status.code(), Some(2), "a bad flag is refused");
    assert!(
        String::from_utf8_lossy(&started.stderr).contains("'12x' is not a memory value"),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
}

/// As in Redis: past maxmemory a transaction queues nothing (even a read answers OOM, and
/// EXEC then answers EXECABORT); an EXEC whose queue holds a `denyoom` command (SET,
/// HEARTBEAT) is refused whole when the limit was passed after queueing; one of reads and
/// deletes runs.
#[test]
fn transactions_past_maxmemory() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut admin = server.client();
    ok(&mut con, &["SET", "user:1:presence", "online"]);

    ok(&mut admin, &["CONFIG", "SET", "maxmemory", "1"]);
    ok(&mut con, &["MULTI"]);
    assert_eq!(refused(&mut con, &["GET", "user:1:presence"]), OOM);
    assert_eq!(refused(&mut con, &["HEARTBEAT", "1"]), OOM);
    assert_eq!(
        refused(&mut con, &["EXEC"]),
        "EXECABORT Transaction discarded because of previous errors."
    );
    ok(&mut con, &["MULTI"]);
    ok(&mut con, &["DISCARD"]);

    for queued in [
        &["SET", "user:2:presence", "online"][..],
        &["HEARTBEAT", "1"],
    ] {
        ok(&mut admin, &["CONFIG", "SET", "maxmemory", "0"]);
        ok(&mut con, &["MULTI"]);
        assert_eq!(run(&mut con, queued), Value::SimpleString("QUEUED".into()));
        ok(&mut admin, &["CONFIG", "SET", "maxmemory", "1"]);
        assert_eq!(refused(&mut con, &["EXEC"]), EXECABORT_OOM, "{queued:?}");
    }
    assert_eq!(
        run(&mut con, &["GET", "user:2:presence"]),
        Value::Nil,
        "nothing ran"
    );

    ok(&mut admin, &["CONFIG", "SET", "maxmemory", "0"]);
    ok(&mut con, &["MULTI"]);
    for queued in [&["GET", "user:1:presence"][..], &["DEL", "user:1:presence"]] {
        assert_eq!(run(&mut con, queued), Value::SimpleString("QUEUED".into()));
    }
    ok(&mut admin, &["CONFIG", "SET", "maxmemory", "1"]);
    assert_eq!(
        run(&mut con, &["EXEC"]),
        Value::Array(vec![Value::BulkString(b"online".to_vec()), Value::Int(1)])
    );
    ok(&mut admin, &["CONFIG", "SET", "maxmemory", "0"]);
}

/// DEL forgets users and frees what they held: side-table users, tracked users and the side
/// table's bytes go down at once (the user reads as never seen), and FLUSHDB returns the slot
/// pages (the resident size falls by about the 8 MiB of pages 2,048 users touched).
#[test]
fn del_and_flushdb_free_memory() {
    let server = TestServer::start_with(&["--shards", "1"]);
    let mut con = server.client();
    let side: Vec<String> = (0..2_000).map(|i| format!("user-{i:05}")).collect();
    let dense: Vec<String> = (0..2_048).map(|i| (i * 512).to_string()).collect();
    for batch in side.chunks(500).chain(dense.chunks(512)) {
        let mut cmd = redis::cmd("MHEARTBEAT");
        cmd.arg(batch);
        let came: i64 = cmd.query(&mut con).expect("MHEARTBEAT");
        assert_eq!(came, batch.len() as i64);
    }
    assert_eq!(presence_field(&mut con, "side_table_users"), 2_000);
    assert_eq!(presence_field(&mut con, "tracked_users"), 4_048);
    assert_eq!(
        memory_field(&mut con, "dense_slots_touched_bytes"),
        2_048 * 4_096,
        "one page per user: IDs 512 apart"
    );
    let side_bytes = memory_field(&mut con, "side_table_bytes");
    assert!(side_bytes > 2_000 * 10, "{side_bytes}");

    let mut del = redis::cmd("DEL");
    for id in &side[..1_500] {
        del.arg(format!("user:{id}:presence"));
    }
    let deleted: i64 = del.query(&mut con).expect("DEL");
    assert_eq!(deleted, 1_500);
    assert_eq!(presence_field(&mut con, "side_table_users"), 500);
    assert_eq!(presence_field(&mut con, "tracked_users"), 2_548);
    let fewer_bytes = memory_field(&mut con, "side_table_bytes");
    assert!(
        fewer_bytes * 4 < side_bytes * 3,
        "a quarter of the table's bytes at least went: {side_bytes} -> {fewer_bytes}"
    );
    assert_eq!(status(&mut con, &side[0]), ("offline".to_string(), None));
    assert_eq!(status(&mut con, &side[1_999]).0, "online");
    // A DEL of an offline user forgets them too (and counts no key).
    assert_eq!(int(&mut con, &["OFFLINE", &side[1_999]]), 1);
    assert_eq!(
        int(
            &mut con,
            &["DEL", &format!("user:{}:presence", side[1_999])]
        ),
        0
    );
    assert_eq!(
        status(&mut con, &side[1_999]),
        ("offline".to_string(), None)
    );
    assert_eq!(presence_field(&mut con, "side_table_users"), 499);

    let resident = memory_field(&mut con, "used_memory_rss");
    ok(&mut con, &["FLUSHDB"]);
    assert_eq!(presence_field(&mut con, "side_table_users"), 0);
    assert_eq!(presence_field(&mut con, "tracked_users"), 0);
    assert_eq!(memory_field(&mut con, "dense_slots_touched_bytes"), 0);
    assert!(memory_field(&mut con, "side_table_bytes") < fewer_bytes);
    let after = memory_field(&mut con, "used_memory_rss");
    assert!(
        after + (4 << 20) < resident,
        "FLUSHDB gave the slot pages back: {resident} -> {after}"
    );
    assert!(memory_field(&mut con, "used_memory") <= after + (1 << 20));
}

/// A SCAN walk while keys churn — deleted, and new ones set into the positions they freed —
/// returns every key present for the whole walk.
#[test]
fn scan_during_churn_returns_keys_present_throughout() {
    let server = TestServer::start();
    let mut con = server.client();
    let key = |name: &str| format!("user:{name}:presence");
    let stable: Vec<String> = (0..1_000).map(|i| key(&format!("s-{i}"))).collect();
    let mut churn: Vec<String> = (0..1_000).map(|i| key(&format!("c-{i}"))).collect();
    let mut pipe = redis::pipe();
    for (s, c) in stable.iter().zip(&churn) {
        pipe.cmd("SET").arg(s).arg("online").ignore();
        pipe.cmd("SET").arg(c).arg("online").ignore();
    }
    let () = pipe.query(&mut con).expect("SETs");
    let mut seen = HashSet::new();
    let (mut cursor, mut step, mut fresh) = (0u64, 0usize, 0usize);
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(20)
            .query(&mut con)
            .expect("SCAN");
        seen.extend(keys);
        let mut pipe = redis::pipe();
        for i in 0..10 {
            let gone = churn.swap_remove((step * 31 + i * 97) % churn.len());
            pipe.cmd("DEL").arg(&gone).ignore();
            let new = key(&format!("n-{fresh}"));
            fresh += 1;
            pipe.cmd("SET").arg(&new).arg("online").ignore();
            churn.push(new);
        }
        let () = pipe.query(&mut con).expect("churn");
        step += 1;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let missing: Vec<&String> = stable.iter().filter(|s| !seen.contains(*s)).collect();
    assert!(
        missing.is_empty(),
        "missed {} keys: {missing:?}",
        missing.len()
    );
    assert!(step > 10, "the walk took several steps: {step}");
    assert_eq!(presence_field(&mut con, "side_table_users"), 2_000);
}

/// A snapshot of a side table with freed positions loads whole: the users left are back
/// (online, with their values), the deleted ones are not, and the loaded table has no holes.
#[test]
fn snapshot_after_deletes_round_trips() {
    let dir = unique_temp_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let keys: Vec<String> = (0..10).map(|i| format!("user:u-{i}:presence")).collect();
    {
        let server = TestServer::start_in(&dir_arg, &["--shards", "1"]);
        let mut con = server.client();
        for (i, k) in keys.iter().enumerate() {
            ok(
                &mut con,
                &["SET", k, &format!("{{\"n\":{i}}}"), "EX", "600"],
            );
        }
        for k in keys.iter().step_by(2) {
            assert_eq!(int(&mut con, &["DEL", k]), 1);
        }
        ok(&mut con, &["SAVE"]);
    }
    let server = TestServer::start_in(&dir_arg, &["--shards", "1"]);
    let mut con = server.client();
    assert_eq!(presence_field(&mut con, "side_table_users"), 5);
    for (i, k) in keys.iter().enumerate() {
        let value: Option<String> = redis::cmd("GET").arg(k).query(&mut con).expect("GET");
        let want = (i % 2 == 1).then(|| format!("{{\"n\":{i}}}"));
        assert_eq!(value, want, "{k}");
    }
    let (cursor, found): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("COUNT")
        .arg(1000)
        .query(&mut con)
        .expect("SCAN");
    assert_eq!((cursor, found.len()), (0, 5));
    let _ = std::fs::remove_dir_all(&dir);
}
