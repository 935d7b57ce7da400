//! The administrative and connection surface tools rely on: HELLO, CLIENT, COMMAND, INFO,
//! DBSIZE, CONFIG GET, TIME, FLUSHALL, SELECT, ECHO, PING, QUIT, RESET, SHUTDOWN and SIGTERM.

use std::io::Write;
use std::time::Duration;

use redis::Value;

use crate::support::{TestServer, error_text};
use crate::util::{
    as_text, heartbeat, info, info_field, now_ms, poll, read_lines, read_until_closed,
    read_until_suffix, roundtrip, roundtrip_then_closed, show, status,
};

/// The value under `key` in a map reply (RESP3 map, or a RESP2 flat array of pairs).
fn map_get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let key = Value::BulkString(key.as_bytes().to_vec());
    match value {
        Value::Map(pairs) => pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
        Value::Array(items) => items
            .chunks(2)
            .find(|pair| pair.len() == 2 && pair[0] == key)
            .map(|pair| &pair[1]),
        _ => None,
    }
}

/// HELLO 3 answers a map with server, version, proto 3, the connection id, mode, role and an
/// empty modules list; HELLO 2 on the same connection answers the same fields as a flat array
/// and switches back to RESP2, as the raw bytes of STATUS show; HELLO alone keeps the protocol.
#[test]
fn hello_negotiates_the_protocol() {
    let server = TestServer::start();
    let mut con = server.client_resp3();
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut con).unwrap();
    let hello: Value = redis::cmd("HELLO").arg(3).query(&mut con).unwrap();
    let Value::Map(ref pairs) = hello else {
        panic!("HELLO 3 is not a map: {hello:?}")
    };
    let keys: Vec<String> = pairs.iter().map(|(k, _)| as_text(k)).collect();
    assert_eq!(
        keys,
        [
            "server", "version", "proto", "id", "mode", "role", "modules"
        ]
    );
    assert_eq!(as_text(map_get(&hello, "server").unwrap()), "presenced");
    assert!(!as_text(map_get(&hello, "version").unwrap()).is_empty());
    assert_eq!(map_get(&hello, "proto"), Some(&Value::Int(3)));
    assert_eq!(map_get(&hello, "id"), Some(&Value::Int(id)));
    assert_eq!(as_text(map_get(&hello, "mode").unwrap()), "standalone");
    assert_eq!(as_text(map_get(&hello, "role").unwrap()), "master");
    assert_eq!(map_get(&hello, "modules"), Some(&Value::Array(vec![])));

    let mut stream = server.raw();
    stream.write_all(b"HELLO 3\r\nPING\r\n").unwrap();
    let reply = read_until_suffix(&mut stream, b"+PONG\r\n");
    assert!(
        reply.starts_with(b"%7\r\n$6\r\nserver\r\n$9\r\npresenced\r\n"),
        "{}",
        show(&reply)
    );
    assert!(
        show(&reply).contains("$5\r\nproto\r\n:3\r\n"),
        "{}",
        show(&reply)
    );
    stream.write_all(b"HELLO\r\nPING\r\n").unwrap();
    let reply = read_until_suffix(&mut stream, b"+PONG\r\n");
    assert!(
        reply.starts_with(b"%7\r\n"),
        "HELLO alone stays in RESP3: {}",
        show(&reply)
    );
    stream.write_all(b"HELLO 2\r\nPING\r\n").unwrap();
    let reply = read_until_suffix(&mut stream, b"+PONG\r\n");
    assert!(
        reply.starts_with(b"*14\r\n$6\r\nserver\r\n"),
        "{}",
        show(&reply)
    );
    assert!(
        show(&reply).contains("$5\r\nproto\r\n:2\r\n"),
        "{}",
        show(&reply)
    );
    roundtrip(
        &mut stream,
        b"STATUS 999\r\n",
        b"*2\r\n$7\r\noffline\r\n$-1\r\n",
    );
    roundtrip(
        &mut stream,
        b"CONFIG GET appendonly\r\n",
        b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
    );
}

