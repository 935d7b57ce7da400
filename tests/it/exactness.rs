//! Integer options and values as exact as Redis's: EXPIRE's overflow checks and SET's expiry
//! bounds with Redis's texts (checked against redis-server 7.0.15 by hand, the sequence below
//! is that session), values far beyond 64 KiB stored, counted and snapshotted, and
//! `MEMORY USAGE`.

use redis::Value;

use crate::support::{TestServer, error_text, unique_temp_dir};
use crate::util::{info, info_field};

fn int(con: &mut redis::Connection, args: &[&str]) -> i64 {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(con).unwrap()
}

fn refused(con: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    error_text::<Value>(con, &mut cmd)
}

/// Negative and past expiry times delete the key, as in Redis, but a unit conversion or an
/// addition of the current time that overflows 64-bit milliseconds is an invalid expire time,
/// and the key stays.
#[test]
fn expire_times_are_overflow_checked() {
    let server = TestServer::start();
    let mut con = server.client();
    let key = "user:1:presence";
    let set = |con: &mut redis::Connection| {
        let _: () = redis::cmd("SET").arg(key).arg("online").query(con).unwrap();
    };
    set(&mut con);
    for (args, command) in [
        (vec!["EXPIRE", key, "-9223372036854776"], "expire"),
        (vec!["EXPIRE", key, "9223372036854775"], "expire"),
        (vec!["PEXPIRE", key, "9223372036854775807"], "pexpire"),
        (vec!["EXPIREAT", key, "9223372036854776"], "expireat"),
        (vec!["SET", key, "online", "EX", "9223372036854775"], "set"),
        (vec!["SET", key, "online", "EX", "-1"], "set"),
        (
            vec!["SET", key, "online", "EXAT", "9223372036854776"],
            "set",
        ),
        (vec!["GETEX", key, "EX", "9223372036854776"], "getex"),
    ] {
        assert_eq!(
            refused(&mut con, &args),
            format!("ERR invalid expire time in '{command}' command"),
            "{args:?}"
        );
        assert_eq!(int(&mut con, &["EXISTS", key]), 1, "{args:?} kept the key");
    }
    assert_eq!(int(&mut con, &["EXPIRE", key, "-9223372036854775"]), 1);
    assert_eq!(int(&mut con, &["EXISTS", key]), 0, "a past time deletes");
    set(&mut con);
    assert_eq!(int(&mut con, &["PEXPIRE", key, "-9223372036854775808"]), 1);
    assert_eq!(int(&mut con, &["EXISTS", key]), 0);
    set(&mut con);
    assert_eq!(int(&mut con, &["EXPIREAT", key, "9223372036854775"]), 1);
    assert!(int(&mut con, &["TTL", key]) > 9_000_000_000_000_000);
    assert_eq!(int(&mut con, &["PEXPIREAT", key, "9223372036854775807"]), 1);
    assert_eq!(
        int(&mut con, &["PEXPIREAT", key, "-9223372036854775808"]),
        1
    );
    assert_eq!(int(&mut con, &["EXISTS", key]), 0);
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg("online")
        .arg("PXAT")
        .arg("9223372036854775807")
        .query(&mut con)
        .unwrap();
    assert!(int(&mut con, &["PTTL", key]) > 9_000_000_000_000_000_000);
}

/// A 4 MiB value is stored, counted in INFO memory and MEMORY USAGE, survives a snapshot and
/// a restart byte for byte, and its bytes are released when the key goes.
#[test]
fn large_values_are_kept_counted_and_saved() {
    let dir = unique_temp_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let value: Vec<u8> = (0..4 * 1024 * 1024 + 3).map(|i| (i % 241) as u8).collect();
    let values_bytes = |con: &mut redis::Connection| -> u64 {
        info_field(&info(con, "memory"), "presence_values_bytes")
            .expect("INFO memory has presence_values_bytes")
            .parse()
            .expect("bytes")
    };
    {
        let server = TestServer::start_in(&dir_arg, &[]);
        let mut con = server.client();
        assert_eq!(values_bytes(&mut con), 0);
        let _: () = redis::cmd("SET")
            .arg("user:7:presence")
            .arg(&value[..])
            .arg("EX")
            .arg(3600)
            .query(&mut con)
            .unwrap();
        assert_eq!(values_bytes(&mut con), value.len() as u64);
        let usage: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg("user:7:presence")
            .query(&mut con)
            .unwrap();
        assert!(usage.is_some_and(|b| b > value.len() as u64), "{usage:?}");
        let missing: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg("user:8:presence")
            .query(&mut con)
            .unwrap();
        assert_eq!(missing, None);
        let _: () = redis::cmd("SAVE").query(&mut con).unwrap();
    }
    let server = TestServer::start_in(&dir_arg, &[]);
    let mut con = server.client();
    let back: Vec<u8> = redis::cmd("GET")
        .arg("user:7:presence")
        .query(&mut con)
        .unwrap();
    assert!(
        back == value,
        "the value survived the restart byte for byte"
    );
    assert_eq!(values_bytes(&mut con), value.len() as u64);
    assert_eq!(int(&mut con, &["DEL", "user:7:presence"]), 1);
    assert_eq!(values_bytes(&mut con), 0, "the bytes go with the key");
    let _ = std::fs::remove_dir_all(&dir);
}
