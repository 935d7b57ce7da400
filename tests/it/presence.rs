//! The presence commands end to end: HEARTBEAT, STATUS, OFFLINE, MHEARTBEAT and MSTATUS over
//! RESP2 and RESP3, TTL expiry, and user IDs that are not small numbers.

use std::time::Duration;

use redis::Value;

use crate::support::{TestServer, error_text};
use crate::util::{heartbeat, info, info_field, now_ms, parse_status, poll, status};

/// The heartbeat lifecycle a RESP2 or RESP3 client sees, checked on `con`.
fn check_heartbeat_lifecycle(con: &mut redis::Connection, user: &str) {
    assert_eq!(status(con, user), ("offline".to_string(), None));
    let before = now_ms();
    assert_eq!(
        heartbeat(con, user, None),
        1,
        "first heartbeat brings {user} online"
    );
    let after = now_ms();
    let (state, first_seen) = status(con, user);
    assert_eq!(state, "online");
    let first_seen = first_seen.expect("an online user has a last-seen time");
    assert!(
        (before..=after).contains(&first_seen),
        "last-seen {first_seen} outside [{before}, {after}]"
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(heartbeat(con, user, None), 0, "{user} was already online");
    let (state, second_seen) = status(con, user);
    assert_eq!(state, "online");
    assert!(
        second_seen.expect("last-seen") > first_seen,
        "a later heartbeat moves last-seen forward"
    );
}

/// Over RESP2, a first HEARTBEAT replies :1 and makes the user online, a second replies :0,
/// and STATUS is the array [online, last_seen_ms] with the heartbeat's wall-clock time.
#[test]
fn heartbeat_makes_a_user_online_resp2() {
    let server = TestServer::start();
    let mut con = server.client();
    check_heartbeat_lifecycle(&mut con, "1001");
    let raw: (String, i64) = redis::cmd("STATUS").arg("1001").query(&mut con).unwrap();
    assert_eq!(raw.0, "online");
}

/// Over RESP3 the same HEARTBEAT sequence gives the same replies, and STATUS is the map
/// {state, last_seen_ms}.
#[test]
fn heartbeat_makes_a_user_online_resp3() {
    let server = TestServer::start();
    let mut con = server.client_resp3();
    check_heartbeat_lifecycle(&mut con, "1002");
    let value: Value = redis::cmd("STATUS").arg("1002").query(&mut con).unwrap();
    assert!(
        matches!(value, Value::Map(ref pairs) if pairs.len() == 2),
        "{value:?}"
    );
}

/// A user never seen is offline with a null last-seen: exactly [offline, nil] in RESP2 and
/// {state: offline, last_seen_ms: null} in RESP3, for numeric and non-numeric IDs alike.
#[test]
fn never_seen_user_is_offline_with_null_last_seen() {
    let server = TestServer::start();
    let mut con2 = server.client();
    let mut con3 = server.client_resp3();
    for user in ["5", "never-seen-user", "99999999999"] {
        let v2: Value = redis::cmd("STATUS").arg(user).query(&mut con2).unwrap();
        assert_eq!(
            v2,
            Value::Array(vec![Value::BulkString(b"offline".to_vec()), Value::Nil])
        );
        let v3: Value = redis::cmd("STATUS").arg(user).query(&mut con3).unwrap();
        assert_eq!(
            v3,
            Value::Map(vec![
                (
                    Value::BulkString(b"state".to_vec()),
                    Value::BulkString(b"offline".to_vec())
                ),
                (Value::BulkString(b"last_seen_ms".to_vec()), Value::Nil),
            ])
        );
    }
}

/// Waits (up to 4 s) until `user` is reported offline and returns that STATUS.
fn wait_offline(con: &mut redis::Connection, user: &str) -> (String, Option<i64>) {
    poll(Duration::from_secs(4), || {
        let s = status(con, user);
        (s.0 == "offline").then_some(s)
    })
    .unwrap_or_else(|| panic!("{user} still online 4 s after a 1 s TTL"))
}

/// HEARTBEAT with TTL 1 makes a user online; once the second has passed (polled for up to 4 s)
/// STATUS says offline with the very same last-seen, over RESP2 for a numeric ID and RESP3 for
/// a UUID.
#[test]
fn ttl_expiry_goes_offline_and_keeps_last_seen() {
    let server = TestServer::start();
    let mut con2 = server.client();
    let mut con3 = server.client_resp3();
    let uuid = "6f1c2b1e-4a7d-4c6e-9a51-3f0d2e8b7c90";
    assert_eq!(heartbeat(&mut con2, "77", Some(1)), 1);
    assert_eq!(heartbeat(&mut con3, uuid, Some(1)), 1);
    let (state, seen_77) = status(&mut con2, "77");
    assert_eq!(state, "online");
    let (state, seen_uuid) = status(&mut con3, uuid);
    assert_eq!(state, "online");

    let (_, last_seen) = wait_offline(&mut con2, "77");
    assert_eq!(last_seen, seen_77, "expiry keeps last-seen");
    assert!(
        now_ms() >= seen_77.unwrap() + 1000,
        "not offline before the TTL ran out"
    );
    let (_, last_seen) = wait_offline(&mut con3, uuid);
    assert_eq!(last_seen, seen_uuid, "expiry keeps last-seen");

    // A heartbeat after expiry brings the user online again.
    assert_eq!(heartbeat(&mut con2, "77", Some(300)), 1);
    assert_eq!(status(&mut con2, "77").0, "online");
}

/// OFFLINE replies :1 for an online user and :0 afterwards (and for a user never seen), keeps
/// last-seen, and the next HEARTBEAT brings the user online again with :1.
#[test]
fn offline_logs_a_user_out_and_keeps_last_seen() {
    let server = TestServer::start();
    let mut con = server.client();
    for user in ["300", "side-user@example.com"] {
        assert_eq!(heartbeat(&mut con, user, Some(300)), 1);
        let (_, seen) = status(&mut con, user);
        let first: i64 = redis::cmd("OFFLINE").arg(user).query(&mut con).unwrap();
        assert_eq!(first, 1, "{user} was online");
        let second: i64 = redis::cmd("OFFLINE").arg(user).query(&mut con).unwrap();
        assert_eq!(second, 0, "{user} was already offline");
        assert_eq!(status(&mut con, user), ("offline".to_string(), seen));
        assert_eq!(
            heartbeat(&mut con, user, None),
            1,
            "{user} comes back online"
        );
    }
    let never: i64 = redis::cmd("OFFLINE").arg("301").query(&mut con).unwrap();
    assert_eq!(never, 0);
    assert_eq!(status(&mut con, "301"), ("offline".to_string(), None));
}

/// Dense IDs, numbers at or above --capacity 1048576, numbers with a leading zero, UUIDs and
/// other strings all go through the same lifecycle; the non-dense ones land in the side table,
/// as INFO presence counts, and "042" is a different user from "42".
#[test]
fn every_kind_of_user_id_behaves_identically() {
    let server = TestServer::start();
    let mut con = server.client();
    let longest = "x".repeat(256);
    let dense = ["42", "0", "1048575"];
    let side = [
        "042",
        "1048576",
        "4294967296",
        "18446744073709551616",
        "0b0e5a52-1111-4b3c-9f4e-8d2d7c1f0a11",
        "user@example.com",
        longest.as_str(),
    ];
    for user in dense.iter().chain(side.iter()) {
        assert_eq!(
            status(&mut con, user),
            ("offline".to_string(), None),
            "{user}"
        );
        assert_eq!(heartbeat(&mut con, user, Some(300)), 1, "{user}");
        assert_eq!(heartbeat(&mut con, user, Some(300)), 0, "{user}");
        let (state, seen) = status(&mut con, user);
        assert_eq!(state, "online", "{user}");
        let was_online: i64 = redis::cmd("OFFLINE").arg(*user).query(&mut con).unwrap();
        assert_eq!(was_online, 1, "{user}");
        assert_eq!(
            status(&mut con, user),
            ("offline".to_string(), seen),
            "{user}"
        );
    }
    let presence = info(&mut con, "presence");
    assert_eq!(
        info_field(&presence, "side_table_users").as_deref(),
        Some(side.len().to_string().as_str()),
        "{presence}"
    );
    assert_eq!(
        info_field(&presence, "tracked_users").as_deref(),
        Some((dense.len() + side.len()).to_string().as_str()),
        "{presence}"
    );
}

/// MHEARTBEAT replies with how many users came online (a repeated ID counts once) and, when
/// any ID is invalid, fails without touching the valid ones.
#[test]
fn mheartbeat_counts_users_that_came_online() {
    let server = TestServer::start();
    let mut con = server.client();
    let n: i64 = redis::cmd("MHEARTBEAT")
        .arg(&["1", "2", "alice"])
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 3);
    let n: i64 = redis::cmd("MHEARTBEAT")
        .arg(&["1", "2", "bob"])
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1, "only bob was offline");
    let n: i64 = redis::cmd("MHEARTBEAT")
        .arg(&["carol", "carol"])
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1, "a repeated user comes online once");
    for user in ["1", "2", "alice", "bob", "carol"] {
        assert_eq!(status(&mut con, user).0, "online", "{user}");
    }
    let err = error_text::<i64>(&mut con, redis::cmd("MHEARTBEAT").arg("dave").arg(""));
    assert_eq!(err, "ERR invalid user id: empty");
    assert_eq!(status(&mut con, "dave"), ("offline".to_string(), None));
}

