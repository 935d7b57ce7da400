//! Replication between real processes: a leader and followers started with `--replicaof`,
//! all talking over loopback with the handshake Redis replicas use.

use std::time::Duration;

use redis::Value;

use crate::support::{TestServer, error_text};
use crate::util::{info, info_field, poll};

/// Both shard counts and capacities must match between leader and followers.
pub(crate) const COMMON: &[&str] = &["--shards", "2", "--threads", "2"];

pub(crate) fn leader() -> TestServer {
    TestServer::start_with(COMMON)
}

pub(crate) fn follower_of(leader_port: u16) -> TestServer {
    let port = leader_port.to_string();
    let args = [COMMON, &["--replicaof", "127.0.0.1", &port]].concat();
    TestServer::start_with(&args)
}

fn offset(con: &mut redis::Connection) -> u64 {
    info_field(&info(con, "replication"), "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until the follower's link is up and it has applied everything the leader produced
/// (the leader's offset stops moving once its last changes are drained).
pub(crate) fn caught_up(leader: &mut redis::Connection, follower: &mut redis::Connection) {
    let done = poll(Duration::from_secs(20), || {
        let link = info_field(&info(follower, "replication"), "master_link_status");
        let target = offset(leader);
        std::thread::sleep(Duration::from_millis(120));
        (link.as_deref() == Some("up") && target == offset(leader) && offset(follower) == target)
            .then_some(())
    });
    assert!(done.is_some(), "the follower did not catch up within 20 s");
}

fn load(con: &mut redis::Connection) -> Vec<String> {
    let mut users: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
    let _: i64 = redis::cmd("MHEARTBEAT").arg(&users).query(con).unwrap();
    for i in 0..200 {
        let user = format!("user-{i:03}");
        let _: i64 = redis::cmd("HEARTBEAT")
            .arg(&user)
            .arg("TTL")
            .arg(60)
            .arg("DEVICE")
            .arg(if i % 2 == 0 { "phone" } else { "web" })
            .query(con)
            .unwrap();
        users.push(user);
    }
    for i in 0..100 {
        let _: Value = redis::cmd("SETSTATUS")
            .arg(i * 7)
            .arg(if i % 2 == 0 { "dnd" } else { "invisible" })
            .query(con)
            .unwrap();
        let _: Value = redis::cmd("OFFLINE").arg(i * 11 + 1).query(con).unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("user:2999:presence")
        .arg(r#"{"room":"lobby"}"#)
        .arg("EX")
        .arg(300)
        .query(con)
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg("user:2998:presence")
        .query(con)
        .unwrap();
    users.push("never-seen".into());
    users
}

fn mstatus(con: &mut redis::Connection, users: &[String]) -> Value {
    redis::cmd("MSTATUS").arg(users).query(con).unwrap()
}

/// After a load of dense and side-table users with devices, overrides, logouts, a value and a
/// deletion, both followers answer MSTATUS (and GET) exactly as the leader does, refuse
/// writes with Redis's READONLY error, and report Redis's replication fields.
#[test]
fn followers_match_their_leader() {
    let leader = leader();
    let mut l = leader.client();
    let users = load(&mut l);
    let one = follower_of(leader.port);
    let two = follower_of(leader.port);
    let (mut f1, mut f2) = (one.client(), two.client());
    caught_up(&mut l, &mut f1);
    // Changes after the full sync arrive through the stream.
    let _: i64 = redis::cmd("HEARTBEAT").arg("late-1").query(&mut l).unwrap();
    let _: Value = redis::cmd("OFFLINE").arg("5").query(&mut l).unwrap();
    let mut users = users;
    users.push("late-1".into());
    caught_up(&mut l, &mut f1);
    caught_up(&mut l, &mut f2);
    let expected = mstatus(&mut l, &users);
    assert_eq!(mstatus(&mut f1, &users), expected);
    assert_eq!(mstatus(&mut f2, &users), expected);
    let value: Option<String> = redis::cmd("GET")
        .arg("user:2999:presence")
        .query(&mut f2)
        .unwrap();
    assert_eq!(value.as_deref(), Some(r#"{"room":"lobby"}"#));

    for mut write in [
        redis::cmd("HEARTBEAT").arg("1").clone(),
        redis::cmd("SET")
            .arg("user:1:presence")
            .arg("online")
            .clone(),
        redis::cmd("FLUSHALL").clone(),
    ] {
        assert_eq!(
            error_text::<Value>(&mut f1, &mut write),
            "READONLY You can't write against a read only replica."
        );
    }
    let role: Value = redis::cmd("ROLE").query(&mut f1).unwrap();
    assert!(format!("{role:?}").contains("slave"), "{role:?}");
    let leader_info = info(&mut l, "replication");
    assert_eq!(info_field(&leader_info, "role").as_deref(), Some("master"));
    assert_eq!(
        info_field(&leader_info, "connected_slaves").as_deref(),
        Some("2")
    );
    assert!(
        leader_info.contains("slave0:ip=127.0.0.1,port="),
        "{leader_info}"
    );
    let follower_info = info(&mut f1, "replication");
    assert_eq!(info_field(&follower_info, "role").as_deref(), Some("slave"));
    assert_eq!(
        info_field(&follower_info, "master_port"),
        Some(leader.port.to_string())
    );
    assert_eq!(
        info_field(&follower_info, "master_replid"),
        info_field(&leader_info, "master_replid")
    );
    assert_eq!(
        info_field(&info(&mut l, "stats"), "sync_full").as_deref(),
        Some("2")
    );
}

/// A subscriber on a follower receives the offline event of a user whose TTL ran out on the
/// leader: the follower's events come from its leader's stream, not its own clock.
#[test]
fn follower_subscribers_see_the_leaders_expiry() {
    let leader = leader();
    let follower = follower_of(leader.port);
    let mut l = leader.client();
    let mut f = follower.client();
    caught_up(&mut l, &mut f);
    let mut subscriber = follower.client();
    let mut pubsub = subscriber.as_pubsub();
    pubsub.subscribe("presence:77").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _: i64 = redis::cmd("HEARTBEAT")
        .arg("77")
        .arg("TTL")
        .arg(1)
        .query(&mut l)
        .unwrap();
    let states: Vec<String> = (0..2)
        .map(|_| {
            let message = pubsub.get_message().expect("an event within 10 s");
            let payload: String = message.get_payload().unwrap();
            let state = payload.split(r#""state":""#).nth(1).unwrap_or_default();
            state.split('"').next().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(states, ["online", "offline"]);
}

/// Keyspace notifications on a follower name what the leader decided: a user whose TTL ran
/// out there is `expired`, one logged out (`OFFLINE`) or deleted (`DEL`) there is `del` — the
/// stream carries states, and the follower tells the two apart by the leader's clock.
#[test]
fn follower_keyspace_events_name_the_leaders_cause() {
    let leader = leader();
    let follower = follower_of(leader.port);
    let mut l = leader.client();
    let mut f = follower.client();
    caught_up(&mut l, &mut f);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("Egx")
        .query(&mut f)
        .unwrap();
    let mut subscriber = follower.client();
    let mut pubsub = subscriber.as_pubsub();
    pubsub.subscribe("__keyevent@0__:expired").unwrap();
    pubsub.subscribe("__keyevent@0__:del").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for (user, ttl_s) in [("501", 1), ("502", 60), ("503", 60)] {
        let _: i64 = redis::cmd("HEARTBEAT")
            .arg(user)
            .arg("TTL")
            .arg(ttl_s)
            .query(&mut l)
            .unwrap();
    }
    caught_up(&mut l, &mut f);
    let _: Value = redis::cmd("OFFLINE").arg("502").query(&mut l).unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg("user:503:presence")
        .query(&mut l)
        .unwrap();
    let mut seen: Vec<(String, String)> = (0..3)
        .map(|_| {
            let message = pubsub.get_message().expect("a keyspace event within 10 s");
            let key: String = message.get_payload().unwrap();
            let event = message
                .get_channel_name()
                .trim_start_matches("__keyevent@0__:")
                .to_string();
            (key, event)
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("user:501:presence".to_string(), "expired".to_string()),
            ("user:502:presence".to_string(), "del".to_string()),
            ("user:503:presence".to_string(), "del".to_string()),
        ]
    );
}

/// `REPLICAOF NO ONE` promotes a follower: it takes writes, keeps the users it had online
/// (the promotion grace), and the other follower, pointed at it with REPLICAOF, continues by
/// offset without a full sync (`sync_partial_ok` on the new leader).
#[test]
fn a_promoted_follower_is_followed_by_offset() {
    let leader = leader();
    let mut l = leader.client();
    let users = load(&mut l);
    let one = follower_of(leader.port);
    let two = follower_of(leader.port);
    let (mut f1, mut f2) = (one.client(), two.client());
    caught_up(&mut l, &mut f1);
    caught_up(&mut l, &mut f2);
    let before = mstatus(&mut f1, &users);

    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut f1)
        .unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(one.port)
        .query(&mut f2)
        .unwrap();
    assert_eq!(mstatus(&mut f1, &users), before, "promotion changed nobody");
    let _: i64 = redis::cmd("HEARTBEAT").arg("after").query(&mut f1).unwrap();
    caught_up(&mut f1, &mut f2);
    let status: Value = redis::cmd("STATUS").arg("after").query(&mut f2).unwrap();
    assert!(format!("{status:?}").contains("online"), "{status:?}");
    let stats = info(&mut f1, "stats");
    assert_eq!(
        info_field(&stats, "sync_partial_ok").as_deref(),
        Some("1"),
        "{stats}"
    );
    assert_eq!(
        info_field(&stats, "sync_full").as_deref(),
        Some("0"),
        "{stats}"
    );
    let promoted = info(&mut f1, "replication");
    assert_eq!(info_field(&promoted, "role").as_deref(), Some("master"));
    assert_eq!(
        info_field(&promoted, "master_replid2"),
        info_field(&info(&mut l, "replication"), "master_replid")
    );

    // The old leader took a write the new one never saw: pointed at the new leader, it cannot
    // continue its own stream and syncs in full, and the stray write is gone (as in Redis).
    let _: i64 = redis::cmd("HEARTBEAT").arg("stray").query(&mut l).unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(one.port)
        .query(&mut l)
        .unwrap();
    caught_up(&mut f1, &mut l);
    let stats = info(&mut f1, "stats");
    assert_eq!(
        info_field(&stats, "sync_full").as_deref(),
        Some("1"),
        "{stats}"
    );
    let stray: Value = redis::cmd("STATUS").arg("stray").query(&mut l).unwrap();
    assert!(format!("{stray:?}").contains("offline"), "{stray:?}");
    assert_eq!(mstatus(&mut l, &users), mstatus(&mut f1, &users));
}

/// Stops a server with `SHUTDOWN SAVE` (its snapshot then holds its replication position).
fn shutdown_saving(server: &mut TestServer) {
    use std::io::Write;
    let mut stream = server.raw();
    stream
        .write_all(b"SHUTDOWN SAVE\r\n")
        .expect("write SHUTDOWN");
    let _ = crate::util::read_until_closed(&mut stream);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("the follower exits after SHUTDOWN");
    assert!(status.success(), "SHUTDOWN SAVE exits with {status}");
}

fn sync_counts(con: &mut redis::Connection) -> (String, String) {
    let stats = info(con, "stats");
    (
        info_field(&stats, "sync_full").unwrap_or_default(),
        info_field(&stats, "sync_partial_ok").unwrap_or_default(),
    )
}

/// A follower stopped and restarted from its own snapshot continues by offset while the
/// leader's backlog still holds what it missed (`sync_partial_ok`), and syncs in full once the
/// backlog has moved past it (`sync_full`); either way it ends up matching its leader.
#[test]
fn a_restarted_follower_continues_within_the_backlog() {
    let leader = TestServer::start_with(&[COMMON, &["--repl-backlog-size", "64kb"]].concat());
    let mut l = leader.client();
    let users = load(&mut l);
    let dir = crate::support::unique_temp_dir();
    let dir = dir.to_string_lossy().into_owned();
    let port = leader.port.to_string();
    let follower_args = [
        COMMON,
        &[
            "--replicaof",
            "127.0.0.1",
            &port,
            "--snapshot-interval",
            "3600",
        ],
    ]
    .concat();
    let mut follower = TestServer::start_in(&dir, &follower_args);
    caught_up(&mut l, &mut follower.client());
    assert_eq!(sync_counts(&mut l), ("1".into(), "0".into()));

    // Within the backlog: a few changes while it is down.
    shutdown_saving(&mut follower);
    let _: i64 = redis::cmd("MHEARTBEAT")
        .arg(&users[..50])
        .query(&mut l)
        .unwrap();
    let _: Value = redis::cmd("OFFLINE").arg("7").query(&mut l).unwrap();
    let mut follower = TestServer::start_in(&dir, &follower_args);
    let mut f = follower.client();
    caught_up(&mut l, &mut f);
    assert_eq!(
        sync_counts(&mut l),
        ("1".into(), "1".into()),
        "continued by offset"
    );
    assert_eq!(mstatus(&mut f, &users), mstatus(&mut l, &users));

    // Past the backlog: more changes than it holds while the follower is down (non-numeric
    // IDs: whole records of ~25 bytes each, where numeric ones pack into a byte or two).
    shutdown_saving(&mut follower);
    for round in 0..4 {
        let batch: Vec<String> = (0..2000)
            .map(|i| format!("past-{}", round * 2000 + i))
            .collect();
        let _: i64 = redis::cmd("MHEARTBEAT").arg(&batch).query(&mut l).unwrap();
        std::thread::sleep(Duration::from_millis(120));
    }
    let follower = TestServer::start_in(&dir, &follower_args);
    let mut f = follower.client();
    caught_up(&mut l, &mut f);
    assert_eq!(
        sync_counts(&mut l),
        ("2".into(), "1".into()),
        "a full sync again"
    );
    assert_eq!(mstatus(&mut f, &users), mstatus(&mut l, &users));
}

/// The transaction Redis Sentinel sends to reconfigure servers after a failover (Redis 7.0's
/// sentinel.c: `MULTI; SLAVEOF …; CONFIG REWRITE; CLIENT KILL TYPE normal; CLIENT KILL TYPE
/// pubsub; EXEC`) runs whole: SLAVEOF takes effect although CONFIG REWRITE fails (there is no
/// config file), and killing the normal clients leaves the replication links alone.
#[test]
fn sentinels_reconfiguration_transaction_runs() {
    let leader = leader();
    let one = follower_of(leader.port);
    let two = follower_of(leader.port);
    caught_up(&mut leader.client(), &mut one.client());
    caught_up(&mut leader.client(), &mut two.client());
    let reconfigure = |server: &TestServer, target: &[&str]| {
        let mut raw = server.raw();
        let mut request = crate::support::resp_command(&[b"MULTI"]);
        let mut slaveof: Vec<&[u8]> = vec![b"SLAVEOF"];
        slaveof.extend(target.iter().map(|t| t.as_bytes()));
        request.extend(crate::support::resp_command(&slaveof));
        request.extend(crate::support::resp_command(&[b"CONFIG", b"REWRITE"]));
        for kind in [&b"normal"[..], b"pubsub"] {
            request.extend(crate::support::resp_command(&[
                b"CLIENT", b"KILL", b"TYPE", kind,
            ]));
        }
        request.extend(crate::support::resp_command(&[b"EXEC"]));
        crate::support::exchange(&mut raw, &request)
    };
    let promoted = reconfigure(&one, &["NO", "ONE"]);
    let text = String::from_utf8_lossy(&promoted).into_owned();
    assert!(
        text.ends_with(
            "*4\r\n+OK\r\n-ERR The server is running without a config file\r\n:0\r\n:0\r\n"
        ),
        "{text}"
    );
    let port = one.port.to_string();
    let demoted = reconfigure(&leader, &["127.0.0.1", &port]);
    assert!(String::from_utf8_lossy(&demoted).contains("*4\r\n+OK\r\n-ERR"));
    let _ = reconfigure(&two, &["127.0.0.1", &port]);
    let mut new_leader = one.client();
    let _: i64 = redis::cmd("HEARTBEAT")
        .arg("after-failover")
        .query(&mut new_leader)
        .unwrap();
    for follower in [&leader, &two] {
        let mut f = follower.client();
        caught_up(&mut new_leader, &mut f);
        let status: Value = redis::cmd("STATUS")
            .arg("after-failover")
            .query(&mut f)
            .unwrap();
        assert!(format!("{status:?}").contains("online"), "{status:?}");
    }
    let info = info(&mut new_leader, "replication");
    assert_eq!(
        info_field(&info, "connected_slaves").as_deref(),
        Some("2"),
        "{info}"
    );
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut new_leader)
        .unwrap();
    assert_eq!(clients.matches("flags=S").count(), 2, "{clients}");
}

/// Failover under three real Redis Sentinels (`down-after-milliseconds 1000`): the leader is
/// killed with SIGKILL while a redis-py client heartbeats through Sentinel; a follower is
/// promoted, writes resume, the restarted old leader rejoins as a follower, and no subscriber
/// on a follower sees a false offline event; every node's config file then names its new role
/// (Sentinel's CONFIG REWRITE). tests/failover/sentinel_failover.py drives it and
/// prints the timings and how many acknowledged heartbeats were lost (docs/BENCHMARKS.md).
#[test]
fn sentinel_failover_under_load() {
    let _heavy = crate::support::heavy_test_lock();
    crate::clients::require_redis_py();
    let sentinel = crate::clients::require_tool("redis-sentinel");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/failover/sentinel_failover.py");
    let run = std::process::Command::new(crate::clients::require_tool("python3"))
        .arg(&script)
        .args(["--presenced", env!("CARGO_BIN_EXE_presenced")])
        .arg("--sentinel")
        .arg(&sentinel)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("python3 starts");
    let stdout = String::from_utf8_lossy(&run.stdout);
    // The figures, for whoever runs the suite with --nocapture.
    eprintln!("{stdout}");
    assert!(
        run.status.success() && stdout.contains("sentinel failover: ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("false offline events seen by follower subscribers: 0 "),
        "{stdout}"
    );
    // Sentinel's CONFIG REWRITE persisted every node's new role in its config file.
    assert!(
        stdout.contains("config files rewritten by Sentinel"),
        "{stdout}"
    );
}

/// Runs tests/failover/sentinel_clients.py with `--client <client>` (it starts a presenced
/// leader, two followers and three real redis-sentinel processes, and stops them) and fails
/// unless it exits 0 with `sentinel clients (<client>): ok`. Returns its stdout.
fn sentinel_clients(client: &str, extra: &[&std::ffi::OsStr]) -> String {
    let sentinel = crate::clients::require_tool("redis-sentinel");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/failover/sentinel_clients.py");
    let run = std::process::Command::new(crate::clients::require_tool("python3"))
        .arg(&script)
        .args(["--presenced", env!("CARGO_BIN_EXE_presenced")])
        .args(["--client", client])
        .arg("--sentinel")
        .arg(&sentinel)
        .args(extra)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("python3 starts");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    // Each passed check, for whoever runs the suite with --nocapture.
    eprintln!("{stdout}");
    assert!(
        run.status.success() && stdout.contains(&format!("sentinel clients ({client}): ok")),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

/// redis-py 8 through real Sentinel: discover_master/discover_slaves name the leader and both
/// followers; master_for writes (HEARTBEAT, SET ... EX, OFFLINE); slave_for is on a follower,
/// reads what master_for wrote and gets ReadOnlyError for writes; a follower subscriber gets
/// the offline events of a TTL expiry and of an OFFLINE. After SIGKILL of the leader,
/// master_for writes on the promoted follower, slave_for reads from the remaining one and a
/// fresh follower subscriber gets an OFFLINE's event.
#[test]
fn sentinel_clients_redis_py() {
    let _heavy = crate::support::heavy_test_lock();
    crate::clients::require_redis_py();
    let stdout = sentinel_clients("redis-py", &[]);
    for check in [
        "ok discover_slaves lists both followers",
        "-> ReadOnlyError",
        "ok follower subscriber: offline event for py-e when its TTL ran out",
        "ok follower subscriber: offline event for py-f after OFFLINE through master_for",
        "ok master_for: HEARTBEAT writes again",
        "ok slave_for reads after the failover from ",
        "ok fresh slave_for().pubsub() on ",
    ] {
        assert!(stdout.contains(check), "missing `{check}`:\n{stdout}");
    }
}

/// ioredis 5 through real Sentinel (tests/clients/node/sentinel_clients.js, run against the
/// cluster the Python script starts): role 'master' writes, role 'slave' is on a follower,
/// reads replicated data and gets READONLY for writes, a role 'slave' subscriber gets an
/// OFFLINE's event; after the Node script kills the leader with SIGKILL, its master connection
/// writes again on the promoted follower and its slave connection reads again.
#[test]
fn sentinel_clients_ioredis() {
    let _heavy = crate::support::heavy_test_lock();
    crate::clients::require_redis_py();
    let node = crate::clients::require_tool("node");
    let module = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/node/node_modules/ioredis");
    assert!(
        module.is_dir(),
        "ioredis is not installed in tests/clients/node: run scripts/install-test-deps"
    );
    let stdout = sentinel_clients("ioredis", &["--node".as_ref(), node.as_os_str()]);
    for check in [
        "ok slave: HEARTBEAT -> READONLY",
        "ok subscriber: offline event for io-e after OFFLINE through the master connection",
        "ok master: HEARTBEAT writes again",
        "ok slave connection reads after the failover",
    ] {
        assert!(stdout.contains(check), "missing `{check}`:\n{stdout}");
    }
}

/// A follower behind a proxy or NAT: `--replica-announce-ip/-port` are what its leader shows
/// for it (INFO's `slaveN:`, ROLE, so Sentinel and clients use them), and `--bind-source-addr`
/// is the address its link comes from.
#[test]
fn a_follower_announces_the_address_it_is_reached_at() {
    let leader = leader();
    let port = leader.port.to_string();
    let args = [
        COMMON,
        &[
            "--replicaof",
            "127.0.0.1",
            &port,
            "--replica-announce-ip",
            "127.0.0.77",
            "--replica-announce-port",
            "4444",
            "--bind-source-addr",
            "127.0.0.5",
        ],
    ]
    .concat();
    let follower = TestServer::start_with(&args);
    let mut l = leader.client();
    let mut f = follower.client();
    caught_up(&mut l, &mut f);
    let replication = info(&mut l, "replication");
    let slave0 = info_field(&replication, "slave0").unwrap_or_default();
    assert!(
        slave0.starts_with("ip=127.0.0.77,port=4444,state=online,"),
        "{replication}"
    );
    let role: Value = redis::cmd("ROLE").query(&mut l).unwrap();
    let role = format!("{role:?}");
    assert!(
        role.contains("127.0.0.77") && role.contains("4444"),
        "{role}"
    );
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut l).unwrap();
    let link = clients
        .lines()
        .find(|line| line.contains("flags=S"))
        .unwrap_or_default();
    assert!(link.contains("addr=127.0.0.5:"), "{clients}");
}

/// A leader paused (SIGSTOP) while its follower is promoted, then resumed: it still thinks it
/// leads, runs the heartbeats its clients had sent meanwhile and streams them down the old
/// link. The promoted follower must not end up with users online that never expire: once the
/// strays' TTL and the promotion grace have run out, its store counts nobody online.
#[test]
fn a_resumed_old_leader_leaves_no_user_online_forever_on_the_promoted_follower() {
    let leader = leader();
    let follower = follower_of(leader.port);
    let mut l = leader.client();
    let mut f = follower.client();
    caught_up(&mut l, &mut f);
    // A client connection the old leader has accepted, to send to while it is stopped.
    let mut client = leader.raw();
    crate::util::roundtrip(&mut client, b"PING\r\n", b"+PONG\r\n");
    let pid = leader.pid().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    use std::io::Write;
    let mut requests = Vec::new();
    for i in 0..50 {
        requests.extend_from_slice(
            format!("*4\r\n$9\r\nHEARTBEAT\r\n$6\r\nstray{i}\r\n$3\r\nTTL\r\n$1\r\n2\r\n")
                .as_bytes(),
        );
    }
    client.write_all(&requests).unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut f)
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    signal("-CONT");
    // The strays' 2 s TTL and the promotion grace (10 s) run out; then nobody is online in
    // the promoted follower's store (reads would hide them; the count does not).
    let settled = poll(Duration::from_secs(25), || {
        let presence = info(&mut f, "presence");
        (info_field(&presence, "online_users").as_deref() == Some("0")).then_some(())
    });
    let presence = info(&mut f, "presence");
    assert!(settled.is_some(), "users stay online for good:\n{presence}");
}
