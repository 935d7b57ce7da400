//! Real Redis tools and clients against the real binary: redis-py 8, redis-cli and
//! redis-benchmark, each driven by a script in `tests/clients/` that exits non-zero on any
//! failed check. A missing tool fails the test: `scripts/install-test-deps` installs them all.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::TestServer;

/// How long one script may run; each takes seconds, even against a debug build.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// The program's path in `PATH`, or a failed test saying how to install it.
pub fn require_tool(program: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{program}` is not in PATH: run scripts/install-test-deps to install the test tools"
        )
    })
}

pub fn require_redis_py() {
    let python = require_tool("python3");
    let probe = Command::new(python)
        .args([
            "-c",
            "import redis, sys; sys.exit(0 if int(redis.__version__.split('.')[0]) >= 8 else 1)",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "redis-py 8 is not installed for python3: run scripts/install-test-deps\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
}

/// Runs `python3 <script> --port <port>`; fails the test with the script's whole output unless
/// it exits with status 0 within the timeout. Returns the output for further checks.
fn run_script(server: &TestServer, name: &str) -> String {
    run_with(server, "python3", name)
}

/// Runs `<interpreter> <script> --port <port>`, as `run_script` does.
fn run_with(server: &TestServer, interpreter: &str, name: &str) -> String {
    let program = require_tool(interpreter);
    let path = script(name);
    let started = Instant::now();
    let mut child = Command::new(program)
        .arg(&path)
        .args(["--port", &server.port.to_string()])
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{interpreter} {} starts: {e}", path.display()));
    // Drained on their own threads so a chatty script never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits for the script") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default()
    );
    let elapsed = started.elapsed();
    match status {
        Some(status) if status.success() => {
            // Shown with --nocapture: the summary lines and timings.
            println!("{name} finished in {elapsed:.1?}\n{output}");
            output
        }
        Some(status) => panic!("{name} failed ({status}) after {elapsed:.1?}\n{output}"),
        None => panic!("{name} did not finish within {SCRIPT_TIMEOUT:?}; killed\n{output}"),
    }
}

/// redis-py 8 works unchanged in RESP3 (its default), RESP2 and with decoded responses: every
/// presence command, the Redis commands it calls itself, pipelines, errors and TTL expiry.
#[test]
fn redis_py_8() {
    require_redis_py();
    let server = TestServer::start();
    let output = run_script(&server, "redis_py_check.py");
    assert!(output.contains(" 0 failed"), "{output}");
}

/// redis-py 8's default pipeline() (a MULTI/EXEC transaction) and transaction() with WATCH
/// work in RESP3 and RESP2, with presence commands and presence keys.
#[test]
fn redis_py_transactions() {
    require_redis_py();
    let server = TestServer::start();
    let output = run_script(&server, "redis_py_transactions.py");
    assert!(output.contains(" 0 failed"), "{output}");
}

/// ioredis's multi()/exec() and watch() work: results in order, a runtime error in place, a
/// queue-time error rejecting exec() with EXECABORT, a broken watch resolving to null.
#[test]
fn ioredis_transactions() {
    let server = TestServer::start();
    let module =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node/node_modules/ioredis");
    assert!(
        module.is_dir(),
        "ioredis is not installed in tests/clients/node: run scripts/install-test-deps"
    );
    let output = run_with(&server, "node", "ioredis_check.js");
    assert!(output.contains(" 0 failed"), "{output}");
}

/// redis-py 8's pubsub() receives presence events as documented over RESP3 and RESP2: online,
/// TTL expiry, the grace period, devices, invisible, override precedence, patterns and a
/// 5,000-channel friend list.
#[test]
fn redis_py_pubsub() {
    require_redis_py();
    let server = TestServer::start_with(&["--offline-grace", "2"]);
    let output = run_script(&server, "redis_py_pubsub_check.py");
    assert!(output.contains(" 0 failed"), "{output}");
}

/// redis-cli works one-shot, with piped stdin, in --pipe mass insertion and interactively on a
/// terminal, where its startup COMMAND DOCS gives it presenced's help text.
#[test]
fn redis_cli() {
    require_tool("redis-cli");
    let server = TestServer::start();
    let output = run_script(&server, "redis_cli_check.py");
    assert!(output.contains(" 0 failed"), "{output}");
}

/// redis-benchmark's 200,000 pipelined MHEARTBEATs with random IDs all succeed and all reach the
/// store, as INFO's heartbeat counter shows.
#[test]
fn redis_benchmark() {
    let _heavy = crate::support::heavy_test_lock();
    require_tool("redis-benchmark");
    let server = TestServer::start();
    let output = run_script(&server, "redis_benchmark_check.py");
    assert!(output.contains(" 0 failed"), "{output}");
}

/// A presence app's Redis command stream, sent to a real redis-server (started by the script)
/// and to presenced, gets the same replies and the same keyspace events from both.
#[test]
fn dropin_parity_with_redis() {
    run_parity("presence_app_parity.py", " events identical");
}

/// Runs `tests/parity/<script> --presenced-port <port>` (it starts its own redis-server and
/// bounds its own run); fails unless it exits 0 and its summary contains `summary`.
fn run_parity(script: &str, summary: &str) {
    require_redis_py();
    require_tool("redis-server");
    let server = TestServer::start();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/parity")
        .join(script);
    let started = Instant::now();
    let run = Command::new(require_tool("python3"))
        .arg(&path)
        .args(["--presenced-port", &server.port.to_string()])
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("python3 {} starts: {e}", path.display()));
    let output = format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let elapsed = started.elapsed();
    assert!(
        run.status.success() && output.contains(summary),
        "{script} failed ({}) after {elapsed:.1?}\n{output}",
        run.status
    );
    println!("{script} finished in {elapsed:.1?}\n{output}");
}

/// The same MULTI/EXEC/DISCARD/WATCH/UNWATCH sequences, sent to a real redis-server (started
/// by the script) and to presenced over raw sockets in RESP2 and RESP3, get byte-identical
/// replies.
#[test]
fn transaction_parity_with_redis() {
    run_parity("transaction_parity.py", " 0 different");
}

/// FLUSHDB, CLIENT REPLY, CLIENT KILL filters, CLIENT NO-EVICT, MEMORY USAGE, the EXPIRE
/// family's bounds, SLOWLOG and INFO commandstats get byte-identical replies from a real
/// redis-server and from presenced (SLOWLOG GET with ids, times, durations and addresses
/// normalised; INFO commandstats without times, its lines sorted).
#[test]
fn admin_parity_with_redis() {
    run_parity("admin_parity.py", " 0 different");
}

/// Sharded pub/sub (SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH, PUBSUB SHARDCHANNELS|SHARDNUMSUB):
/// confirmations, counts, smessage shapes and errors byte-identical to a real redis-server.
#[test]
fn sharded_pubsub_parity_with_redis() {
    run_parity("pubsub_parity.py", " 0 different");
}