/// CLIENT ID, SETNAME, GETNAME, SETINFO, LIST and INFO describe the calling connection, and
/// LIST shows every connection with its address, name and library fields.
#[test]
fn client_subcommands_describe_connections() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut other = server.client_resp3();
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut con).unwrap();
    let other_id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut other).unwrap();
    assert!(id > 0 && other_id > 0 && id != other_id);
    let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut con).unwrap();
    assert_eq!(name, None);
    let ok: String = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("gateway-7")
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut con).unwrap();
    assert_eq!(name.as_deref(), Some("gateway-7"));
    for (attr, value) in [("LIB-NAME", "presence-gw"), ("lib-ver", "1.2.3")] {
        let ok: String = redis::cmd("CLIENT")
            .arg("SETINFO")
            .arg(attr)
            .arg(value)
            .query(&mut con)
            .unwrap();
        assert_eq!(ok, "OK");
    }
    assert_eq!(
        error_text::<Value>(
            &mut con,
            redis::cmd("CLIENT").arg("SETINFO").arg("color").arg("x")
        ),
        "ERR Unrecognized option 'color'"
    );

    let own: String = redis::cmd("CLIENT").arg("INFO").query(&mut con).unwrap();
    assert!(own.starts_with(&format!("id={id} addr=")), "{own}");
    for field in [
        " name=gateway-7 ",
        " lib-name=presence-gw ",
        " lib-ver=1.2.3",
        " db=0 ",
        " resp=2 ",
        " cmd=client|info ",
    ] {
        assert!(own.contains(field), "{field:?} in {own}");
    }
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines[0].starts_with(&format!("id={} ", id.min(other_id))),
        "{list}"
    );
    let own_line = lines
        .iter()
        .find(|l| l.starts_with(&format!("id={id} ")))
        .expect("the caller is listed");
    assert!(own_line.contains(" cmd=client|list "), "{own_line}");
    let other_line = lines
        .iter()
        .find(|l| l.starts_with(&format!("id={other_id} ")))
        .expect("the other client is listed");
    assert!(other_line.contains(" resp=3 "), "{other_line}");
    let only: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("ID")
        .arg(other_id)
        .query(&mut con)
        .unwrap();
    assert_eq!(only.lines().count(), 1);
    assert!(only.starts_with(&format!("id={other_id} ")), "{only}");
    // RESP3 clients get CLIENT LIST as a verbatim string.
    let listed: Value = redis::cmd("CLIENT").arg("LIST").query(&mut other).unwrap();
    assert!(matches!(listed, Value::VerbatimString { .. }), "{listed:?}");
}

/// CLIENT KILL ID of another connection answers 1 and closes that connection, the old form
/// CLIENT KILL addr:port answers OK and closes its target, and an unknown ID answers 0.
#[test]
fn client_kill_closes_the_other_connection() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut victim = server.raw();
    roundtrip(&mut victim, b"HEARTBEAT 12\r\n", b":1\r\n");
    victim.write_all(b"CLIENT ID\r\n").unwrap();
    let reply = read_until_suffix(&mut victim, b"\r\n");
    let victim_id: i64 = show(&reply)
        .trim_start_matches(':')
        .trim_end()
        .parse()
        .expect("CLIENT ID is an integer");
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(victim_id)
        .query(&mut con)
        .unwrap();
    assert_eq!(killed, 1);
    assert_eq!(show(&read_until_closed(&mut victim)), "<CLOSED>");
    let none: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(victim_id)
        .query(&mut con)
        .unwrap();
    assert_eq!(none, 0, "the killed client is gone");

    let mut victim = server.raw();
    roundtrip(&mut victim, b"PING\r\n", b"+PONG\r\n");
    let addr = victim.local_addr().unwrap().to_string();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
    assert!(list.contains(&format!(" addr={addr} ")), "{addr} in {list}");
    let ok: String = redis::cmd("CLIENT")
        .arg("KILL")
        .arg(&addr)
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    assert_eq!(show(&read_until_closed(&mut victim)), "<CLOSED>");
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("CLIENT").arg("KILL").arg(&addr)),
        "ERR No such client"
    );
    // The killer and the data are fine.
    assert_eq!(status(&mut con, "12").0, "online");
}

