//! The leader's safety knobs between real processes: `WAIT` and `--min-replicas-to-write` /
//! `--min-replicas-max-lag`, with Redis's replies.

use std::time::Duration;

use redis::Value;

use crate::replication::{COMMON, caught_up, follower_of, leader};
use crate::support::{TestServer, error_text};
use crate::util::{info, info_field, poll, status};

/// `WAIT` answers how many followers acknowledged every change so far: once it answers 2,
/// both followers already show the heartbeat it followed (no polling); asked for more
/// followers than there are, it answers the count at its timeout. Its refusals use Redis's
/// words, and inside a transaction it answers at once.
#[test]
fn wait_counts_the_followers_that_acknowledged() {
    let leader = leader();
    let (one, two) = (follower_of(leader.port), follower_of(leader.port));
    let mut l = leader.client();
    let (mut f1, mut f2) = (one.client(), two.client());
    caught_up(&mut l, &mut f1);
    caught_up(&mut l, &mut f2);
    for round in 0..20 {
        let user = format!("waited-{round}");
        let _: i64 = redis::cmd("HEARTBEAT").arg(&user).query(&mut l).unwrap();
        let acked: i64 = redis::cmd("WAIT").arg(2).arg(10_000).query(&mut l).unwrap();
        assert_eq!(acked, 2, "round {round}");
        for follower in [&mut f1, &mut f2] {
            assert_eq!(status(follower, &user).0, "online", "round {round}");
        }
    }
    // More followers than there are: the count at the timeout.
    let acked: i64 = redis::cmd("WAIT").arg(3).arg(300).query(&mut l).unwrap();
    assert_eq!(acked, 2);
    // Zero replicas asked for: at once.
    let acked: i64 = redis::cmd("WAIT").arg(0).arg(0).query(&mut l).unwrap();
    assert_eq!(acked, 2);
    // A WAIT in a pipeline keeps the replies in order.
    let (first, acked, pong): (i64, i64, String) = redis::pipe()
        .cmd("HEARTBEAT")
        .arg("piped")
        .cmd("WAIT")
        .arg(2)
        .arg(10_000)
        .cmd("PING")
        .query(&mut l)
        .unwrap();
    assert_eq!((first, acked, pong.as_str()), (1, 2, "PONG"));
    // Inside MULTI it does not block: the count now.
    let (acked,): (i64,) = redis::pipe()
        .atomic()
        .cmd("WAIT")
        .arg(5)
        .arg(0)
        .query(&mut l)
        .unwrap();
    assert_eq!(acked, 2);

    assert_eq!(
        error_text::<i64>(&mut l, redis::cmd("WAIT").arg(1).arg(-1)),
        "ERR timeout is negative"
    );
    assert_eq!(
        error_text::<i64>(&mut l, redis::cmd("WAIT").arg(1).arg("soon")),
        "ERR timeout is not an integer or out of range"
    );
    assert_eq!(
        error_text::<i64>(&mut l, redis::cmd("WAIT").arg("two").arg(0)),
        "ERR value is not an integer or out of range"
    );
    assert!(
        error_text::<i64>(&mut f1, redis::cmd("WAIT").arg(1).arg(0))
            .starts_with("ERR WAIT cannot be used with replica instances."),
    );
}

/// A leader without followers answers `WAIT` with 0 at its timeout.
#[test]
fn wait_without_followers_answers_zero_at_its_timeout() {
    let leader = leader();
    let mut l = leader.client();
    let _: i64 = redis::cmd("HEARTBEAT").arg("7").query(&mut l).unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(200).query(&mut l).unwrap();
    assert_eq!(acked, 0);
    let pong: String = redis::cmd("PING").query(&mut l).unwrap();
    assert_eq!(pong, "PONG");
}

fn good_followers(con: &mut redis::Connection) -> Option<String> {
    info_field(&info(con, "replication"), "min_slaves_good_slaves")
}

