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
}

impl Kind {
    pub fn parse_list(text: &str) -> Result<Vec<Kind>, String> {
        text.split(',')
            .filter(|s| !s.is_empty())
            .map(|name| match name {
                "kill" => Ok(Kind::Kill),
                "pause" => Ok(Kind::Pause),
                "partition" => Ok(Kind::Partition),
                "clock" | "disk" => Err(format!(
                    "nemesis '{name}' is not built yet (see jepsen/README.md); use kill, pause, partition"
                )),
                other => Err(format!("unknown nemesis '{other}': kill, pause, partition")),
            })
            .collect()
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Partition => "partition",
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
        loop {
            // Quiet long enough that a fault's window (its span and the settling after it)
            // leaves time the checker judges strictly.
            let quiet_ms = self.rng.range(10_000, 20_000);
            if sleep_unless_stopped(quiet_ms, &stop).await {
                return;
            }
            let kind = self.kinds[self.rng.range(0, self.kinds.len() as u64) as usize];
            let fault_ms = self.rng.range(3_000, 8_000);
            let start_ms = now_ms();
            let detail = {
                let mut cluster = cluster.lock().await;
                self.begin(kind, &mut cluster).await
            };
            // A fault runs its course even past `stop`, so that it is healed and recorded.
            tokio::time::sleep(Duration::from_millis(fault_ms)).await;
            let healed = {
                let mut cluster = cluster.lock().await;
                heal(kind, &detail, &mut cluster).await
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
                node: detail.node,
                value: json!({
                    "fault": kind.name(),
                    "detail": detail.what,
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
            Kind::Kill => {
                cluster.kill(target).await;
                Fault {
                    node: Some(target),
                    what: format!("SIGKILL node {target} (leader: {leader:?})"),
                }
            }
            Kind::Pause => {
                cluster.pause(target, true);
                Fault {
                    node: Some(target),
                    what: format!("SIGSTOP node {target} (leader: {leader:?})"),
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
                }
            }
        }
    }
}

struct Fault {
    node: Option<usize>,
    what: String,
}

async fn heal(kind: Kind, fault: &Fault, cluster: &mut Cluster) -> Result<(), String> {
    match kind {
        Kind::Kill => match fault.node {
            Some(node) => cluster.start_node(node).await,
            None => Ok(()),
        },
        Kind::Pause => {
            if let Some(node) = fault.node {
                cluster.pause(node, false);
            }
            Ok(())
        }
        Kind::Partition => {
            for proxy in &cluster.proxies {
                proxy.rules.clear();
            }
            Ok(())
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