/// COMMAND COUNT, LIST, INFO and DOCS describe the command table: HEARTBEAT has arity -2,
/// flags write and fast and keys 1..1 step 1; MSTATUS has last key -1; unknown names are nil.
#[test]
fn command_introspection() {
    let server = TestServer::start();
    let mut con = server.client();
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut con).unwrap();
    let names: Vec<String> = redis::cmd("COMMAND").arg("LIST").query(&mut con).unwrap();
    assert_eq!(names.len() as i64, count);
    for name in [
        "heartbeat",
        "mheartbeat",
        "status",
        "mstatus",
        "offline",
        "ping",
        "hello",
        "auth",
        "client",
        "command",
        "info",
        "config",
        "shutdown",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let all: Vec<Value> = redis::cmd("COMMAND").query(&mut con).unwrap();
    assert_eq!(all.len() as i64, count);

    let info: Vec<Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("heartbeat")
        .arg("MSTATUS")
        .arg("nosuch")
        .query(&mut con)
        .unwrap();
    assert_eq!(info.len(), 3);
    let Value::Array(ref hb) = info[0] else {
        panic!("COMMAND INFO heartbeat: {:?}", info[0])
    };
    assert_eq!(hb.len(), 10, "Redis 7's ten fields: {hb:?}");
    assert_eq!(as_text(&hb[0]), "heartbeat");
    assert_eq!(hb[1], Value::Int(-2));
    let Value::Array(ref flags) = hb[2] else {
        panic!("flags: {:?}", hb[2])
    };
    let flags: Vec<String> = flags.iter().map(as_text).collect();
    assert!(flags.contains(&"write".to_string()), "{flags:?}");
    assert!(flags.contains(&"fast".to_string()), "{flags:?}");
    assert_eq!(
        (&hb[3], &hb[4], &hb[5]),
        (&Value::Int(1), &Value::Int(1), &Value::Int(1))
    );
    let Value::Array(ref ms) = info[1] else {
        panic!("COMMAND INFO mstatus: {:?}", info[1])
    };
    assert_eq!(as_text(&ms[0]), "mstatus");
    assert_eq!(
        (&ms[3], &ms[4], &ms[5]),
        (&Value::Int(1), &Value::Int(-1), &Value::Int(1))
    );
    assert_eq!(info[2], Value::Nil);

    let sub: Vec<Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("client|setname")
        .query(&mut con)
        .unwrap();
    let Value::Array(ref setname) = sub[0] else {
        panic!("COMMAND INFO client|setname: {:?}", sub[0])
    };
    assert_eq!(as_text(&setname[0]), "client|setname");
    assert_eq!(setname[1], Value::Int(3));

    let mut con3 = server.client_resp3();
    let docs: Value = redis::cmd("COMMAND")
        .arg("DOCS")
        .arg("heartbeat")
        .query(&mut con3)
        .unwrap();
    let doc = map_get(&docs, "heartbeat").unwrap_or_else(|| panic!("heartbeat in {docs:?}"));
    for field in ["summary", "since", "group", "complexity"] {
        assert!(map_get(doc, field).is_some(), "{field} in {doc:?}");
    }
    assert_eq!(as_text(map_get(doc, "group").unwrap()), "presence");
    let docs2: Value = redis::cmd("COMMAND")
        .arg("DOCS")
        .arg("client")
        .query(&mut con)
        .unwrap();
    let client_doc = map_get(&docs2, "client").expect("client docs");
    assert!(
        map_get(client_doc, "subcommands").is_some(),
        "{client_doc:?}"
    );
    let filtered: Vec<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .arg("FILTERBY")
        .arg("PATTERN")
        .arg("*heartbeat")
        .query(&mut con)
        .unwrap();
    assert_eq!(filtered, ["heartbeat", "mheartbeat"]);
}