/// The scenario both MSTATUS tests check against: who is online, offline or never seen.
fn mixed_users(con: &mut redis::Connection) -> Vec<&'static str> {
    assert_eq!(heartbeat(con, "10", Some(300)), 1);
    assert_eq!(
        heartbeat(con, "b8d7e6f2-0c1a-4f4b-8e2a-6c3d9f1a2b3c", Some(300)),
        1
    );
    assert_eq!(heartbeat(con, "11", Some(300)), 1);
    assert_eq!(heartbeat(con, "eve", Some(300)), 1);
    let _: i64 = redis::cmd("OFFLINE").arg("11").query(con).unwrap();
    let _: i64 = redis::cmd("OFFLINE").arg("eve").query(con).unwrap();
    vec![
        "12",
        "10",
        "eve",
        "ghost",
        "b8d7e6f2-0c1a-4f4b-8e2a-6c3d9f1a2b3c",
        "11",
        "10",
        "2000000",
        "12",
    ]
}

/// MSTATUS answers in request order for a mix of online, logged-out, never-seen, non-numeric
/// and repeated users: each element equals what STATUS says of that user, in both protocols.
#[test]
fn mstatus_keeps_request_order() {
    let server = TestServer::start();
    let mut con2 = server.client();
    let mut con3 = server.client_resp3();
    let users = mixed_users(&mut con2);
    for con in [&mut con2, &mut con3] {
        let reply: Value = redis::cmd("MSTATUS").arg(&users).query(con).unwrap();
        let Value::Array(items) = reply else {
            panic!("MSTATUS is not an array: {reply:?}")
        };
        assert_eq!(items.len(), users.len());
        let got: Vec<(String, Option<i64>)> = items.iter().map(parse_status).collect();
        let expected: Vec<(String, Option<i64>)> = users.iter().map(|u| status(con, u)).collect();
        assert_eq!(got, expected);
        let states: Vec<&str> = got.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            states,
            [
                "offline", "online", "offline", "offline", "online", "offline", "online",
                "offline", "offline"
            ]
        );
        assert!(got[0].1.is_none() && got[3].1.is_none() && got[7].1.is_none());
        assert!(
            got[2].1.is_some() && got[5].1.is_some(),
            "logged-out users keep last-seen"
        );
    }
}

