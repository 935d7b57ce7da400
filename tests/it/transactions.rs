//! Transactions against the real binary: MULTI/EXEC/DISCARD/WATCH/UNWATCH with Redis's reply
//! bytes and error texts, in RESP2 and RESP3, with presence commands and presence keys; WATCH
//! broken by another client's SET, DEL, EXPIRE, heartbeat, by expiry and by FLUSHALL; and EXEC
//! atomic with respect to another client.

use std::time::{Duration, Instant};

use crate::support::TestServer;
use crate::util::{read_until, roundtrip, status};

/// A transaction queues (`+QUEUED`), then EXEC answers every reply in order; a runtime error
/// inside it is one element and does not stop the commands after it.
#[test]
fn multi_exec_queues_then_runs_in_order() {
    let server = TestServer::start();
    let mut raw = server.raw();
    roundtrip(&mut raw, b"MULTI\r\n", b"+OK\r\n");
    roundtrip(&mut raw, b"HEARTBEAT 1\r\n", b"+QUEUED\r\n");
    roundtrip(&mut raw, b"HEARTBEAT 1 TTL 0\r\n", b"+QUEUED\r\n");
    roundtrip(
        &mut raw,
        b"SET user:2:presence away EX 30\r\n",
        b"+QUEUED\r\n",
    );
    roundtrip(&mut raw, b"GET user:2:presence\r\n", b"+QUEUED\r\n");
    roundtrip(&mut raw, b"OFFLINE 1\r\n", b"+QUEUED\r\n");
    let mut con = server.client();
    assert_eq!(
        status(&mut con, "1").0,
        "offline",
        "nothing ran before EXEC"
    );
    roundtrip(
        &mut raw,
        b"EXEC\r\n",
        b"*5\r\n:1\r\n-ERR invalid TTL '0': must be an integer from 1 to 86400 seconds\r\n+OK\r\n$4\r\naway\r\n:1\r\n",
    );
    assert_eq!(status(&mut con, "1").0, "offline");
    assert_eq!(status(&mut con, "2").0, "away");
    // The connection is out of the transaction again.
    roundtrip(&mut raw, b"HEARTBEAT 3\r\n", b":1\r\n");
}

