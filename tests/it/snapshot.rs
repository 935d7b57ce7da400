//! Snapshots end to end: SIGKILL at random moments never loses an acknowledged heartbeat nor
//! moves a last-seen backwards; a damaged newest snapshot is named region by region and the
//! previous one is loaded instead; 10,000,000 users survive a restart exactly; and SAVE,
//! BGSAVE, LASTSAVE, INFO persistence, SHUTDOWN and SIGTERM save (or not) as documented.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Value;

use crate::support::{TestServer, error_text, heavy_test_lock, unique_temp_dir};
use crate::util::{as_text, info, info_field, now_ms, parse_status, poll, read_until_closed};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Snapshot files (`presenced-<ms>.snap`) in `dir`, newest first.
fn snap_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("snapshot dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("presenced-") && name.ends_with(".snap")
        })
        .collect();
    files.sort();
    files.reverse();
    files
}

/// Names of temporary files (a save in progress, or one a crash interrupted) in `dir`.
fn tmp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("snapshot dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("a file name")
        .to_string()
}

/// `INFO persistence` field `field`, which must be present.
fn persistence_field(con: &mut redis::Connection, field: &str) -> String {
    let text = info(con, "persistence");
    info_field(&text, field).unwrap_or_else(|| panic!("no {field} in INFO persistence:\n{text}"))
}

fn persistence_u64(con: &mut redis::Connection, field: &str) -> u64 {
    let value = persistence_field(con, field);
    value
        .parse()
        .unwrap_or_else(|_| panic!("{field}:{value} is not a number"))
}

/// Sends `kill -<signal> <pid>`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// SIGKILLs the server, reaps it (so its files are final) and drops it.
fn kill9(mut server: TestServer) {
    signal(server.pid(), "-9");
    server
        .wait_exit(Duration::from_secs(10))
        .expect("a SIGKILLed server is gone within 10 s");
}

/// Sends SHUTDOWN (with `args`) over raw TCP and waits for the process to exit with status 0.
fn shutdown(server: &mut TestServer, args: &str) {
    let mut stream = server.raw();
    stream
        .write_all(format!("SHUTDOWN{args}\r\n").as_bytes())
        .expect("write SHUTDOWN");
    let reply = read_until_closed(&mut stream);
    assert_eq!(reply, b"<CLOSED>", "SHUTDOWN{args} sends no reply");
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits after SHUTDOWN");
    assert!(status.success(), "SHUTDOWN{args} exits with {status}");
}

/// `(state, last_seen_ms)` of every user in `names`, in order, by MSTATUS in batches.
fn mstatus(con: &mut redis::Connection, names: &[String]) -> Vec<(String, Option<i64>)> {
    let mut out = Vec::with_capacity(names.len());
    for batch in names.chunks(10_000) {
        let replies: Vec<Value> = redis::cmd("MSTATUS")
            .arg(batch)
            .query(con)
            .expect("MSTATUS succeeds");
        assert_eq!(replies.len(), batch.len());
        out.extend(replies.iter().map(parse_status));
    }
    out
}