/// INFO has Server (with a 40-hex run_id), Clients, Memory, Stats, Presence and Keyspace
/// sections of `field:value` lines, and INFO <section> gives just that section.
#[test]
fn info_sections() {
    let server = TestServer::start();
    let mut con = server.client();
    assert_eq!(heartbeat(&mut con, "1", Some(300)), 1);
    let text = info(&mut con, "");
    for heading in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Stats",
        "# Presence",
        "# Keyspace",
    ] {
        assert!(text.lines().any(|l| l == heading), "{heading} in {text}");
    }
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# ") {
            continue;
        }
        let (field, _) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("not field:value: {line:?}"));
        assert!(
            !field.is_empty() && !field.contains(' '),
            "bad field name in {line:?}"
        );
    }
    let run_id = info_field(&text, "run_id").expect("run_id");
    assert_eq!(run_id.len(), 40, "{run_id}");
    assert!(run_id.bytes().all(|b| b.is_ascii_hexdigit()), "{run_id}");
    assert_eq!(
        info_field(&text, "tcp_port").as_deref(),
        Some(server.port.to_string().as_str())
    );
    assert_eq!(info_field(&text, "online_users").as_deref(), Some("1"));
    assert!(info_field(&text, "connected_clients").is_some());
    assert!(info_field(&text, "used_memory").is_some());
    assert!(info_field(&text, "total_commands_processed").is_some());
    assert_eq!(
        info_field(&text, "db0").as_deref(),
        Some("keys=1,expires=1,avg_ttl=0")
    );

    let presence = info(&mut con, "presence");
    assert!(presence.starts_with("# Presence\r\n"), "{presence}");
    assert!(!presence.contains("# Server"), "{presence}");
    let mut con3 = server.client_resp3();
    let text3 = info(&mut con3, "server");
    assert!(text3.starts_with("# Server\r\n"), "{text3}");
    assert_eq!(info_field(&text3, "run_id"), Some(run_id));
}

/// DBSIZE counts the users online now: it grows with heartbeats, shrinks with OFFLINE and
/// drops once a TTL runs out (polled for up to 4 s after a 1 s TTL).
#[test]
fn dbsize_counts_users_online_now() {
    let server = TestServer::start();
    let mut con = server.client();
    let dbsize = |con: &mut redis::Connection| -> i64 {
        redis::cmd("DBSIZE").query(con).expect("DBSIZE succeeds")
    };
    assert_eq!(dbsize(&mut con), 0);
    assert_eq!(heartbeat(&mut con, "1", Some(1)), 1);
    assert_eq!(heartbeat(&mut con, "2", Some(300)), 1);
    assert_eq!(heartbeat(&mut con, "carol", Some(300)), 1);
    assert_eq!(heartbeat(&mut con, "dave", Some(300)), 1);
    assert_eq!(dbsize(&mut con), 4);
    let _: i64 = redis::cmd("OFFLINE").arg("dave").query(&mut con).unwrap();
    assert_eq!(dbsize(&mut con), 3);
    let dropped = poll(Duration::from_secs(4), || {
        (dbsize(&mut con) == 2).then_some(())
    });
    assert!(dropped.is_some(), "DBSIZE still counts the expired user");
    assert_eq!(status(&mut con, "1").0, "offline");
}