/// Refusals while queueing abort the transaction (EXECABORT, nothing runs); misplaced
/// transaction commands answer Redis's errors and leave an open transaction open.
#[test]
fn errors_and_aborts_match_redis() {
    let server = TestServer::start();
    let mut raw = server.raw();
    roundtrip(&mut raw, b"EXEC\r\n", b"-ERR EXEC without MULTI\r\n");
    roundtrip(&mut raw, b"DISCARD\r\n", b"-ERR DISCARD without MULTI\r\n");
    roundtrip(&mut raw, b"MULTI\r\n", b"+OK\r\n");
    roundtrip(
        &mut raw,
        b"MULTI\r\n",
        b"-ERR MULTI calls can not be nested\r\n",
    );
    roundtrip(
        &mut raw,
        b"WATCH user:1:presence\r\n",
        b"-ERR WATCH inside MULTI is not allowed\r\n",
    );
    roundtrip(&mut raw, b"HEARTBEAT 5\r\n", b"+QUEUED\r\n");
    roundtrip(&mut raw, b"EXEC\r\n", b"*1\r\n:1\r\n");

    roundtrip(&mut raw, b"MULTI\r\n", b"+OK\r\n");
    roundtrip(&mut raw, b"HEARTBEAT 6\r\n", b"+QUEUED\r\n");
    roundtrip(
        &mut raw,
        b"NOSUCH a\r\n",
        b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n",
    );
    roundtrip(
        &mut raw,
        b"EXEC\r\n",
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    let mut con = server.client();
    assert_eq!(
        status(&mut con, "6").0,
        "offline",
        "an aborted transaction ran nothing"
    );

    roundtrip(&mut raw, b"MULTI\r\n", b"+OK\r\n");
    roundtrip(
        &mut raw,
        b"GET\r\n",
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    roundtrip(
        &mut raw,
        b"SAVE\r\n",
        b"-ERR Command not allowed inside a transaction\r\n",
    );
    roundtrip(
        &mut raw,
        b"EXEC\r\n",
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );

    roundtrip(&mut raw, b"MULTI\r\n", b"+OK\r\n");
    roundtrip(&mut raw, b"HEARTBEAT 7\r\n", b"+QUEUED\r\n");
    roundtrip(&mut raw, b"DISCARD\r\n", b"+OK\r\n");
    assert_eq!(
        status(&mut con, "7").0,
        "offline",
        "a discarded transaction ran nothing"
    );
    roundtrip(&mut raw, b"MULTI\r\n", b"+OK\r\n");
    roundtrip(&mut raw, b"HEARTBEAT 7\r\n", b"+QUEUED\r\n");
    roundtrip(&mut raw, b"RESET\r\n", b"+RESET\r\n");
    roundtrip(&mut raw, b"EXEC\r\n", b"-ERR EXEC without MULTI\r\n");
}

/// Something another client does to a watched key.
type Change = Box<dyn Fn(&mut redis::Connection)>;

/// Each kind of change another client (or time) makes to a watched key makes EXEC answer a
/// null array and run nothing; an untouched watch lets EXEC run; UNWATCH and DISCARD forget.
#[test]
fn watch_sees_every_kind_of_change() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let mut other = server.client();
    const KEY: &str = "user:9:presence";
    let changes: Vec<(&str, Change)> = vec![
        (
            "SET",
            Box::new(|c| {
                let _: () = redis::cmd("SET")
                    .arg(KEY)
                    .arg("online")
                    .arg("EX")
                    .arg(30)
                    .query(c)
                    .unwrap();
            }),
        ),
        (
            "heartbeat",
            Box::new(|c| {
                let _: i64 = redis::cmd("HEARTBEAT").arg("9").query(c).unwrap();
            }),
        ),
        (
            "EXPIRE",
            Box::new(|c| {
                let _: i64 = redis::cmd("EXPIRE").arg(KEY).arg(100).query(c).unwrap();
            }),
        ),
        (
            "DEL",
            Box::new(|c| {
                let _: i64 = redis::cmd("DEL").arg(KEY).query(c).unwrap();
            }),
        ),
        (
            "FLUSHALL",
            Box::new(|c| {
                let _: () = redis::cmd("FLUSHALL").query(c).unwrap();
            }),
        ),
    ];
    for (name, change) in &changes {
        let _: i64 = redis::cmd("HEARTBEAT").arg("9").query(&mut other).unwrap();
        roundtrip(
            &mut raw,
            b"WATCH user:9:presence user:10:presence\r\n",
            b"+OK\r\n",
        );
        change(&mut other);
        roundtrip(&mut raw, b"MULTI\r\n", b"+OK\r\n");
        roundtrip(&mut raw, b"HEARTBEAT 11\r\n", b"+QUEUED\r\n");
        let mut sent = Vec::new();
        std::io::Write::write_all(&mut raw, b"EXEC\r\n").unwrap();
        sent.extend(read_until(&mut raw, |out| out.len() >= 5));
        assert_eq!(sent, b"*-1\r\n", "after {name}");
        assert_eq!(
            status(&mut other, "11").0,
            "offline",
            "nothing ran after {name}"
        );
    }
    // Untouched: EXEC runs. Watching a key outside the pattern is allowed and never changes.
    roundtrip(&mut raw, b"WATCH user:9:presence elsewhere\r\n", b"+OK\r\n");
    roundtrip(&mut raw, b"MULTI\r\n", b"+OK\r\n");
    roundtrip(&mut raw, b"HEARTBEAT 11\r\n", b"+QUEUED\r\n");
    roundtrip(&mut raw, b"EXEC\r\n", b"*1\r\n:1\r\n");
    // UNWATCH (and EXEC itself) forget the keys: a later change does not matter.
    roundtrip(&mut raw, b"WATCH user:9:presence\r\n", b"+OK\r\n");
    roundtrip(&mut raw, b"UNWATCH\r\n", b"+OK\r\n");
    let _: i64 = redis::cmd("HEARTBEAT").arg("9").query(&mut other).unwrap();
    roundtrip(&mut raw, b"MULTI\r\n", b"+OK\r\n");
    roundtrip(&mut raw, b"EXEC\r\n", b"*0\r\n");
}

/// A watched key that expires before EXEC breaks the watch, even before the timer declares
/// the user offline; in RESP3 the failed EXEC is the null `_`.
#[test]
fn expiry_breaks_a_watch_resp3() {
    let server = TestServer::start();
    let mut raw = server.raw();
    std::io::Write::write_all(&mut raw, b"HELLO 3\r\n").unwrap();
    let hello = read_until(&mut raw, |out| out.ends_with(b"$7\r\nmodules\r\n*0\r\n"));
    assert!(
        hello.starts_with(b"%7\r\n"),
        "{:?}",
        String::from_utf8_lossy(&hello)
    );
    let mut other = server.client();
    let _: () = redis::cmd("SET")
        .arg("user:20:presence")
        .arg("online")
        .arg("PX")
        .arg(150)
        .query(&mut other)
        .unwrap();
    roundtrip(&mut raw, b"WATCH user:20:presence\r\n", b"+OK\r\n");
    std::thread::sleep(Duration::from_millis(300));
    roundtrip(&mut raw, b"MULTI\r\n", b"+OK\r\n");
    roundtrip(&mut raw, b"GET user:20:presence\r\n", b"+QUEUED\r\n");
    roundtrip(&mut raw, b"EXEC\r\n", b"_\r\n");
}

/// EXEC runs with every other client held off: a transaction that brings a user online and
/// logs them out again is never seen half done by other clients reading all the while. Four
/// readers, so that with two server threads some reader almost surely runs on the other
/// thread than the transaction (on the same thread, atomicity would hold trivially).
#[test]
fn exec_is_atomic_for_other_clients() {
    let server = TestServer::start_with(&["--threads", "2"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let url = server.url();
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
                let (mut reads, mut seen_online) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let value: Option<String> = redis::cmd("GET")
                        .arg("user:30:presence")
                        .query(&mut con)
                        .unwrap();
                    reads += 1;
                    seen_online += u64::from(value.is_some());
                }
                (reads, seen_online)
            })
        })
        .collect();
    let mut con = server.client();
    let started = Instant::now();
    let mut transactions = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let (came, left): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("HEARTBEAT")
            .arg("30")
            .cmd("OFFLINE")
            .arg("30")
            .query(&mut con)
            .unwrap();
        assert_eq!((came, left), (1, 1));
        transactions += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        let (reads, seen_online) = reader.join().unwrap();
        assert!(reads > 100, "{reads} reads");
        assert_eq!(
            seen_online, 0,
            "a half-done transaction was seen in {reads} reads"
        );
    }
    assert!(transactions > 100, "{transactions} transactions");
}