/// `presenced --check-snapshot file`: (exit success, stdout).
fn check_snapshot(file: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .arg("--check-snapshot")
        .arg(file)
        .output()
        .expect("presenced --check-snapshot runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// One line of `--check-snapshot`: a region's kind (`header`, `dense`, `side`, `extras`,
/// `trailer`), shard and index (records only), its byte range and its payload's.
#[derive(Clone, Debug)]
struct Region {
    kind: String,
    shard: u32,
    index: u64,
    bytes: std::ops::Range<usize>,
    payload: std::ops::Range<usize>,
}

impl Region {
    /// The name the loader gives this region in errors.
    fn error_name(&self) -> String {
        match self.kind.as_str() {
            "dense" => format!("dense chunk {} of shard {}", self.index, self.shard),
            "side" => format!("side table of shard {}", self.shard),
            "extras" => format!("extras table of shard {}", self.shard),
            other => other.to_string(),
        }
    }
}

fn parse_range(text: &str) -> std::ops::Range<usize> {
    let (a, b) = text.split_once("..").expect("a byte range");
    a.parse().expect("range start")..b.parse().expect("range end")
}

/// The regions `--check-snapshot` lists for a good file, in file order.
fn regions(file: &Path) -> Vec<Region> {
    let (ok, out) = check_snapshot(file);
    assert!(ok, "{} is not a good snapshot:\n{out}", file.display());
    let mut regions = Vec::new();
    for line in out.lines() {
        let mut words = line.split_whitespace();
        let kind = words.next().unwrap_or("").to_string();
        if kind == "ok" {
            continue;
        }
        let mut region = Region {
            kind,
            shard: 0,
            index: 0,
            bytes: 0..0,
            payload: 0..0,
        };
        for word in words {
            match word.split_once('=') {
                Some(("shard", v)) => region.shard = v.parse().expect("shard"),
                Some(("index", v)) => region.index = v.parse().expect("index"),
                Some(("bytes", v)) => region.bytes = parse_range(v),
                Some(("payload", v)) => region.payload = parse_range(v),
                _ => {}
            }
        }
        regions.push(region);
    }
    regions
}

/// A tiny deterministic random generator (xorshift64*), seeded and printed by each test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A presenced process started with exactly the flags given (no test defaults), for the cases
/// `TestServer` cannot express: a process expected to refuse to start, and a server with a
/// `--capacity` other than the test default.
struct Process {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    port: std::sync::mpsc::Receiver<u16>,
}

impl Process {
    fn spawn(args: &[&str]) -> Process {
        let (child, log, port) = crate::support::spawn_logged(args);
        Process { child, log, port }
    }

    fn wait_listening(&self, timeout: Duration) -> u16 {
        self.port
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("presenced did not listen:\n{}", self.log().join("\n")))
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the log thread read the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn warnings(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// 1. SIGKILL at random moments
// ---------------------------------------------------------------------------------------------

/// Heartbeats the load thread got an acknowledgement for: users `users` (indices into the
/// name list), sent at or after `sent_ms`, acknowledged at `acked_ms` (client wall clock).
struct Acked {
    users: std::ops::Range<usize>,
    sent_ms: i64,
    acked_ms: i64,
}

/// Heartbeats users until the server dies (or `stop` is set); returns every acknowledged one.
fn crash_load(
    url: String,
    names: Arc<Vec<String>>,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Vec<Acked> {
    const BATCH: usize = 1_000;
    let mut acked = Vec::new();
    let Ok(mut con) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
        return acked;
    };
    let mut rng = Rng(seed | 1);
    let mut cursor = rng.below(names.len() as u64) as usize;
    let mut iteration = 0u64;
    while !stop.load(Ordering::Relaxed) {
        iteration += 1;
        let end = (cursor + BATCH).min(names.len());
        let sent_ms = now_ms();
        let result: redis::RedisResult<i64> = redis::cmd("MHEARTBEAT")
            .arg(&names[cursor..end])
            .query(&mut con);
        if result.is_err() {
            return acked;
        }
        acked.push(Acked {
            users: cursor..end,
            sent_ms,
            acked_ms: now_ms(),
        });
        cursor = if end == names.len() { 0 } else { end };
        if !iteration.is_multiple_of(4) {
            continue;
        }
        // Now and then: a long TTL, a device (the extras table), a manual status.
        let user = rng.below(names.len() as u64) as usize;
        let mut cmd = redis::cmd("HEARTBEAT");
        cmd.arg(&names[user]);
        match rng.below(3) {
            0 => cmd.arg("TTL").arg(300),
            1 => cmd.arg("DEVICE").arg(format!("d{}", rng.below(3))),
            _ => cmd.arg("STATUS").arg("busy"),
        };
        let sent_ms = now_ms();
        if cmd.query::<i64>(&mut con).is_err() {
            return acked;
        }
        acked.push(Acked {
            users: user..user + 1,
            sent_ms,
            acked_ms: now_ms(),
        });
        let user = rng.below(names.len() as u64) as usize;
        let manual = ["away", "busy", "dnd", "none"][rng.below(4) as usize];
        let set: redis::RedisResult<Value> = redis::cmd("SETSTATUS")
            .arg(&names[user])
            .arg(manual)
            .query(&mut con);
        if set.is_err() {
            return acked;
        }
    }
    acked
}

/// SIGKILL at 24 random moments (100-700 ms into a heartbeat load, snapshots every 200 ms, so
/// some land while a snapshot is being written) never makes a restart fail or reject a file,
/// never moves a user's last-seen backwards, and never loses a heartbeat acknowledged before
/// the loaded snapshot's `snapshot_loaded_created_ms`.
#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_heartbeat() {
    const KILLS: usize = 24;
    // Dense IDs spread over the whole 1,048,576-slot test capacity, so every chunk is touched
    // and a snapshot (~8 MB) takes long enough for some kills to land inside one.
    const DENSE_USERS: usize = 20_000;
    const SIDE_USERS: usize = 500;
    let _heavy = heavy_test_lock();
    let seed = now_ms() as u64;
    println!("crash test seed {seed}");
    let mut rng = Rng(seed | 1);
    let dir = unique_temp_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let args = ["--snapshot-interval", "0.2", "--shards", "2"];
    let names: Arc<Vec<String>> = Arc::new(
        (0..DENSE_USERS)
            .map(|i| (i * 52).to_string())
            .chain((0..SIDE_USERS).map(|i| format!("side-{i}")))
            .collect(),
    );

    let mut all_acked: Vec<Acked> = Vec::new();
    let mut applied = 0usize;
    // The newest heartbeat each user must be found to have, and the largest last-seen seen.
    let mut expected_min: Vec<i64> = vec![0; names.len()];
    let mut max_seen: Vec<Option<i64>> = vec![None; names.len()];
    let mut previous_created_ms = 0u64;
    let mut seen_tmp: HashSet<String> = HashSet::new();
    let mut kills_during_write = 0;
    let mut loads = 0;
    let mut rounds: Vec<String> = Vec::new();
    // Listed before each restart: the restarted server may already be writing a newer one.
    let mut files: Vec<PathBuf> = Vec::new();
    let mut server = TestServer::start_in(&dir_arg, &args);
    for round in 0..=KILLS {
        // What the restarted server loaded, against what the directory held at the kill.
        let mut con = server.client();
        let text = info(&mut con, "persistence");
        let field = |name: &str| info_field(&text, name).unwrap_or_default();
        let loaded_file = field("snapshot_loaded_file");
        let created_ms: u64 = field("snapshot_loaded_created_ms").parse().expect("ms");
        let context = |rounds: &[String]| {
            format!(
                "round {round} (seed {seed}): loaded {loaded_file:?} created_ms {created_ms}, \
                 files {files:?}\nrounds so far:\n{}\nserver log:\n{}",
                rounds.join("\n"),
                server.log_lines().join("\n")
            )
        };
        assert_eq!(field("snapshots_rejected"), "0", "{}", context(&rounds));
        match files.first() {
            Some(newest) => {
                assert_eq!(
                    loaded_file,
                    newest.display().to_string(),
                    "the newest snapshot is loaded; {}",
                    context(&rounds)
                );
                loads += 1;
            }
            None => assert_eq!(loaded_file, "", "{}", context(&rounds)),
        }
        assert!(
            created_ms >= previous_created_ms,
            "the loaded snapshot is older than the one loaded before ({previous_created_ms}); {}",
            context(&rounds)
        );
        previous_created_ms = created_ms;
        while applied < all_acked.len() && all_acked[applied].acked_ms < created_ms as i64 {
            let acked = &all_acked[applied];
            for user in acked.users.clone() {
                expected_min[user] = expected_min[user].max(acked.sent_ms);
            }
            applied += 1;
        }

        // Every user: never backwards, and every heartbeat acknowledged before the snapshot.
        let statuses = mstatus(&mut con, &names);
        let mut problems = Vec::new();
        for (user, (state, last_seen)) in statuses.iter().enumerate() {
            if let Some(max) = max_seen[user]
                && last_seen.is_none_or(|seen| seen < max)
            {
                problems.push(format!(
                    "{}: last-seen {last_seen:?} ({state}) went back from {max}",
                    names[user]
                ));
            }
            if expected_min[user] > 0 && last_seen.is_none_or(|seen| seen < expected_min[user]) {
                problems.push(format!(
                    "{}: last-seen {last_seen:?} ({state}) misses a heartbeat sent at {} and \
                     acknowledged before the snapshot",
                    names[user], expected_min[user]
                ));
            }
            if last_seen.is_some() {
                max_seen[user] = max_seen[user].max(*last_seen);
            }
        }
        let known = max_seen.iter().filter(|s| s.is_some()).count();
        assert!(
            problems.is_empty(),
            "{} users wrong, first ones:\n{}\n{}",
            problems.len(),
            problems[..problems.len().min(10)].join("\n"),
            context(&rounds)
        );
        drop(con);
        if round == KILLS {
            break;
        }

        // Load, then SIGKILL at a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let (url, names, stop, seed) = (
                server.url(),
                Arc::clone(&names),
                Arc::clone(&stop),
                rng.next(),
            );
            std::thread::spawn(move || crash_load(url, names, seed, stop))
        };
        // Every third kill waits for a snapshot to be in progress (its temporary exists) after
        // the random delay, so that some kills surely land inside a write.
        let delay_ms = 100 + rng.below(601);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let aimed = round % 3 == 2;
        if aimed {
            let deadline = Instant::now() + Duration::from_secs(2);
            while tmp_files(&dir).iter().all(|t| seen_tmp.contains(t)) && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let saves = server
            .log_lines()
            .iter()
            .filter(|l| l.contains("snapshot saved"))
            .count();
        kill9(server);
        stop.store(true, Ordering::Relaxed);
        let acked = load.join().expect("the load thread ends");
        let tmp = tmp_files(&dir);
        assert!(
            tmp.len() <= 1,
            "temporaries of interrupted saves pile up: {tmp:?}; {}",
            rounds.join("\n")
        );
        let snaps = snap_files(&dir);
        // Three files only if the kill fell between a rename and the removal of the oldest.
        assert!(
            snaps.len() <= 3,
            "only the newest two snapshots are kept: {snaps:?}"
        );
        let during_write = tmp.iter().any(|t| !seen_tmp.contains(t));
        kills_during_write += usize::from(during_write);
        seen_tmp.extend(tmp.iter().cloned());
        rounds.push(format!(
            "round {round}: loaded created_ms {created_ms}, {known} users known, kill after \
             {delay_ms} ms{}, {saves} saves, {} acknowledged commands, {} snapshots and \
             temporaries {tmp:?} at the kill{}",
            if aimed { " + waiting for a save" } else { "" },
            acked.len(),
            snaps.len(),
            if during_write {
                " (killed while writing)"
            } else {
                ""
            }
        ));
        all_acked.extend(acked);
        files = snaps;
        server = TestServer::start_in(&dir_arg, &args);
    }
    drop(server);
    println!(
        "crash test: {KILLS} SIGKILLs, {kills_during_write} while a snapshot was being written, \
         {loads} restarts loaded a snapshot, {} heartbeat commands acknowledged, {} of them \
         before a loaded snapshot\n{}",
        all_acked.len(),
        applied,
        rounds.join("\n")
    );
    assert!(loads >= KILLS / 2, "too few restarts loaded a snapshot");
    assert!(
        kills_during_write > 0,
        "no kill landed while a snapshot was being written"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// 2. Damaged snapshots
// ---------------------------------------------------------------------------------------------

/// Flags of every server of the corruption test: two shards, so region names are fixed.
const CORRUPTION_ARGS: [&str; 6] = ["--snapshot-interval", "0", "--shards", "2", "--ttl", "300"];

/// The users of the corruption test: dense IDs in both shards and in two chunks of shard 0,
/// side-table IDs, and users with devices and manual statuses (the extras table).
fn corruption_users() -> Vec<String> {
    (1..=400)
        .map(|i| i.to_string())
        .chain((600_000..600_010).map(|i| i.to_string()))
        .chain((0..40).map(|i| format!("side-{i}")))
        .chain((900..910).map(|i| i.to_string()))
        .collect()
}

/// A server on `dir` must have skipped B (logging `snapshot rejected: <B>: <region>`) and
/// loaded A, whose users read exactly `a_dump`.
fn assert_fell_back(
    dir: &Path,
    a: &Path,
    b: &Path,
    region: &dyn Fn(&str) -> bool,
    what: &str,
    a_dump: &[(String, Option<i64>)],
) {
    let dir_arg = dir.to_string_lossy().into_owned();
    let mut server = TestServer::start_in(&dir_arg, &CORRUPTION_ARGS);
    server.expect_log("snapshot rejected: ");
    let prefix = format!("snapshot rejected: {}: ", b.display());
    let rejections: Vec<String> = server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("snapshot rejected"))
        .collect();
    assert_eq!(rejections.len(), 1, "{what}: {rejections:?}");
    let named = rejections[0]
        .split_once(&prefix)
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_else(|| panic!("{what}: the rejection does not name B: {rejections:?}"));
    let (name, _problem) = named.split_once(": ").expect("region: problem");
    assert!(
        region(name),
        "{what}: wrong region named: {}",
        rejections[0]
    );
    let mut con = server.client();
    assert_eq!(
        persistence_field(&mut con, "snapshot_loaded_file"),
        a.display().to_string(),
        "{what}: A is loaded"
    );
    assert_eq!(
        persistence_field(&mut con, "snapshots_rejected"),
        "1",
        "{what}"
    );
    assert_eq!(
        mstatus(&mut con, &corruption_users()),
        a_dump,
        "{what}: A's data"
    );
    println!("{what}: {}", rejections[0]);
}

/// One byte flipped in each region of the newest snapshot B (header, a dense chunk, a side
/// table, an extras table, a record header, the trailer) or B truncated: the server still
/// starts, logs `snapshot rejected: <B>: <that region>`, and loads the older snapshot A; with
/// A gone, `--require-snapshot` refuses to start naming B, and without it the server starts
/// empty.
#[test]
fn a_damaged_newest_snapshot_is_named_by_region_and_the_previous_one_loads() {
    let dir = unique_temp_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let users = corruption_users();
    let dense: Vec<&String> = users.iter().filter(|u| !u.starts_with("side")).collect();

    // Snapshot A, then different data in snapshot B.
    let mut server = TestServer::start_in(&dir_arg, &CORRUPTION_ARGS);
    let mut con = server.client();
    let _: i64 = redis::cmd("MHEARTBEAT")
        .arg(&users)
        .query(&mut con)
        .unwrap();
    for (user, status) in [("900", "dnd"), ("901", "busy"), ("side-1", "away")] {
        let _: Value = redis::cmd("SETSTATUS")
            .arg(user)
            .arg(status)
            .query(&mut con)
            .unwrap();
    }
    for (user, device) in [("902", "phone"), ("903", "tablet"), ("side-2", "web")] {
        let _: i64 = redis::cmd("HEARTBEAT")
            .arg(user)
            .arg("DEVICE")
            .arg(device)
            .query(&mut con)
            .unwrap();
    }
    let _: Value = redis::cmd("SAVE").query(&mut con).unwrap();
    let a_dump = mstatus(&mut con, &users);
    std::thread::sleep(Duration::from_millis(5));
    let _: i64 = redis::cmd("MHEARTBEAT")
        .arg(&dense[..200])
        .query(&mut con)
        .unwrap();
    for (user, status) in [("900", "none"), ("904", "away"), ("side-3", "dnd")] {
        let _: Value = redis::cmd("SETSTATUS")
            .arg(user)
            .arg(status)
            .query(&mut con)
            .unwrap();
    }
    let _: i64 = redis::cmd("OFFLINE").arg("7").query(&mut con).unwrap();
    let _: Value = redis::cmd("SAVE").query(&mut con).unwrap();
    let b_dump = mstatus(&mut con, &users);
    assert_ne!(a_dump, b_dump, "A and B hold different data");
    drop(con);
    shutdown(&mut server, " NOSAVE");
    drop(server);
    let files = snap_files(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    let (b, a) = (files[0].clone(), files[1].clone());

    // The intact pair: B loads.
    {
        let server = TestServer::start_in(&dir_arg, &CORRUPTION_ARGS);
        let mut con = server.client();
        assert_eq!(
            persistence_field(&mut con, "snapshot_loaded_file"),
            b.display().to_string()
        );
        assert_eq!(persistence_field(&mut con, "snapshots_rejected"), "0");
        assert_eq!(mstatus(&mut con, &users), b_dump, "B's data");
    }

    let pristine = std::fs::read(&b).expect("read B");
    let regions = regions(&b);
    let find = |kind: &str, pick: &dyn Fn(&Region) -> bool| -> Region {
        regions
            .iter()
            .find(|r| r.kind == kind && pick(r))
            .unwrap_or_else(|| panic!("no {kind} region to damage in {regions:?}"))
            .clone()
    };
    let header = find("header", &|_| true);
    let trailer = find("trailer", &|_| true);
    let mut damaged_regions = vec![
        (header.clone(), header.bytes.start),
        (header.clone(), header.bytes.start + 20),
        (header.clone(), header.bytes.end - 1),
        (trailer.clone(), trailer.bytes.start),
        (trailer.clone(), trailer.bytes.start + 3),
        (trailer.clone(), trailer.bytes.start + 10),
        (trailer.clone(), trailer.bytes.end - 1),
    ];
    for (kind, shard) in [
        ("dense", 0),
        ("dense", 1),
        ("side", 0),
        ("side", 1),
        ("extras", 0),
        ("extras", 1),
    ] {
        let region = find(kind, &|r| r.shard == shard && !r.payload.is_empty());
        let middle = (region.payload.start + region.payload.end) / 2;
        damaged_regions.push((region.clone(), middle));
        damaged_regions.push((region.clone(), region.payload.end - 1));
    }
    // Shard 0's second chunk (IDs 600,000..), so a chunk other than 0 is named too.
    let far = find("dense", &|r| r.shard == 0 && r.index > 0);
    damaged_regions.push((far.clone(), far.payload.start));
    for (region, at) in damaged_regions {
        let mut bytes = pristine.clone();
        bytes[at] ^= 0x10;
        std::fs::write(&b, &bytes).expect("write damaged B");
        let (ok, report) = check_snapshot(&b);
        assert!(!ok, "--check-snapshot passes B with byte {at} flipped");
        assert!(
            report.starts_with(&format!("bad {}: ", b.display())),
            "{report}"
        );
        let name = region.error_name();
        assert_fell_back(
            &dir,
            &a,
            &b,
            &|named| named == name,
            &format!("byte {at} of {name} flipped"),
            &a_dump,
        );
    }

    // A damaged record header: a shard number no shard has.
    let record = find("dense", &|r| r.shard == 1);
    let mut bytes = pristine.clone();
    bytes[record.bytes.start + 4] ^= 0x80;
    std::fs::write(&b, &bytes).expect("write damaged B");
    let at = record.bytes.start;
    assert_fell_back(
        &dir,
        &a,
        &b,
        &|named| named == format!("record at byte {at}"),
        "a record header's shard damaged",
        &a_dump,
    );
    // A record header whose damage still looks plausible (shard 1 -> 0): the body CRC in the
    // trailer catches it.
    let mut bytes = pristine.clone();
    bytes[record.bytes.start + 1] ^= 0x01;
    std::fs::write(&b, &bytes).expect("write damaged B");
    assert_fell_back(
        &dir,
        &a,
        &b,
        &|named| named == "trailer",
        "a record moved to another shard",
        &a_dump,
    );

    // Truncations: the trailer is missing, or a record is cut short.
    let cut_names = |named: &str| {
        named == "trailer"
            || named.starts_with("record at byte ")
            || named.starts_with("dense chunk ")
            || named.starts_with("side table ")
            || named.starts_with("extras table ")
    };
    for (len, what) in [
        (pristine.len() - 1, "B truncated by 1 byte"),
        (pristine.len() / 2, "B truncated to half"),
        (header.bytes.end + 3, "B truncated after its header"),
    ] {
        std::fs::write(&b, &pristine[..len]).expect("truncate B");
        assert!(!check_snapshot(&b).0, "{what}: --check-snapshot passes");
        assert_fell_back(&dir, &a, &b, &cut_names, what, &a_dump);
    }
    std::fs::write(&b, &pristine[..10]).expect("truncate B");
    assert_fell_back(
        &dir,
        &a,
        &b,
        &|named| named == "header",
        "B truncated to 10 bytes",
        &a_dump,
    );
    std::fs::write(&b, b"").expect("empty B");
    assert_fell_back(&dir, &a, &b, &|named| named == "file", "B empty", &a_dump);

    // B damaged and A gone: --require-snapshot refuses to start, naming B.
    let mut bytes = pristine.clone();
    let chunk = find("dense", &|r| r.shard == 1);
    bytes[chunk.payload.start] ^= 0x01;
    std::fs::write(&b, &bytes).expect("write damaged B");
    std::fs::remove_file(&a).expect("remove A");
    let mut refused = Process::spawn(&[
        "--port",
        "0",
        "--capacity",
        "1048576",
        "--dir",
        &dir_arg,
        "--require-snapshot",
        "--snapshot-interval",
        "0",
        "--shards",
        "2",
    ]);
    let status = refused
        .wait_exit(Duration::from_secs(20))
        .expect("presenced --require-snapshot exits without a good snapshot");
    let log = refused.log().join("\n");
    assert!(!status.success(), "exit status {status}:\n{log}");
    assert!(
        log.contains("--require-snapshot") && log.contains(&file_name(&b)),
        "the refusal names B:\n{log}"
    );
    assert!(
        log.contains("dense chunk 0 of shard 1"),
        "the refusal says what is wrong with B:\n{log}"
    );
    assert!(!log.contains("listening on"), "{log}");

    // Without the flag it starts empty, and says why.
    let mut server = TestServer::start_in(&dir_arg, &CORRUPTION_ARGS);
    server.expect_log("snapshot rejected: ");
    let mut con = server.client();
    assert_eq!(persistence_field(&mut con, "snapshot_loaded_file"), "");
    assert_eq!(persistence_field(&mut con, "snapshots_rejected"), "1");
    assert!(
        mstatus(&mut con, &users)
            .iter()
            .all(|s| *s == ("offline".to_string(), None)),
        "the server started empty"
    );
    drop(con);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// 3. Ten million users
// ---------------------------------------------------------------------------------------------

/// A raw RESP2 connection for bulk work: commands are written whole, replies parsed by hand
/// (the `redis` crate's generic values would cost more than the server for 10M users).
struct Bulk {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Bulk {
    fn connect(port: u16) -> Bulk {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let _ = stream.set_nodelay(true);
        Bulk {
            reader: BufReader::with_capacity(1 << 20, stream.try_clone().expect("clone")),
            writer: stream,
            line: Vec::new(),
        }
    }

    fn push(out: &mut Vec<u8>, args: &[&[u8]]) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    /// The next reply line, without its CRLF.
    fn next_line(&mut self) -> &[u8] {
        self.line.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.line)
            .expect("read a reply line");
        assert!(n >= 2 && self.line.ends_with(b"\r\n"), "connection closed");
        &self.line[..self.line.len() - 2]
    }

    fn integer(&mut self) -> i64 {
        let line = self.next_line();
        assert_eq!(
            line.first(),
            Some(&b':'),
            "{}",
            String::from_utf8_lossy(line)
        );
        std::str::from_utf8(&line[1..])
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("an integer")
    }

    fn expect_line(&mut self, expected: &[u8]) {
        let line = self.next_line();
        assert_eq!(
            String::from_utf8_lossy(line),
            String::from_utf8_lossy(expected)
        );
    }

    /// Sends `commands` (each a list of arguments) pipelined and checks every reply is an
    /// integer or +OK.
    fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) {
        let mut out = Vec::new();
        for command in commands {
            let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
            Bulk::push(&mut out, &args);
        }
        self.send(&out);
        for _ in commands {
            let line = self.next_line();
            assert!(
                line == b"+OK" || line.first() == Some(&b':'),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// MSTATUS of `users`: appends `(state code, last_seen_ms or 0)` to `out`.
    fn mstatus(&mut self, users: &[String], out: &mut Vec<(u8, u64)>) {
        let mut request = Vec::with_capacity(users.len() * 16);
        let mut args: Vec<&[u8]> = vec![b"MSTATUS"];
        args.extend(users.iter().map(|u| u.as_bytes()));
        Bulk::push(&mut request, &args);
        self.send(&request);
        self.expect_line(format!("*{}", users.len()).as_bytes());
        for _ in users {
            self.expect_line(b"*2");
            self.next_line(); // $<len> of the state
            let state = match self.next_line() {
                b"online" => 1,
                b"offline" => 2,
                b"away" => 3,
                b"busy" => 4,
                b"dnd" => 5,
                other => panic!("state {}", String::from_utf8_lossy(other)),
            };
            let line = self.next_line();
            let last_seen = match line {
                b"$-1" => 0,
                _ => {
                    assert_eq!(line[0], b':', "{}", String::from_utf8_lossy(line));
                    std::str::from_utf8(&line[1..])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .expect("last_seen_ms")
                }
            };
            out.push((state, last_seen));
        }
    }
}

/// Every user's `(state, last_seen_ms)` by MSTATUS in batches of 100,000, and a digest of all.
fn dump_users(port: u16, dense: usize, side: &[String]) -> (Vec<(u8, u64)>, u64) {
    let mut con = Bulk::connect(port);
    let mut out = Vec::with_capacity(dense + side.len());
    let mut batch: Vec<String> = Vec::with_capacity(100_000);
    for start in (0..dense).step_by(100_000) {
        batch.clear();
        batch.extend((start..(start + 100_000).min(dense)).map(|i| i.to_string()));
        con.mstatus(&batch, &mut out);
    }
    con.mstatus(side, &mut out);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    out.hash(&mut hasher);
    (out, hasher.finish())
}

/// 10,000,000 dense users and 20,000 side-table users — online, expired, with manual
/// statuses, devices and app statuses — read back exactly the same (state and last-seen of
/// every one) after SAVE, SHUTDOWN NOSAVE and a restart.
#[test]
fn ten_million_users_survive_a_restart_exactly() {
    const DENSE: usize = 10_000_000;
    const SIDE: usize = 20_000;
    let _heavy = heavy_test_lock();
    let clock = Instant::now();
    let dir = unique_temp_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let flags = [
        "--port",
        "0",
        "--capacity",
        "16777216",
        "--shards",
        "2",
        "--ttl",
        "300",
        "--snapshot-interval",
        "0",
        "--log-level",
        "info",
        "--dir",
        &dir_arg,
    ];
    let side: Vec<String> = (0..SIDE).map(|i| format!("user-{i:05}")).collect();
    let server = Process::spawn(&flags);
    let port = server.wait_listening(Duration::from_secs(20));
    let mut con = Bulk::connect(port);

    // Everyone online for 300 s (the default TTL here), in MHEARTBEATs of 100,000.
    let mut request = Vec::with_capacity(2 << 20);
    let mut ids: Vec<Vec<u8>> = Vec::with_capacity(100_000);
    for start in (0..DENSE).step_by(100_000) {
        ids.clear();
        ids.extend((start..start + 100_000).map(|i| i.to_string().into_bytes()));
        let mut args: Vec<&[u8]> = vec![b"MHEARTBEAT"];
        args.extend(ids.iter().map(Vec::as_slice));
        request.clear();
        Bulk::push(&mut request, &args);
        con.send(&request);
        assert_eq!(con.integer(), 100_000);
    }
    let mut args: Vec<&[u8]> = vec![b"MHEARTBEAT"];
    args.extend(side.iter().map(|s| s.as_bytes()));
    request.clear();
    Bulk::push(&mut request, &args);
    con.send(&request);
    assert_eq!(con.integer(), SIDE as i64);
    let populated = clock.elapsed();

    // Different states: every 7th dense user (and every 7th side user) expires within 1 s,
    // every 101st gets a manual status, every 1009th a device, every 13th an app status.
    let mut commands: Vec<Vec<Vec<u8>>> = Vec::new();
    let flush = |con: &mut Bulk, commands: &mut Vec<Vec<Vec<u8>>>, force: bool| {
        if commands.len() >= 20_000 || (force && !commands.is_empty()) {
            con.pipeline(commands);
            commands.clear();
        }
    };
    let word = |s: &str| s.as_bytes().to_vec();
    for i in (0..DENSE).step_by(7) {
        commands.push(vec![
            word("HEARTBEAT"),
            i.to_string().into_bytes(),
            word("TTL"),
            word("1"),
        ]);
        flush(&mut con, &mut commands, false);
    }
    for user in side.iter().step_by(7) {
        commands.push(vec![word("HEARTBEAT"), word(user), word("TTL"), word("1")]);
    }
    let expiring_sent = Instant::now();
    for i in (3..DENSE).step_by(13) {
        let status = if i % 2 == 0 { "away" } else { "busy" };
        commands.push(vec![
            word("HEARTBEAT"),
            i.to_string().into_bytes(),
            word("STATUS"),
            word(status),
        ]);
        flush(&mut con, &mut commands, false);
    }
    let manual = ["dnd", "away", "busy", "invisible"];
    for (n, i) in (5..DENSE).step_by(101).enumerate() {
        commands.push(vec![
            word("SETSTATUS"),
            i.to_string().into_bytes(),
            word(manual[n % 4]),
        ]);
        flush(&mut con, &mut commands, false);
    }
    for (n, user) in side.iter().skip(5).step_by(101).enumerate() {
        commands.push(vec![word("SETSTATUS"), word(user), word(manual[n % 4])]);
    }
    for i in (11..DENSE).step_by(1009) {
        commands.push(vec![
            word("HEARTBEAT"),
            i.to_string().into_bytes(),
            word("DEVICE"),
            word("phone"),
        ]);
        flush(&mut con, &mut commands, false);
    }
    flush(&mut con, &mut commands, true);
    let shaped = clock.elapsed();
    // The 1 s users are offline (their deadline passed) before anything is read.
    let wait = Duration::from_millis(2_000).saturating_sub(expiring_sent.elapsed());
    std::thread::sleep(wait);

    let save_clock = Instant::now();
    con.send(b"SAVE\r\n");
    con.expect_line(b"+OK");
    let saved = save_clock.elapsed();
    let (before, before_digest) = dump_users(port, DENSE, &side);
    let dumped = clock.elapsed();
    let mut histogram = [0usize; 6];
    for (state, _) in &before {
        histogram[*state as usize] += 1;
    }
    // Every 7th expired, less those a later STATUS or DEVICE heartbeat brought back.
    assert!(histogram[2] > DENSE / 8, "offline users: {histogram:?}");
    assert!(
        histogram[1] > 0 && histogram[3] > 0 && histogram[4] > 0 && histogram[5] > 0,
        "{histogram:?}"
    );
    assert!(
        before.iter().all(|(_, seen)| *seen > 0),
        "everyone was seen"
    );
    con.send(b"SHUTDOWN NOSAVE\r\n");
    drop(con);
    let mut server = server;
    assert!(
        server.wait_exit(Duration::from_secs(30)).is_some(),
        "SHUTDOWN NOSAVE stops the server"
    );
    let files = snap_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = std::fs::metadata(&files[0]).expect("snapshot").len();

    let restart_clock = Instant::now();
    let restarted = Process::spawn(&flags);
    let port = restarted.wait_listening(Duration::from_secs(60));
    let restarted_in = restart_clock.elapsed();
    let (after, after_digest) = dump_users(port, DENSE, &side);
    let mismatches: Vec<String> = before
        .iter()
        .zip(&after)
        .enumerate()
        .filter(|(_, (b, a))| b != a)
        .take(10)
        .map(|(i, (b, a))| {
            let user = if i < DENSE {
                i.to_string()
            } else {
                side[i - DENSE].clone()
            };
            format!("user {user}: before {b:?}, after {a:?}")
        })
        .collect();
    assert!(
        mismatches.is_empty() && before.len() == after.len(),
        "users differ after the restart:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(before_digest, after_digest);
    assert_eq!(restarted.warnings(), Vec::<String>::new());
    assert_eq!(server.warnings(), Vec::<String>::new());
    println!(
        "10M users: populated in {populated:?}, states shaped by {shaped:?}, SAVE {saved:?} \
         ({bytes} bytes), dumped by {dumped:?}, restart (load) {restarted_in:?}, total {:?}; \
         states [_, online, offline, away, busy, dnd] = {histogram:?}",
        clock.elapsed()
    );
    drop(restarted);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// 4. SAVE, BGSAVE, LASTSAVE, INFO persistence, SHUTDOWN and SIGTERM
// ---------------------------------------------------------------------------------------------

/// Waits until `INFO persistence` reports `saves` completed saves and none in progress.
fn wait_saves(con: &mut redis::Connection, saves: u64) {
    poll(Duration::from_secs(20), || {
        (persistence_u64(con, "rdb_saves") == saves
            && persistence_u64(con, "rdb_bgsave_in_progress") == 0)
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "save {saves} did not complete:\n{}",
            info(con, "persistence")
        )
    });
}

/// SAVE writes `presenced-<20-digit start ms>.snap` and replies when it is on disk; BGSAVE
/// (and BGSAVE SCHEDULE) starts one in the background, and a second while one runs is
/// refused; LASTSAVE and `INFO persistence` report each save; only the newest two files stay.
#[test]
fn save_bgsave_lastsave_and_info_persistence_report_each_save() {
    let dir = unique_temp_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let started = now_ms() as u64;
    let server = TestServer::start_in(&dir_arg, &["--snapshot-interval", "0"]);
    let mut con = server.client();

    // Nothing saved or loaded yet: LASTSAVE is the start time, as in Redis.
    let text = info(&mut con, "persistence");
    let field = |name: &str| info_field(&text, name).unwrap_or_else(|| panic!("{name}"));
    for (name, value) in [
        ("loading", "0"),
        ("rdb_bgsave_in_progress", "0"),
        ("rdb_last_bgsave_status", "ok"),
        ("rdb_last_bgsave_time_sec", "-1"),
        ("rdb_saves", "0"),
        ("snapshot_interval_s", "0"),
        ("snapshot_last_file", ""),
        ("snapshot_last_started_ms", "0"),
        ("snapshot_last_error", ""),
        ("snapshot_loaded_file", ""),
        ("snapshot_loaded_created_ms", "0"),
        ("snapshots_rejected", "0"),
    ] {
        assert_eq!(field(name), value, "{name} in\n{text}");
    }
    assert_eq!(field("snapshot_dir"), dir_arg);
    let lastsave: u64 = redis::cmd("LASTSAVE").query(&mut con).unwrap();
    assert!(
        (started / 1000..=now_ms() as u64 / 1000).contains(&lastsave),
        "LASTSAVE {lastsave} before any save is the start time"
    );
    assert_eq!(field("rdb_last_save_time"), lastsave.to_string());

    let users: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
    let _: i64 = redis::cmd("MHEARTBEAT")
        .arg(&users)
        .query(&mut con)
        .unwrap();
    let before = now_ms() as u64;
    let reply: Value = redis::cmd("SAVE").query(&mut con).unwrap();
    let after = now_ms() as u64;
    assert_eq!(as_text(&reply), "OK");
    let files = snap_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let first = files[0].clone();
    let name = file_name(&first);
    let digits = name
        .strip_prefix("presenced-")
        .and_then(|n| n.strip_suffix(".snap"))
        .expect("presenced-<ms>.snap");
    assert_eq!(digits.len(), 20, "{name}");
    let started_ms: u64 = digits.parse().expect("digits");
    assert!((before..=after).contains(&started_ms), "{name}");
    assert!(tmp_files(&dir).is_empty(), "SAVE leaves no temporary");
    let text = info(&mut con, "persistence");
    let field = |name: &str| info_field(&text, name).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(field("rdb_saves"), "1");
    assert_eq!(field("rdb_last_bgsave_status"), "ok");
    assert_eq!(field("rdb_last_bgsave_time_sec"), "0");
    assert_eq!(field("snapshot_last_file"), first.display().to_string());
    assert_eq!(field("snapshot_last_started_ms"), started_ms.to_string());
    assert_eq!(
        field("snapshot_last_bytes"),
        std::fs::metadata(&first).unwrap().len().to_string()
    );
    assert_eq!(field("rdb_last_save_time"), (started_ms / 1000).to_string());
    let lastsave: u64 = redis::cmd("LASTSAVE").query(&mut con).unwrap();
    assert_eq!(lastsave, started_ms / 1000);
    let (ok, report) = check_snapshot(&first);
    assert!(ok, "{report}");
    assert!(
        report.ends_with(" records\n") && report.contains("ok "),
        "{report}"
    );

    // BGSAVE replies at once; the save completes in the background.
    let reply: Value = redis::cmd("BGSAVE").query(&mut con).unwrap();
    assert_eq!(as_text(&reply), "Background saving started");
    wait_saves(&mut con, 2);
    assert_eq!(snap_files(&dir).len(), 2);

    // A second BGSAVE (or SAVE) in the same pipeline finds the first still running.
    let mut raw = server.raw();
    let replies = crate::support::exchange(&mut raw, b"BGSAVE\r\nBGSAVE\r\nSAVE\r\n");
    assert_eq!(
        crate::util::show(&replies),
        "+Background saving started\r\n\
         -ERR Background save already in progress\r\n\
         -ERR Background save already in progress\r\n"
    );
    wait_saves(&mut con, 3);
    let files = snap_files(&dir);
    assert_eq!(files.len(), 2, "the newest two are kept: {files:?}");
    assert!(!files.contains(&first), "the oldest is removed: {files:?}");

    let reply: Value = redis::cmd("BGSAVE")
        .arg("SCHEDULE")
        .query(&mut con)
        .unwrap();
    assert_eq!(as_text(&reply), "Background saving started");
    wait_saves(&mut con, 4);
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("BGSAVE").arg("NOW")),
        "ERR syntax error"
    );
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("SAVE").arg("x")),
        "ERR wrong number of arguments for 'save' command"
    );
    assert_eq!(
        error_text::<Value>(&mut con, redis::cmd("SHUTDOWN").arg("SAVE").arg("NOSAVE")),
        "ERR syntax error"
    );
    let newest = snap_files(&dir)[0].clone();
    assert_eq!(
        persistence_field(&mut con, "snapshot_last_file"),
        newest.display().to_string()
    );
    drop(con);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With periodic snapshots on, SHUTDOWN and SIGTERM save a snapshot that the next start loads
/// (`snapshot_loaded_created_ms` is after every acknowledged write), SHUTDOWN NOSAVE does not,
/// and snapshots are also written every `--snapshot-interval`.
#[test]
fn shutdown_and_sigterm_save_when_snapshots_are_on_and_nosave_does_not() {
    let dir = unique_temp_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let args = ["--snapshot-interval", "3600", "--ttl", "300"];
    let first: Vec<String> = (1..=50).map(|i| i.to_string()).collect();
    let second: Vec<String> = (51..=60).map(|i| format!("late-{i}")).collect();
    let third: Vec<String> = (61..=70).map(|i| i.to_string()).collect();

    // SHUTDOWN saves.
    let mut server = TestServer::start_in(&dir_arg, &args);
    let mut con = server.client();
    let _: i64 = redis::cmd("MHEARTBEAT")
        .arg(&first)
        .query(&mut con)
        .unwrap();
    let acked = now_ms() as u64;
    let dump = mstatus(&mut con, &first);
    drop(con);
    shutdown(&mut server, "");
    drop(server);
    let files = snap_files(&dir);
    assert_eq!(files.len(), 1, "SHUTDOWN saved: {files:?}");

    // SHUTDOWN NOSAVE does not.
    let mut server = TestServer::start_in(&dir_arg, &args);
    let mut con = server.client();
    assert_eq!(
        persistence_field(&mut con, "snapshot_loaded_file"),
        files[0].display().to_string()
    );
    assert!(persistence_u64(&mut con, "snapshot_loaded_created_ms") >= acked);
    assert_eq!(persistence_u64(&mut con, "rdb_saves"), 0);
    assert_eq!(mstatus(&mut con, &first), dump);
    let _: i64 = redis::cmd("MHEARTBEAT")
        .arg(&second)
        .query(&mut con)
        .unwrap();
    drop(con);
    shutdown(&mut server, " NOSAVE");
    drop(server);
    assert_eq!(snap_files(&dir), files, "SHUTDOWN NOSAVE saved nothing");

    // SIGTERM saves.
    let mut server = TestServer::start_in(&dir_arg, &args);
    let mut con = server.client();
    assert!(
        mstatus(&mut con, &second)
            .iter()
            .all(|s| *s == ("offline".to_string(), None)),
        "writes after the last save are gone after SHUTDOWN NOSAVE"
    );
    assert_eq!(mstatus(&mut con, &first), dump);
    let _: i64 = redis::cmd("MHEARTBEAT")
        .arg(&third)
        .query(&mut con)
        .unwrap();
    let acked = now_ms() as u64;
    let third_dump = mstatus(&mut con, &third);
    drop(con);
    signal(server.pid(), "-TERM");
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "SIGTERM exits with {status}");
    poll(Duration::from_secs(5), || {
        server
            .log_lines()
            .iter()
            .any(|l| l.contains("snapshot saved"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no save logged at SIGTERM: {:?}", server.log_lines()));
    drop(server);
    let files = snap_files(&dir);
    assert_eq!(files.len(), 2, "SIGTERM saved: {files:?}");

    // The SIGTERM snapshot loads; periodic snapshots run at their interval.
    let server = TestServer::start_in(&dir_arg, &["--snapshot-interval", "0.1", "--ttl", "300"]);
    let mut con = server.client();
    assert_eq!(
        persistence_field(&mut con, "snapshot_loaded_file"),
        files[0].display().to_string()
    );
    assert!(persistence_u64(&mut con, "snapshot_loaded_created_ms") >= acked);
    assert_eq!(mstatus(&mut con, &third), third_dump);
    assert_eq!(mstatus(&mut con, &first), dump);
    assert_eq!(persistence_field(&mut con, "snapshot_interval_s"), "0.1");
    poll(Duration::from_secs(20), || {
        (persistence_u64(&mut con, "rdb_saves") >= 3).then_some(())
    })
    .expect("periodic snapshots every 0.1 s");
    assert!(snap_files(&dir).len() <= 3, "{:?}", snap_files(&dir));
    drop(con);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With periodic snapshots off (`--snapshot-interval 0`), neither SHUTDOWN nor SIGTERM
/// saves, and SHUTDOWN SAVE does.
#[test]
fn with_snapshots_off_only_shutdown_save_writes_one() {
    let dir = unique_temp_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let args = ["--snapshot-interval", "0"];
    let users: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    let never_seen = |con: &mut redis::Connection| {
        mstatus(con, &users)
            .iter()
            .all(|s| *s == ("offline".to_string(), None))
    };

    let mut server = TestServer::start_in(&dir_arg, &args);
    let mut con = server.client();
    let _: i64 = redis::cmd("MHEARTBEAT")
        .arg(&users)
        .query(&mut con)
        .unwrap();
    drop(con);
    shutdown(&mut server, "");
    drop(server);
    assert!(
        snap_files(&dir).is_empty(),
        "SHUTDOWN saved with snapshots off"
    );

    let mut server = TestServer::start_in(&dir_arg, &args);
    let mut con = server.client();
    assert!(never_seen(&mut con));
    assert_eq!(persistence_field(&mut con, "snapshot_loaded_file"), "");
    let _: i64 = redis::cmd("MHEARTBEAT")
        .arg(&users)
        .query(&mut con)
        .unwrap();
    drop(con);
    signal(server.pid(), "-TERM");
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "{status}");
    drop(server);
    assert!(
        snap_files(&dir).is_empty(),
        "SIGTERM saved with snapshots off"
    );

    let mut server = TestServer::start_in(&dir_arg, &args);
    let mut con = server.client();
    assert!(never_seen(&mut con));
    let _: i64 = redis::cmd("MHEARTBEAT")
        .arg(&users)
        .query(&mut con)
        .unwrap();
    let dump = mstatus(&mut con, &users);
    drop(con);
    shutdown(&mut server, " SAVE");
    drop(server);
    let files = snap_files(&dir);
    assert_eq!(files.len(), 1, "SHUTDOWN SAVE saved: {files:?}");

    let server = TestServer::start_in(&dir_arg, &args);
    let mut con = server.client();
    assert_eq!(
        persistence_field(&mut con, "snapshot_loaded_file"),
        files[0].display().to_string()
    );
    assert_eq!(mstatus(&mut con, &users), dump);
    drop(con);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
