//! presenced-jepsen: a Jepsen-shaped fault harness for presenced. A supervisor starts a
//! leader, two followers and three real Sentinels on loopback, each data node behind a proxy
//! of ours; a workload of users, readers and a subscriber runs through Sentinel discovery;
//! a seeded nemesis kills, pauses, partitions, steps clocks and damages snapshots; the history
//! is checked and reported (report.md, timeline.png).
//!
//! `cargo run --release -p presenced-jepsen -- --time-limit 60 --nemesis
//! kill,pause,partition,clock,disk --seed 7 --out DIR` (jepsen/README.md, docs/RELIABILITY.md);
//! `--check DIR/history.jsonl` judges a recorded history again.

mod checker;
mod history;
mod nemesis;
mod proxy;
mod report;
mod resp;
mod rng;
mod supervisor;
mod timeline;
mod workload;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;

use crate::history::{History, Op, Outcome, now_ms};

#[derive(Parser)]
#[command(
    name = "presenced-jepsen",
    about = "Faults against a presenced cluster under Sentinel, judged by a checker"
)]
struct Cli {
    /// Seconds of workload under faults (the quiescence and final reads come after).
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Faults to inject, comma-separated: kill, pause, partition, clock, disk ("" for none).
    #[arg(long, default_value = "kill,pause,partition,clock,disk")]
    nemesis: String,
    /// Seed of the fault schedule and of the workload's choices.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Directory for the history, the report and the nodes' data and logs.
    #[arg(long, default_value = "jepsen-out")]
    out: PathBuf,
    /// The presenced binary under test.
    #[arg(long, default_value = "target/release/presenced")]
    presenced: PathBuf,
    /// Redis's Sentinel binary.
    #[arg(long, default_value = "redis-sentinel")]
    sentinel: PathBuf,
    /// Simulated users.
    #[arg(long, default_value_t = 300)]
    users: usize,
    /// The TTL every heartbeat carries, in seconds.
    #[arg(long, default_value_t = 6)]
    ttl_s: u64,
    /// Runs nothing: judges a recorded history.jsonl again (after a change to the checker)
    /// and writes report.md and timeline.png into --out. Times in the report count from the
    /// history's first line.
    #[arg(long, value_name = "HISTORY")]
    check: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let kinds = match nemesis::Kind::parse_list(&cli.nemesis) {
        Ok(kinds) => kinds,
        Err(message) => {
            eprintln!("presenced-jepsen: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("presenced-jepsen: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, kinds)) {
        Ok(0) => std::process::ExitCode::SUCCESS,
        Ok(violations) => {
            eprintln!("presenced-jepsen: {violations} violations outside the documented bounds");
            std::process::ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("presenced-jepsen: {err}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(mut cli: Cli, kinds: Vec<nemesis::Kind>) -> Result<usize, String> {
    if let Some(path) = cli.check.clone() {
        let history = History::read_jsonl(&path)?;
        let started_ms = history.ops().first().map_or(0, |op| op.invoke_ms);
        std::fs::create_dir_all(&cli.out).map_err(|e| format!("{}: {e}", cli.out.display()))?;
        let command = format!(
            "presenced-jepsen --check {} --ttl-s {}",
            path.display(),
            cli.ttl_s
        );
        return judge(&cli, &command, &history, started_ms);
    }
    // Absolute: Sentinel changes into its `dir` before it opens its `logfile`, so a relative
    // path in its config would point nowhere.
    cli.out = std::path::absolute(&cli.out).map_err(|e| format!("{}: {e}", cli.out.display()))?;
    let root = cli.out.join("cluster");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&cli.out).map_err(|e| format!("{}: {e}", cli.out.display()))?;
    let presenced = std::fs::canonicalize(&cli.presenced)
        .map_err(|e| format!("{}: {e} (cargo build --release)", cli.presenced.display()))?;
    let faketime = kinds
        .contains(&nemesis::Kind::Clock)
        .then(|| PathBuf::from(supervisor::LIBFAKETIME));
    if let Some(lib) = &faketime
        && !lib.exists()
    {
        return Err(format!(
            "the clock nemesis needs libfaketime at {} (apt-get install faketime)",
            lib.display()
        ));
    }
    let settings = supervisor::Settings {
        presenced,
        sentinel: cli.sentinel.clone(),
        root,
        ttl_s: cli.ttl_s,
        down_after_ms: 1000,
        faketime,
    };
    let started_ms = now_ms();
    let cluster = supervisor::Cluster::start(settings).await?;
    let topology = workload::Topology {
        sentinels: cluster.sentinel_addrs(),
        proxy_ports: (0..supervisor::NODES)
            .map(|i| cluster.proxy_addr(i).port())
            .collect(),
    };
    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let outcome = drive(&cli, kinds, Arc::clone(&cluster), topology).await;
    cluster.lock().await.stop_all().await;
    let history = outcome?;
    history
        .write_jsonl(&cli.out.join("history.jsonl"))
        .map_err(|e| format!("history.jsonl: {e}"))?;
    judge(&cli, &cli_summary(&cli), &history, started_ms)
}

/// The checker over a history, its report.md and timeline.png; returns the violations.
fn judge(cli: &Cli, command: &str, history: &History, started_ms: u64) -> Result<usize, String> {
    let ops = history.ops();
    let bounds = checker::Bounds {
        ttl_ms: cli.ttl_s * 1000,
        read_lag_ms: 1000,
        zombie_tolerance_ms: 1500,
        settle_ms: SETTLE_MS,
    };
    let findings = checker::check(&ops, &bounds);
    let text = report::markdown(command, &ops, &findings, &bounds, started_ms);
    std::fs::write(cli.out.join("report.md"), &text).map_err(|e| format!("report.md: {e}"))?;
    // A picture is a help, not a verdict: a failure to draw it is said, not fatal.
    if let Err(e) = timeline::draw(
        &cli.out.join("timeline.png"),
        &ops,
        &findings,
        &bounds,
        started_ms,
    ) {
        eprintln!("presenced-jepsen: timeline.png: {e}");
    }
    println!("{text}");
    Ok(findings.violations())
}

/// After a fault ends, the time that still belongs to its window: Sentinel's failover
/// (~2.3 s measured), the promotion grace (10 s by default), and a second more.
const SETTLE_MS: u64 = 13_500;

fn cli_summary(cli: &Cli) -> String {
    format!(
        "--time-limit {} --nemesis {} --seed {} --users {} --ttl-s {}",
        cli.time_limit, cli.nemesis, cli.seed, cli.users, cli.ttl_s
    )
}

async fn drive(
    cli: &Cli,
    kinds: Vec<nemesis::Kind>,
    cluster: Arc<tokio::sync::Mutex<supervisor::Cluster>>,
    topology: workload::Topology,
) -> Result<History, String> {
    wait_for_sentinels(&topology).await?;
    let history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let seed = rng::Rng::new(cli.seed);
    let load = workload::Workload {
        users: cli.users,
        writers: 4,
        readers: 3,
        ttl_s: cli.ttl_s,
        seed: seed.fork(1),
    };
    let stop_events = Arc::new(AtomicBool::new(false));
    let workload = {
        let (history, stop, topology) = (history.clone(), Arc::clone(&stop), topology.clone());
        let stop_events = Arc::clone(&stop_events);
        tokio::spawn(async move { load.run(topology, history, stop, stop_events).await })
    };
    let nemesis = nemesis::Nemesis {
        kinds,
        rng: seed.fork(2),
    };
    let faults =
        tokio::spawn(nemesis.run(Arc::clone(&cluster), history.clone(), Arc::clone(&stop)));
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(cli.time_limit)) => {}
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted: stopping the run"),
    }
    stop.store(true, Ordering::Relaxed);
    let _ = faults.await;
    // Quiescence: every TTL and the promotion grace run out; then everyone must be offline
    // everywhere, and the subscriber's last events must say so.
    tokio::time::sleep(Duration::from_millis(cli.ttl_s * 1000 + SETTLE_MS)).await;
    final_reads(&cluster, cli.users, &history).await;
    stop_events.store(true, Ordering::Relaxed);
    let _ = workload.await;
    Ok(history)
}

/// Waits until the Sentinels know both followers (and so will fail over).
async fn wait_for_sentinels(topology: &workload::Topology) -> Result<(), String> {
    let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for _ in 0..300 {
        let mut ready = true;
        for &sentinel in &topology.sentinels {
            let known =
                match resp::Connection::connect(sentinel, source, Duration::from_millis(300)).await
                {
                    Ok(mut con) => con
                        .call(&[b"SENTINEL", b"replicas", supervisor::MASTER_NAME.as_bytes()])
                        .await
                        .map(|r| r.items().len())
                        .unwrap_or(0),
                    Err(_) => 0,
                };
            ready &= known == supervisor::NODES - 1;
        }
        if ready {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the Sentinels did not find both followers within 30 s".into())
}

/// MSTATUS of every user on every node, directly (no proxy), recorded as process `final`.
async fn final_reads(
    cluster: &tokio::sync::Mutex<supervisor::Cluster>,
    users: usize,
    history: &History,
) {
    let ports = cluster.lock().await.real_ports;
    let names: Vec<String> = (0..users).map(workload::user_name).collect();
    for (node, port) in ports.iter().enumerate() {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), *port);
        let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let Ok(mut con) = resp::Connection::connect(addr, source, Duration::from_secs(2)).await
        else {
            continue;
        };
        let mut args: Vec<&[u8]> = vec![b"MSTATUS"];
        args.extend(names.iter().map(|n| n.as_bytes()));
        // What the node's store says, beside what reads show (reads hide a user past their
        // deadline; the store's count does not).
        if let Ok(info) = con.call(&[b"INFO", b"presence"]).await {
            let text = info.as_text().unwrap_or_default();
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            let at = now_ms();
            history.record(Op {
                process: "final".into(),
                f: "store",
                users: Vec::new(),
                invoke_ms: at,
                complete_ms: at,
                outcome: Outcome::Ok,
                node: Some(node),
                value: serde_json::json!({
                    "online_users": field("online_users"),
                    "expiry_wheel_entries": field("expiry_wheel_entries"),
                }),
            });
        }
        let invoke_ms = now_ms();
        if let Ok(reply) = con.call(&args).await {
            history.record(Op {
                process: "final".into(),
                f: "mstatus",
                users: names.clone(),
                invoke_ms,
                complete_ms: now_ms(),
                outcome: Outcome::Ok,
                node: Some(node),
                value: workload::reply_json(&reply),
            });
        }
    }
}