/// One MSTATUS of 100,000 users (a numeric and non-numeric mix, every 7th online) is answered
/// in full and in order, over RESP2 and over RESP3.
#[test]
fn mstatus_of_100000_users() {
    let server = TestServer::start();
    let mut con2 = server.client();
    let mut con3 = server.client_resp3();
    let ids: Vec<String> = (0..100_000)
        .map(|i| {
            if i % 10 == 3 {
                format!("user-{i}")
            } else {
                i.to_string()
            }
        })
        .collect();
    let online: Vec<&String> = ids.iter().step_by(7).collect();
    let came_online: i64 = redis::cmd("MHEARTBEAT")
        .arg(&online)
        .query(&mut con2)
        .unwrap();
    assert_eq!(came_online, online.len() as i64);
    for con in [&mut con2, &mut con3] {
        let reply: Value = redis::cmd("MSTATUS").arg(&ids).query(con).unwrap();
        let Value::Array(items) = reply else {
            panic!("MSTATUS is not an array")
        };
        assert_eq!(items.len(), ids.len());
        for (i, item) in items.iter().enumerate() {
            let (state, seen) = parse_status(item);
            if i % 7 == 0 {
                assert_eq!(state, "online", "user {}", ids[i]);
                assert!(seen.is_some(), "user {}", ids[i]);
            } else {
                assert_eq!((state.as_str(), seen), ("offline", None), "user {}", ids[i]);
            }
        }
    }
}