/// CONFIG GET answers save, appendonly and maxclients as a flat array in RESP2 and as a map in
/// RESP3, several patterns at once and globs included; unknown names give an empty reply.
#[test]
fn config_get() {
    let server = TestServer::start_with(&["--maxclients", "123"]);
    let mut con = server.client();
    let save: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query(&mut con)
        .unwrap();
    assert_eq!(save, ["save", ""]);
    let appendonly: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query(&mut con)
        .unwrap();
    assert_eq!(appendonly, ["appendonly", "no"]);
    let maxclients: Vec<String> = redis::cmd("config")
        .arg("get")
        .arg("MAXCLIENTS")
        .query(&mut con)
        .unwrap();
    assert_eq!(maxclients, ["maxclients", "123"]);
    let none: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("no-such-parameter")
        .query(&mut con)
        .unwrap();
    assert!(none.is_empty());
    let globbed: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("max*")
        .query(&mut con)
        .unwrap();
    assert!(
        globbed.chunks(2).any(|p| p == ["maxclients", "123"]),
        "{globbed:?}"
    );

    let mut con3 = server.client_resp3();
    let map: Value = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .arg("appendonly")
        .arg("maxclients")
        .query(&mut con3)
        .unwrap();
    let Value::Map(ref pairs) = map else {
        panic!("CONFIG GET in RESP3 is not a map: {map:?}")
    };
    assert_eq!(pairs.len(), 3);
    assert_eq!(as_text(map_get(&map, "save").unwrap()), "");
    assert_eq!(as_text(map_get(&map, "appendonly").unwrap()), "no");
    assert_eq!(as_text(map_get(&map, "maxclients").unwrap()), "123");
}

/// TIME, SELECT 0, ECHO and PING (with and without a message) answer as in Redis.
#[test]
fn time_select_echo_ping() {
    let server = TestServer::start();
    let mut con = server.client();
    let (secs, micros): (String, String) = redis::cmd("TIME").query(&mut con).unwrap();
    let secs: i64 = secs.parse().expect("seconds");
    let micros: i64 = micros.parse().expect("microseconds");
    assert!((0..1_000_000).contains(&micros));
    assert!(
        (secs - now_ms() / 1000).abs() <= 60,
        "TIME {secs} is the wall clock"
    );
    let ok: String = redis::cmd("SELECT").arg(0).query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    let echoed: Vec<u8> = redis::cmd("ECHO")
        .arg(&b"bin\x00ary\r\n"[..])
        .query(&mut con)
        .unwrap();
    assert_eq!(echoed, b"bin\x00ary\r\n");
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let hello: String = redis::cmd("PING").arg("hello").query(&mut con).unwrap();
    assert_eq!(hello, "hello");
    let mut stream = server.raw();
    roundtrip(&mut stream, b"PING\r\n", b"+PONG\r\n");
    roundtrip(&mut stream, b"PING \"a b\"\r\n", b"$3\r\na b\r\n");
    roundtrip(&mut stream, b"SELECT 0\r\n", b"+OK\r\n");
    stream.write_all(b"TIME\r\n").unwrap();
    let time = show(&read_lines(&mut stream, 5));
    let fields: Vec<&str> = time.split("\r\n").collect();
    assert_eq!(fields.len(), 6, "{time:?}");
    assert_eq!((fields[0], fields[1]), ("*2", "$10"), "{time:?}");
    assert_eq!(fields[3], format!("${}", fields[4].len()), "{time:?}");
}

/// FLUSHALL forgets every user, dense and side-table: STATUS is back to never seen, DBSIZE to
/// 0, and a heartbeat afterwards brings a user online as new.
#[test]
fn flushall_forgets_users() {
    let server = TestServer::start();
    let mut con = server.client();
    for user in ["1", "2", "uuid-like-user"] {
        assert_eq!(heartbeat(&mut con, user, Some(300)), 1);
    }
    let _: i64 = redis::cmd("OFFLINE").arg("2").query(&mut con).unwrap();
    let ok: String = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    for user in ["1", "2", "uuid-like-user"] {
        assert_eq!(
            status(&mut con, user),
            ("offline".to_string(), None),
            "{user}"
        );
    }
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(size, 0);
    let presence = info(&mut con, "presence");
    assert_eq!(info_field(&presence, "tracked_users").as_deref(), Some("0"));
    assert_eq!(heartbeat(&mut con, "1", None), 1);
    let ok: String = redis::cmd("FLUSHALL").arg("ASYNC").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("FLUSHALL").arg("LATER")),
        "ERR syntax error"
    );
}

/// QUIT answers OK and closes the connection, leaving the server up for others.
#[test]
fn quit_closes_the_connection() {
    let server = TestServer::start();
    let mut stream = server.raw();
    roundtrip(&mut stream, b"HEARTBEAT 3\r\n", b":1\r\n");
    roundtrip_then_closed(&mut stream, b"QUIT\r\nPING\r\n", b"+OK\r\n");
    let mut con = server.client();
    assert_eq!(status(&mut con, "3").0, "online");
}