fn heartbeat(con: &mut redis::Connection, user: &str, ttl_s: u64) -> redis::RedisResult<i64> {
    redis::cmd("HEARTBEAT")
        .arg(user)
        .arg("TTL")
        .arg(ttl_s)
        .query(con)
}

/// With `--min-replicas-to-write 1`: writes are refused with Redis's NOREPLICAS error (alone,
/// and as the EXEC of a transaction holding one) while no follower is fresh, reads go on;
/// once a follower acknowledges, writes are taken; once it is gone for longer than
/// `--min-replicas-max-lag`, they are refused again, and a user whose TTL runs out meanwhile
/// is not declared offline until the knob is lifted (the isolated leader publishes no
/// offline event its followers would not agree with).
#[test]
fn min_replicas_refuse_writes_and_hold_offline_detection() {
    let args = [
        COMMON,
        &[
            "--min-replicas-to-write",
            "1",
            "--min-replicas-max-lag",
            "1",
        ],
    ]
    .concat();
    let leader = TestServer::start_with(&args);
    let mut l = leader.client();
    assert_eq!(
        error_text::<i64>(&mut l, redis::cmd("HEARTBEAT").arg("1")),
        "NOREPLICAS Not enough good replicas to write."
    );
    assert_eq!(
        error_text::<()>(&mut l, redis::cmd("SET").arg("user:1:presence").arg("x")),
        "NOREPLICAS Not enough good replicas to write."
    );
    assert_eq!(status(&mut l, "1").0, "offline");
    assert_eq!(good_followers(&mut l).as_deref(), Some("0"));
    // A write queued in MULTI is refused and dooms the transaction, as in Redis.
    let queued: redis::RedisResult<Vec<Value>> = redis::pipe()
        .atomic()
        .cmd("HEARTBEAT")
        .arg("1")
        .query(&mut l);
    assert!(queued.is_err(), "{queued:?}");

    let follower = follower_of(leader.port);
    let mut f = follower.client();
    let taken = poll(Duration::from_secs(20), || heartbeat(&mut l, "2", 60).ok());
    assert!(taken.is_some(), "writes were never taken with a follower");
    caught_up(&mut l, &mut f);
    assert_eq!(good_followers(&mut l).as_deref(), Some("1"));
    assert_eq!(status(&mut f, "2").0, "online");
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("min-*")
        .query(&mut l)
        .unwrap();
    for pair in [
        ["min-replicas-to-write", "1"],
        ["min-replicas-max-lag", "1"],
        ["min-slaves-to-write", "1"],
        ["min-slaves-max-lag", "1"],
    ] {
        assert!(
            config.windows(2).any(|w| w == pair),
            "{pair:?} in {config:?}"
        );
    }

    // A user with a short TTL, watched by a subscriber on the leader.
    let mut subscriber = leader.client();
    let mut pubsub = subscriber.as_pubsub();
    pubsub.subscribe("presence:held").unwrap();
    heartbeat(&mut l, "held", 2).unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let online: String = pubsub.get_message().unwrap().get_payload().unwrap();
    assert!(online.contains(r#""state":"online""#), "{online}");

    drop(f);
    drop(follower);
    let refused = poll(Duration::from_secs(20), || {
        heartbeat(&mut l, "probe", 60).err().map(|e| e.to_string())
    });
    assert!(
        refused.as_deref().is_some_and(|e| e.contains("NOREPLICAS")),
        "{refused:?}"
    );
    // The held user's 2 s deadline passes within these 3 s: no offline event while the leader
    // is alone.
    pubsub
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let early = pubsub.get_message();
    assert!(early.is_err(), "an offline event while isolated: {early:?}");

    // Lifting the knob: the held user is declared offline.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("min-slaves-to-write")
        .arg(0)
        .query(&mut l)
        .unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let offline: String = pubsub.get_message().unwrap().get_payload().unwrap();
    assert!(offline.contains(r#""state":"offline""#), "{offline}");
    heartbeat(&mut l, "3", 60).unwrap();
    assert_eq!(good_followers(&mut l), None);
}
