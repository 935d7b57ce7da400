//! `presenced /path/presenced.conf`: settings read from a config file in Redis's style, the
//! command line overriding them, bad lines refused by number, and `CONFIG REWRITE` writing the
//! role and runtime settings back (alone, and inside Sentinel's reconfiguration transaction)
//! so a restarted follower stays a follower.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::replication::{COMMON, caught_up, leader};
use crate::support::{TestServer, unique_temp_dir};
use crate::util::{info, info_field, poll};

fn write_conf(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("presenced.conf");
    std::fs::write(&path, text).unwrap();
    path
}

fn config_get(con: &mut redis::Connection, name: &str) -> String {
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query(con)
        .unwrap();
    pair.get(1).cloned().unwrap_or_default()
}

fn start(conf: &Path, dir: &Path, extra: &[&str]) -> TestServer {
    let args = [COMMON, extra].concat();
    TestServer::start_from(
        Some(conf.to_str().unwrap()),
        dir.join("data").to_str().unwrap(),
        &args,
    )
}

/// The file's settings apply, the command line overrides them, and INFO names the file.
#[test]
fn settings_come_from_the_file_and_flags_override_them() {
    let dir = unique_temp_dir();
    let conf = write_conf(
        &dir,
        "# presenced test config\n\
         ttl 45\n\
         offline-grace 3\n\
         slowlog-max-len 64\n\
         notify-keyspace-events \"Egx\"\n\
         min-slaves-max-lag 7\n",
    );
    let server = start(&conf, &dir, &["--slowlog-max-len", "32"]);
    let mut con = server.client();
    assert_eq!(config_get(&mut con, "ttl"), "45");
    assert_eq!(config_get(&mut con, "offline-grace"), "3");
    assert_eq!(config_get(&mut con, "slowlog-max-len"), "32");
    assert_eq!(config_get(&mut con, "notify-keyspace-events"), "gxE");
    assert_eq!(config_get(&mut con, "min-replicas-max-lag"), "7");
    let server_info = info(&mut con, "server");
    assert_eq!(
        info_field(&server_info, "config_file").as_deref(),
        conf.to_str()
    );
}

/// A bad line stops the server before it starts, with an error naming the file and the line.
#[test]
fn a_bad_line_is_refused_by_its_number() {
    let dir = unique_temp_dir();
    for (text, expected) in [
        (
            "ttl 45\nttll 30\n",
            "line 2 ('ttll 30'): unknown setting 'ttll'",
        ),
        (
            "# ok\nport many\n",
            "line 2 ('port many'): invalid value 'many'",
        ),
        (
            "huge-pages perhaps\n",
            "line 1 ('huge-pages perhaps'): expected yes or no",
        ),
        ("requirepass \"open\n", "line 1: unbalanced quotes"),
    ] {
        let conf = write_conf(&dir, text);
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_presenced"))
            .arg(&conf)
            .args(["--port", "0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{text:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{}: {expected}", conf.display())),
            "{text:?}: {stderr}"
        );
    }
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_presenced"))
        .arg(dir.join("nope.conf"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read the config file"));
}

/// CONFIG SET then CONFIG REWRITE: the file keeps its comments and other lines, gains the new
/// values, and a restart from it runs with them. Without a file REWRITE is Redis's error.
#[test]
fn config_rewrite_round_trips_runtime_settings() {
    let dir = unique_temp_dir();
    let conf = write_conf(
        &dir,
        "# keep this comment\nttl 45\n\n# and this one\nmaxmemory 1gb\n",
    );
    let server = start(&conf, &dir, &[]);
    let mut con = server.client();
    for (name, value) in [
        ("maxmemory", "100mb"),
        ("slowlog-max-len", "64"),
        ("min-replicas-max-lag", "5"),
    ] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query(&mut con)
            .unwrap();
    }
    let _: () = redis::cmd("CONFIG").arg("REWRITE").query(&mut con).unwrap();
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.starts_with("# keep this comment\nttl 45\n\n# and this one\nmaxmemory 104857600\n"),
        "{text}"
    );
    assert!(text.contains("\nslowlog-max-len 64\n"), "{text}");
    assert!(text.contains("\nmin-replicas-max-lag 5\n"), "{text}");
    assert!(!text.contains("replicaof"), "{text}");
    // Defaults not in the file are not added.
    assert!(!text.contains("slowlog-log-slower-than"), "{text}");
    drop(con);
    drop(server);

    let again = start(&conf, &dir, &[]);
    let mut con = again.client();
    assert_eq!(config_get(&mut con, "maxmemory"), "104857600");
    assert_eq!(config_get(&mut con, "slowlog-max-len"), "64");
    assert_eq!(config_get(&mut con, "min-replicas-max-lag"), "5");
    assert_eq!(config_get(&mut con, "ttl"), "45");

    let plain = TestServer::start();
    let mut con = plain.client();
    let err = redis::cmd("CONFIG")
        .arg("REWRITE")
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("The server is running without a config file"),
        "{err}"
    );
}

fn role_of(con: &mut redis::Connection) -> (String, Option<String>) {
    let replication = info(con, "replication");
    (
        info_field(&replication, "role").unwrap_or_default(),
        info_field(&replication, "master_port"),
    )
}

/// Sentinel's reconfiguration (MULTI, SLAVEOF, CONFIG REWRITE, CLIENT KILL TYPE normal and
/// pubsub, EXEC) persists the role: the server restarted from its file follows the same
/// leader and resumes; promoted and rewritten again, the file loses its replicaof line and a
/// restart leads.
#[test]
fn config_rewrite_persists_the_role_a_restart_keeps() {
    let leader = leader();
    let mut l = leader.client();
    let _: i64 = redis::cmd("HEARTBEAT").arg("41").query(&mut l).unwrap();
    let dir = unique_temp_dir();
    let conf = write_conf(&dir, "# a node Sentinel manages\nttl 60\n");
    let node = start(&conf, &dir, &[]);
    let mut n = node.client();
    let port = leader.port.to_string();
    let replies: Vec<redis::Value> = redis::pipe()
        .atomic()
        .cmd("SLAVEOF")
        .arg("127.0.0.1")
        .arg(&port)
        .cmd("CONFIG")
        .arg("REWRITE")
        .cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut n)
        .unwrap();
    assert_eq!(replies.len(), 4, "{replies:?}");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.starts_with("# a node Sentinel manages\nttl 60\n")
            && text.contains(&format!("\nreplicaof 127.0.0.1 {port}\n")),
        "{text}"
    );
    let mut n = node.client();
    caught_up(&mut l, &mut n);
    drop(n);
    drop(node);

    // Restarted from the same file and directory: a follower of the same leader at once.
    let node = start(&conf, &dir, &[]);
    let mut n = node.client();
    assert_eq!(role_of(&mut n), ("slave".to_string(), Some(port.clone())));
    let _: i64 = redis::cmd("HEARTBEAT").arg("42").query(&mut l).unwrap();
    caught_up(&mut l, &mut n);
    let seen = poll(Duration::from_secs(10), || {
        let (state, _) = crate::util::status(&mut n, "42");
        (state == "online").then_some(())
    });
    assert!(
        seen.is_some(),
        "the restarted follower never saw the new heartbeat"
    );

    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut n)
        .unwrap();
    let _: () = redis::cmd("CONFIG").arg("REWRITE").query(&mut n).unwrap();
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(!text.contains("replicaof"), "{text}");
    drop(n);
    drop(node);
    let node = start(&conf, &dir, &[]);
    let mut n = node.client();
    assert_eq!(role_of(&mut n).0, "master");
}