/// RESET answers RESET, returns the connection to RESP2 and clears its name.
#[test]
fn reset_returns_to_resp2() {
    let server = TestServer::start();
    let mut stream = server.raw();
    stream
        .write_all(b"HELLO 3 SETNAME before-reset\r\nPING\r\n")
        .unwrap();
    let hello = read_until_suffix(&mut stream, b"+PONG\r\n");
    assert!(hello.starts_with(b"%7\r\n"), "{}", show(&hello));
    roundtrip(
        &mut stream,
        b"STATUS 999\r\n",
        b"%2\r\n$5\r\nstate\r\n$7\r\noffline\r\n$12\r\nlast_seen_ms\r\n_\r\n",
    );
    roundtrip(&mut stream, b"RESET\r\n", b"+RESET\r\n");
    roundtrip(
        &mut stream,
        b"STATUS 999\r\n",
        b"*2\r\n$7\r\noffline\r\n$-1\r\n",
    );
    roundtrip(&mut stream, b"CLIENT GETNAME\r\n", b"$-1\r\n");
}

/// SHUTDOWN sends no reply, closes the connection and makes the process exit with status 0,
/// logging that a client asked.
#[test]
fn shutdown_stops_the_server() {
    let mut server = TestServer::start();
    let mut con = server.client();
    assert_eq!(heartbeat(&mut con, "1", None), 1);
    let mut stream = server.raw();
    stream.write_all(b"SHUTDOWN\r\n").unwrap();
    assert_eq!(show(&read_until_closed(&mut stream)), "<CLOSED>");
    let exit = server
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits after SHUTDOWN");
    assert!(exit.success(), "exit status {exit:?}");
    let logged = poll(Duration::from_secs(5), || {
        server
            .log_lines()
            .iter()
            .any(|l| l.contains("SHUTDOWN requested"))
            .then_some(())
    });
    assert!(logged.is_some(), "log: {:?}", server.log_lines());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err(),
        "nothing listens after SHUTDOWN"
    );
}

/// SIGTERM (sent with `kill -TERM`) makes the server exit cleanly with status 0 and log that
/// it received SIGTERM.
#[test]
fn sigterm_exits_cleanly() {
    let mut server = TestServer::start();
    let mut con = server.client();
    assert_eq!(heartbeat(&mut con, "1", None), 1);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let exit = server
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits after SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    let logged = poll(Duration::from_secs(5), || {
        let lines = server.log_lines();
        (lines.iter().any(|l| l.contains("received SIGTERM"))
            && lines.iter().any(|l| l.contains("presenced stopped")))
        .then_some(())
    });
    assert!(logged.is_some(), "log: {:?}", server.log_lines());
}

/// INFO presence shows what the shards' one door for changes counted: a user coming online,
/// one logging out, one whose TTL ran out, and the transitions those made.
#[test]
fn info_counts_changes_by_kind() {
    let server = TestServer::start();
    let mut con = server.client();
    let field = |con: &mut redis::Connection, name: &str| -> u64 {
        info_field(&info(con, "presence"), name)
            .unwrap_or_else(|| panic!("INFO presence has {name}"))
            .parse()
            .expect("a counter")
    };
    assert_eq!(field(&mut con, "users_came_online_total"), 0);
    assert_eq!(heartbeat(&mut con, "1", Some(300)), 1);
    assert_eq!(heartbeat(&mut con, "1", Some(300)), 0);
    assert_eq!(heartbeat(&mut con, "2", Some(1)), 1);
    let _: i64 = redis::cmd("OFFLINE").arg("1").query(&mut con).unwrap();
    let expired = poll(Duration::from_secs(5), || {
        (field(&mut con, "users_went_offline_timeout_total") == 1).then_some(())
    });
    assert!(expired.is_some(), "user 2's TTL ran out and was counted");
    assert_eq!(field(&mut con, "users_came_online_total"), 2);
    assert_eq!(field(&mut con, "users_went_offline_logout_total"), 1);
    assert_eq!(field(&mut con, "presence_transitions_total"), 4);
    assert!(field(&mut con, "store_commits_total") >= 5);
}

