//! The nemesis: a seeded schedule of faults — quiet, fault, heal, quiet — each recorded with
//! its start and end. It sees the cluster as an operator does not: it asks each node its role
//! directly (not through the proxies it is breaking).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Mutex;

use crate::history::{History, Op, Outcome, now_ms};
use crate::proxy::Rule;
use crate::resp::{Connection, Reply};
use crate::rng::Rng;
use crate::supervisor::{Cluster, NODES, SENTINELS, node_source, sentinel_source};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// SIGKILL a node (the leader two times in three), restart it after a while: it recovers
    /// from its snapshot and rejoins in the role its config file holds.
    Kill,
    /// SIGSTOP a node, SIGCONT it after a while.
    Pause,
    /// Through the proxies: the leader cut off (connections refused) or blackholed (bytes
    /// held, connections hanging) from the followers and the Sentinels; what the leader sends
    /// its followers held (one way); or a minority (the leader, one
    /// Sentinel) split from a majority (the followers, two Sentinels).
    Partition,
    /// A node's wall clock (libfaketime) stepped 20-120 s forward or back, or drifting 5-50%
    /// fast or slow, for the fault's span; then stepped back to the true time.
    Clock,
    /// SIGKILL a node; before its restart, its newest snapshot is truncated, has a byte
    /// flipped or 4 KiB zeroed: it must refuse that file, load the one before (or start
    /// empty) and catch up from the leader.
    Disk,
}

const ALL: &str = "kill, pause, partition, clock, disk";

impl Kind {
    pub fn parse_list(text: &str) -> Result<Vec<Kind>, String> {
        text.split(',')
            .filter(|s| !s.is_empty())
            .map(|name| match name {
                "kill" => Ok(Kind::Kill),
                "pause" => Ok(Kind::Pause),
                "partition" => Ok(Kind::Partition),
                "clock" => Ok(Kind::Clock),
                "disk" => Ok(Kind::Disk),
                other => Err(format!("unknown nemesis '{other}': {ALL}")),
            })
            .collect()
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Partition => "partition",
            Kind::Clock => "clock",
            Kind::Disk => "disk",
        }
    }
}

/// The node that says it is the leader, asked directly; the first of several.
pub async fn current_leader(cluster: &Cluster) -> Option<usize> {
    for i in 0..NODES {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), cluster.real_ports[i]);
        let Ok(mut con) = Connection::connect(
            addr,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            Duration::from_millis(300),
        )
        .await
        else {
            continue;
        };
        if let Ok(role) = con.call(&[b"ROLE"]).await
            && role.items().first().and_then(Reply::as_text).as_deref() == Some("master")
        {
            return Some(i);
        }
    }
    None
}

/// What the leader says of its followers just before a fault: the bytes the furthest behind
/// lags (`master_repl_offset` minus its `offset`) and the largest `lag` in seconds.
async fn replication_behind(cluster: &Cluster) -> serde_json::Value {
    let Some(leader) = current_leader(cluster).await else {
        return serde_json::Value::Null;
    };
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), cluster.real_ports[leader]);
    let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let Ok(mut con) = Connection::connect(addr, source, Duration::from_millis(300)).await else {
        return serde_json::Value::Null;
    };
    let Ok(reply) = con.call(&[b"INFO", b"replication"]).await else {
        return serde_json::Value::Null;
    };
    let text = reply.as_text().unwrap_or_default();
    let field = |line: &str, name: &str| {
        line.split([',', ':'])
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let master = text
        .lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    let followers: Vec<(u64, u64)> = text
        .lines()
        .filter(|l| l.starts_with("slave") && l.contains("offset="))
        .filter_map(|l| Some((field(l, "offset")?, field(l, "lag").unwrap_or(0))))
        .collect();
    json!({
        "leader": leader,
        "followers": followers.len(),
        "behind_bytes": master.map(|m| followers.iter().map(|&(o, _)| m.saturating_sub(o)).max().unwrap_or(0)),
        "lag_s": followers.iter().map(|&(_, l)| l).max(),
    })
}

pub struct Nemesis {
    pub kinds: Vec<Kind>,
    pub rng: Rng,
}