/// The INFO sections monitoring agents and client test fixtures read unconditionally: `cpu`
/// (`used_cpu_*` as seconds), `errorstats` (by error kind), `cluster` (`cluster_enabled:0`);
/// several sections in one call give just those, and `everything` gives all.
#[test]
fn info_sections_tools_read() {
    let server = TestServer::start();
    let mut con = server.client();
    let refused: redis::RedisResult<()> = redis::cmd("NOSUCHCOMMAND").query(&mut con);
    assert!(refused.is_err());
    let refused: redis::RedisResult<()> = redis::cmd("HGET")
        .arg("user:1:presence")
        .arg("f")
        .query(&mut con);
    assert!(refused.is_ok(), "a missing key is no WRONGTYPE");
    let _: () = redis::cmd("SET")
        .arg("user:1:presence")
        .arg("online")
        .query(&mut con)
        .unwrap();
    let refused: redis::RedisResult<()> = redis::cmd("HGET")
        .arg("user:1:presence")
        .arg("f")
        .query(&mut con);
    assert!(refused.is_err());
    let text = info(&mut con, "everything");
    for field in [
        "used_cpu_sys",
        "used_cpu_user",
        "used_cpu_sys_children",
        "used_cpu_user_children",
        "used_cpu_sys_main_thread",
        "used_cpu_user_main_thread",
    ] {
        let value = info_field(&text, field).unwrap_or_else(|| panic!("{field}"));
        assert!(value.parse::<f64>().is_ok(), "{field}:{value}");
    }
    assert_eq!(info_field(&text, "cluster_enabled").as_deref(), Some("0"));
    assert_eq!(
        info_field(&text, "errorstat_ERR").as_deref(),
        Some("count=1")
    );
    assert_eq!(
        info_field(&text, "errorstat_WRONGTYPE").as_deref(),
        Some("count=1")
    );
    assert_eq!(
        info_field(&text, "total_error_replies").as_deref(),
        Some("2")
    );
    let two: String = redis::cmd("INFO")
        .arg("cpu")
        .arg("cluster")
        .query(&mut con)
        .unwrap();
    let headings: Vec<&str> = two.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(headings, ["# CPU", "# Cluster"]);
}

/// CLIENT LIST shows real figures for what Redis shows: the socket's `fd`, the query buffer's
/// free room, `omem` and `tot-mem`, and `multi=` as the count of queued commands.
#[test]
fn client_list_shows_real_buffers() {
    let server = TestServer::start();
    let mut con = server.client();
    let _: String = redis::cmd("PING").query(&mut con).unwrap();
    let field = |line: &str, name: &str| -> String {
        line.split(' ')
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {line}"))
            .to_string()
    };
    let line: String = redis::cmd("CLIENT").arg("INFO").query(&mut con).unwrap();
    assert!(field(&line, "fd").parse::<i32>().unwrap() > 2, "{line}");
    assert!(
        field(&line, "qbuf-free").parse::<u64>().unwrap() > 0,
        "{line}"
    );
    assert!(
        field(&line, "tot-mem").parse::<u64>().unwrap() > 1024,
        "{line}"
    );
    assert_eq!(field(&line, "multi"), "-1");
    let mut raw = server.raw();
    crate::util::roundtrip(&mut raw, b"MULTI\r\n", b"+OK\r\n");
    crate::util::roundtrip(&mut raw, b"PING\r\n", b"+QUEUED\r\n");
    crate::util::roundtrip(&mut raw, b"PING\r\n", b"+QUEUED\r\n");
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
    let queued = list
        .lines()
        .find(|l| !l.contains("cmd=client|list"))
        .expect("the transaction's client");
    assert_eq!(field(queued, "multi"), "2", "{queued}");
}