impl Nemesis {
    /// Faults until `stop`; every fault is healed before it returns.
    pub async fn run(
        mut self,
        cluster: Arc<Mutex<Cluster>>,
        history: History,
        stop: Arc<AtomicBool>,
    ) {
        if self.kinds.is_empty() {
            return;
        }
        let mut round: Vec<Kind> = Vec::new();
        loop {
            // Quiet long enough that a fault's window (its span and the settling after it)
            // leaves time the checker judges strictly.
            let quiet_ms = self.rng.range(8_000, 16_000);
            if sleep_unless_stopped(quiet_ms, &stop).await {
                return;
            }
            // Every kind once per round, in a seeded order: a short run still meets each.
            if round.is_empty() {
                round = self.kinds.clone();
                for i in (1..round.len()).rev() {
                    round.swap(i, self.rng.range(0, i as u64 + 1) as usize);
                }
            }
            let kind = round.remove(0);
            let fault_ms = self.rng.range(3_000, 8_000);
            let start_ms = now_ms();
            let (detail, repl_before) = {
                let mut cluster = cluster.lock().await;
                let repl_before = replication_behind(&cluster).await;
                (self.begin(kind, &mut cluster).await, repl_before)
            };
            // A fault runs its course even past `stop`, so that it is healed and recorded.
            tokio::time::sleep(Duration::from_millis(fault_ms)).await;
            let (node, what) = (detail.node, detail.what.clone());
            let healed = {
                let mut cluster = cluster.lock().await;
                heal(kind, detail, &mut cluster).await
            };
            history.record(Op {
                process: "nemesis".into(),
                f: "nemesis",
                users: Vec::new(),
                invoke_ms: start_ms,
                complete_ms: now_ms(),
                outcome: if healed.is_ok() {
                    Outcome::Ok
                } else {
                    Outcome::Fail
                },
                node,
                value: json!({
                    "fault": kind.name(),
                    "detail": what,
                    "healed": healed.as_ref().ok().cloned().flatten(),
                    "repl_before": repl_before,
                    "heal_error": healed.err(),
                }),
            });
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }

    async fn begin(&mut self, kind: Kind, cluster: &mut Cluster) -> Fault {
        let leader = current_leader(cluster).await;
        let target = match leader {
            Some(l) if !self.rng.chance(33) => l,
            _ => self.rng.range(0, NODES as u64) as usize,
        };
        match kind {
            Kind::Kill | Kind::Disk => {
                cluster.kill(target).await;
                // Decided now, so the schedule depends on the seed alone.
                let damage = (kind == Kind::Disk).then(|| {
                    (
                        self.rng.range(0, 3),
                        self.rng.range(0, 1_000) as f64 / 1_000.0,
                    )
                });
                Fault {
                    node: Some(target),
                    what: format!("SIGKILL node {target} (leader: {leader:?})"),
                    damage,
                    drift: None,
                }
            }
            Kind::Clock => {
                let variant = self.rng.range(0, 3);
                let step_ms = self.rng.range(20_000, 120_000) as i64;
                let rate_pct = self.rng.range(5, 51) as i64;
                let (what, drift) = match variant {
                    0 | 1 => {
                        let offset_ms = if variant == 0 { step_ms } else { -step_ms };
                        if let Err(e) = cluster.set_clock_offset(target, offset_ms) {
                            eprintln!("clock nemesis: {e}");
                        }
                        (
                            format!(
                                "node {target}'s wall clock stepped {offset_ms:+} ms (leader: {leader:?})"
                            ),
                            None,
                        )
                    }
                    _ => {
                        let rate_pct = if self.rng.chance(50) {
                            rate_pct
                        } else {
                            -rate_pct
                        };
                        let stop = Arc::new(AtomicBool::new(false));
                        let task = tokio::spawn(drift_clock(
                            cluster.clock_file(target),
                            rate_pct,
                            Arc::clone(&stop),
                        ));
                        (
                            format!(
                                "node {target}'s wall clock drifting {rate_pct:+}% (leader: {leader:?})"
                            ),
                            Some((stop, task)),
                        )
                    }
                };
                Fault {
                    node: Some(target),
                    what,
                    damage: None,
                    drift,
                }
            }
            Kind::Pause => {
                cluster.pause(target, true);
                Fault {
                    node: Some(target),
                    what: format!("SIGSTOP node {target} (leader: {leader:?})"),
                    damage: None,
                    drift: None,
                }
            }
            Kind::Partition => {
                let leader = leader.unwrap_or(0);
                let variant = self.rng.range(0, 4);
                let followers: Vec<usize> = (0..NODES).filter(|&i| i != leader).collect();
                let rules = &cluster.proxies[leader].rules;
                let what = match variant {
                    0 => {
                        for &f in &followers {
                            rules.set(node_source(f), Rule::CUT);
                        }
                        for j in 0..SENTINELS {
                            rules.set(sentinel_source(j), Rule::CUT);
                        }
                        format!("node {leader} (leader) cut off from followers and Sentinels")
                    }
                    1 => {
                        for &f in &followers {
                            rules.set(
                                node_source(f),
                                Rule {
                                    drop_to_source: true,
                                    ..Rule::PASS
                                },
                            );
                        }
                        format!("node {leader} (leader): its stream to followers held, one way")
                    }
                    2 => {
                        // Connections stay open and carry nothing: what a dead switch looks
                        // like, rather than a refused connection.
                        for &f in &followers {
                            rules.set(node_source(f), Rule::BLACKHOLE);
                        }
                        for j in 0..SENTINELS {
                            rules.set(sentinel_source(j), Rule::BLACKHOLE);
                        }
                        format!("node {leader} (leader) blackholed from followers and Sentinels")
                    }
                    _ => {
                        // Minority: the leader and Sentinel 0. Majority: the followers and
                        // Sentinels 1 and 2, who cannot reach the leader, nor Sentinel 0 the
                        // followers.
                        for &f in &followers {
                            rules.set(node_source(f), Rule::CUT);
                        }
                        for j in 1..SENTINELS {
                            rules.set(sentinel_source(j), Rule::CUT);
                        }
                        for &f in &followers {
                            cluster.proxies[f].rules.set(sentinel_source(0), Rule::CUT);
                            cluster.proxies[f].rules.set(node_source(leader), Rule::CUT);
                        }
                        format!("minority (node {leader}, Sentinel 0) split from the majority")
                    }
                };
                Fault {
                    node: Some(leader),
                    what,
                    damage: None,
                    drift: None,
                }
            }
        }
    }
}

struct Fault {
    node: Option<usize>,
    what: String,
    /// Disk: how to damage the newest snapshot (variant, where in the file).
    damage: Option<(u64, f64)>,
    /// Clock drift: the task moving the offset, and its stop flag.
    drift: Option<(Arc<AtomicBool>, tokio::task::JoinHandle<()>)>,
}

/// Moves a wall-clock offset by `rate_pct` percent of real time, every 250 ms, until `stop`.
async fn drift_clock(path: std::path::PathBuf, rate_pct: i64, stop: Arc<AtomicBool>) {
    let start = tokio::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let offset_ms = start.elapsed().as_millis() as i64 * rate_pct / 100;
        if let Err(e) = crate::supervisor::write_clock_offset(&path, offset_ms) {
            eprintln!("clock nemesis: {e}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Heals the fault; returns what the healing did, if it is worth recording (a damaged file).
async fn heal(kind: Kind, fault: Fault, cluster: &mut Cluster) -> Result<Option<String>, String> {
    match kind {
        Kind::Disk => {
            let Some(node) = fault.node else {
                return Ok(None);
            };
            let (pick, fraction) = fault.damage.unwrap_or((0, 0.5));
            let damaged = cluster.damage_newest_snapshot(node, pick, fraction);
            cluster.start_node(node).await.map(|()| Some(damaged))
        }
        Kind::Clock => {
            if let Some((stop, task)) = fault.drift {
                stop.store(true, Ordering::Relaxed);
                let _ = task.await;
            }
            match fault.node {
                Some(node) => cluster.set_clock_offset(node, 0).map(|()| None),
                None => Ok(None),
            }
        }
        Kind::Kill => match fault.node {
            Some(node) => cluster.start_node(node).await.map(|()| None),
            None => Ok(None),
        },
        Kind::Pause => {
            if let Some(node) = fault.node {
                cluster.pause(node, false);
            }
            Ok(None)
        }
        Kind::Partition => {
            for proxy in &cluster.proxies {
                proxy.rules.clear();
            }
            Ok(None)
        }
    }
}

/// Sleeps `ms` in short steps; true if `stop` was set meanwhile.
async fn sleep_unless_stopped(ms: u64, stop: &AtomicBool) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_millis(ms);
    while tokio::time::Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.load(Ordering::Relaxed)
}
