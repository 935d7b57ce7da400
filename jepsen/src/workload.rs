//! The workload: simulated users heartbeating at jittered intervals (some with a device),
//! setting a status now and then, logging out or falling silent and coming back; readers
//! calling MSTATUS on the leader and on followers; a subscriber on a follower recording every
//! event. Every client finds its node the way applications do, through Sentinel
//! (`SENTINEL get-master-addr-by-name`, `SENTINEL replicas`), and reaches it through its proxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::history::{History, Op, Outcome, now_ms};
use crate::resp::{Connection, Failure, Reply};
use crate::rng::Rng;
use crate::supervisor::{MASTER_NAME, client_source};

/// How long a client waits for a reply before the operation is unknown.
pub const OP_TIMEOUT: Duration = Duration::from_millis(1000);

#[derive(Clone)]
pub struct Topology {
    pub sentinels: Vec<SocketAddr>,
    /// Proxy port → node index.
    pub proxy_ports: Vec<u16>,
}

impl Topology {
    fn node_of(&self, addr: SocketAddr) -> Option<usize> {
        self.proxy_ports.iter().position(|&p| p == addr.port())
    }

    /// The leader Sentinel names, asked of each Sentinel in turn.
    async fn leader(&self, source: std::net::IpAddr) -> Option<SocketAddr> {
        for &sentinel in &self.sentinels {
            let Ok(mut con) = Connection::connect(sentinel, source, OP_TIMEOUT).await else {
                continue;
            };
            let reply = con
                .call(&[
                    b"SENTINEL",
                    b"get-master-addr-by-name",
                    MASTER_NAME.as_bytes(),
                ])
                .await;
            if let Ok(reply) = reply
                && let [ip, port] = reply.items()
                && let (Some(ip), Some(port)) = (ip.as_text(), port.as_text())
                && let Ok(addr) = format!("{ip}:{port}").parse()
            {
                return Some(addr);
            }
        }
        None
    }

    /// The followers Sentinel knows and does not think down.
    async fn followers(&self, source: std::net::IpAddr) -> Vec<SocketAddr> {
        for &sentinel in &self.sentinels {
            let Ok(mut con) = Connection::connect(sentinel, source, OP_TIMEOUT).await else {
                continue;
            };
            let Ok(reply) = con
                .call(&[b"SENTINEL", b"replicas", MASTER_NAME.as_bytes()])
                .await
            else {
                continue;
            };
            let mut found = Vec::new();
            for replica in reply.items() {
                let fields: Vec<String> = replica
                    .items()
                    .iter()
                    .map(|f| f.as_text().unwrap_or_default())
                    .collect();
                let field = |name: &str| {
                    fields
                        .chunks(2)
                        .find(|pair| pair[0] == name)
                        .and_then(|pair| pair.get(1).cloned())
                };
                let flags = field("flags").unwrap_or_default();
                if flags.contains("down") || flags.contains("disconnected") {
                    continue;
                }
                if let (Some(ip), Some(port)) = (field("ip"), field("port"))
                    && let Ok(addr) = format!("{ip}:{port}").parse()
                {
                    found.push(addr);
                }
            }
            return found;
        }
        Vec::new()
    }
}

/// A connection to what Sentinel currently names (the leader, or one of the followers).
struct Client {
    topology: Topology,
    source: std::net::IpAddr,
    want_leader: bool,
    pick: usize,
    con: Option<(Connection, usize)>,
}

impl Client {
    fn new(topology: Topology, k: usize, want_leader: bool) -> Client {
        Client {
            topology,
            source: client_source(k),
            want_leader,
            pick: k,
            con: None,
        }
    }

    async fn connection(&mut self) -> Result<(&mut Connection, usize), Failure> {
        if self.con.is_none() {
            let addr = if self.want_leader {
                self.topology.leader(self.source).await
            } else {
                let followers = self.topology.followers(self.source).await;
                self.pick += 1;
                followers.get(self.pick % followers.len().max(1)).copied()
            };
            let addr = addr.ok_or_else(|| Failure::Io("no node from Sentinel".into()))?;
            let node = self.topology.node_of(addr).unwrap_or(usize::MAX);
            let mut con = Connection::connect(addr, self.source, OP_TIMEOUT).await?;
            if self.want_leader {
                // Sentinel may still name a leader that stepped down: ask it.
                let role = con.call(&[b"ROLE"]).await?;
                if role.items().first().and_then(Reply::as_text).as_deref() != Some("master") {
                    return Err(Failure::Io(format!("node {node} is not the leader")));
                }
            }
            self.con = Some((con, node));
        }
        let (con, node) = self
            .con
            .as_mut()
            .ok_or(Failure::Io("no connection".into()))?;
        Ok((con, *node))
    }

    /// Runs one command; a failure drops the connection, so the next call discovers again.
    async fn call(&mut self, args: &[&[u8]]) -> (Result<Reply, Failure>, Option<usize>) {
        let (con, node) = match self.connection().await {
            Ok(found) => found,
            Err(err) => return (Err(err), None),
        };
        let result = con.call(args).await;
        let refused = matches!(&result, Ok(Reply::Error(e)) if e.starts_with("READONLY")
            || e.starts_with("NOREPLICAS") || e.starts_with("LOADING"));
        if result.is_err() || refused {
            self.con = None;
        }
        (result, Some(node))
    }
}

pub struct Workload {
    pub users: usize,
    pub writers: usize,
    pub readers: usize,
    pub ttl_s: u64,
    pub seed: Rng,
}

pub fn user_name(u: usize) -> String {
    // Dense IDs for most users, a few in the side table.
    if u % 10 == 9 {
        format!("sess-{u}")
    } else {
        (1000 + u).to_string()
    }
}

fn outcome_of(result: &Result<Reply, Failure>) -> (Outcome, Value) {
    match result {
        Ok(Reply::Error(e)) => (Outcome::Fail, json!({ "error": e })),
        Ok(reply) => (Outcome::Ok, reply_json(reply)),
        Err(Failure::Io(e)) => (Outcome::Fail, json!({ "error": e })),
        Err(Failure::Unknown(e)) => (Outcome::Unknown, json!({ "error": e })),
    }
}

pub fn reply_json(reply: &Reply) -> Value {
    match reply {
        Reply::Simple(s) => json!(s),
        Reply::Error(e) => json!({ "error": e }),
        Reply::Integer(n) => json!(n),
        Reply::Bulk(b) => b
            .as_ref()
            .map_or(Value::Null, |b| json!(String::from_utf8_lossy(b))),
        Reply::Array(items) => items.as_ref().map_or(Value::Null, |items| {
            Value::Array(items.iter().map(reply_json).collect())
        }),
    }
}

impl Workload {
    /// Runs writers and readers until `stop`, the subscriber until `stop_events` (it stays
    /// through the quiescence, to see everyone go offline); records into `history`.
    pub async fn run(
        &self,
        topology: Topology,
        history: History,
        stop: Arc<AtomicBool>,
        stop_events: Arc<AtomicBool>,
    ) {
        let mut tasks = Vec::new();
        for k in 0..self.writers {
            let users: Vec<usize> = (0..self.users).filter(|u| u % self.writers == k).collect();
            let writer = Writer {
                client: Client::new(topology.clone(), k, true),
                process: format!("writer-{k}"),
                users,
                ttl_s: self.ttl_s,
                rng: self.seed.fork(100 + k as u64),
            };
            tasks.push(tokio::spawn(writer.run(history.clone(), Arc::clone(&stop))));
        }
        for r in 0..self.readers {
            // Reader 0 reads the leader, the others followers.
            let reader = Reader {
                client: Client::new(topology.clone(), 50 + r, r == 0),
                process: format!("reader-{r}"),
                users: self.users,
                rng: self.seed.fork(200 + r as u64),
            };
            tasks.push(tokio::spawn(reader.run(history.clone(), Arc::clone(&stop))));
        }
        tasks.push(tokio::spawn(subscribe(
            topology.clone(),
            history.clone(),
            stop_events,
        )));
        for task in tasks {
            let _ = task.await;
        }
    }
}

struct Writer {
    client: Client,
    process: String,
    users: Vec<usize>,
    ttl_s: u64,
    rng: Rng,
}

/// A user's plan: heartbeating until `active_until_ms`, then silent or logged out until
/// `back_at_ms`.
#[derive(Clone, Copy)]
struct Plan {
    next_ms: u64,
    active_until_ms: u64,
    back_at_ms: u64,
    logged_out: bool,
}

impl Writer {
    async fn run(mut self, history: History, stop: Arc<AtomicBool>) {
        let start = now_ms();
        let ttl_ms = self.ttl_s * 1000;
        let mut plans: Vec<Plan> = self
            .users
            .iter()
            .map(|_| {
                let next = start + self.rng.range(0, ttl_ms);
                let active = next + self.rng.range(20_000, 60_000);
                Plan {
                    next_ms: next,
                    active_until_ms: active,
                    back_at_ms: active + self.rng.range(ttl_ms, ttl_ms * 3),
                    logged_out: false,
                }
            })
            .collect();
        while !stop.load(Ordering::Relaxed) {
            let now = now_ms();
            let Some(i) = (0..plans.len()).min_by_key(|&i| plans[i].next_ms) else {
                return;
            };
            if plans[i].next_ms > now {
                tokio::time::sleep(Duration::from_millis((plans[i].next_ms - now).min(50))).await;
                continue;
            }
            let user = user_name(self.users[i]);
            let plan = plans[i];
            if now >= plan.active_until_ms && now < plan.back_at_ms {
                // The active spell ended: log out (a third of the time) or fall silent.
                if !plan.logged_out && self.rng.chance(33) {
                    self.op(
                        &history,
                        "logout",
                        &user,
                        &[b"OFFLINE", user.as_bytes()],
                        json!({}),
                    )
                    .await;
                }
                plans[i].logged_out = true;
                plans[i].next_ms = plan.back_at_ms;
                continue;
            }
            if now >= plan.back_at_ms {
                plans[i].active_until_ms = now + self.rng.range(20_000, 60_000);
                plans[i].back_at_ms = plans[i].active_until_ms + self.rng.range(ttl_ms, ttl_ms * 3);
                plans[i].logged_out = false;
            }
            if self.rng.chance(5) {
                let status: &[u8] = [&b"dnd"[..], b"away", b"none"][self.rng.range(0, 3) as usize];
                self.op(
                    &history,
                    "setstatus",
                    &user,
                    &[b"SETSTATUS", user.as_bytes(), status],
                    json!({ "status": String::from_utf8_lossy(status) }),
                )
                .await;
            }
            let ttl = self.ttl_s.to_string();
            let device = format!("d{}", self.rng.range(0, 2));
            let with_device = self.rng.chance(30);
            let mut args: Vec<&[u8]> = vec![b"HEARTBEAT", user.as_bytes(), b"TTL", ttl.as_bytes()];
            if with_device {
                args.extend([&b"DEVICE"[..], device.as_bytes()]);
            }
            self.op(
                &history,
                "heartbeat",
                &user,
                &args,
                json!({ "ttl_s": self.ttl_s }),
            )
            .await;
            // The next heartbeat a third to two thirds of the TTL later: the seeds' gateways
            // send one every 20 s with a 30 s TTL, and at two thirds a write outage of a few
            // seconds lets deadlines pass, which is what the promotion grace is for.
            plans[i].next_ms = now_ms() + self.rng.range(ttl_ms / 3, ttl_ms * 2 / 3);
        }
    }

    async fn op(
        &mut self,
        history: &History,
        f: &'static str,
        user: &str,
        args: &[&[u8]],
        sent: Value,
    ) {
        let invoke_ms = now_ms();
        let (result, node) = self.client.call(args).await;
        let (outcome, reply) = outcome_of(&result);
        let mut value = sent;
        value["reply"] = reply;
        history.record(Op {
            process: self.process.clone(),
            f,
            users: vec![user.to_string()],
            invoke_ms,
            complete_ms: now_ms(),
            outcome,
            node,
            value,
        });
        if outcome != Outcome::Ok {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Reader {
    client: Client,
    process: String,
    users: usize,
    rng: Rng,
}

impl Reader {
    async fn run(mut self, history: History, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            let picked: Vec<String> = (0..20)
                .map(|_| user_name(self.rng.range(0, self.users as u64) as usize))
                .collect();
            let mut args: Vec<&[u8]> = vec![b"MSTATUS"];
            args.extend(picked.iter().map(|u| u.as_bytes()));
            let invoke_ms = now_ms();
            let (result, node) = self.client.call(&args).await;
            let (outcome, value) = outcome_of(&result);
            history.record(Op {
                process: self.process.clone(),
                f: "mstatus",
                users: picked,
                invoke_ms,
                complete_ms: now_ms(),
                outcome,
                node,
                value,
            });
            tokio::time::sleep(Duration::from_millis(if outcome == Outcome::Ok {
                20
            } else {
                100
            }))
            .await;
        }
    }
}

/// PSUBSCRIBE presence:* on a follower (rediscovered whenever the connection ends); each
/// message is an `event` in the history, with the node it came from.
async fn subscribe(topology: Topology, history: History, stop: Arc<AtomicBool>) {
    let source = client_source(90);
    while !stop.load(Ordering::Relaxed) {
        let followers = topology.followers(source).await;
        let Some(&addr) = followers.first() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let node = topology.node_of(addr);
        let Ok(mut con) = Connection::connect(addr, source, OP_TIMEOUT).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if con.call(&[b"PSUBSCRIBE", b"presence:*"]).await.is_err() {
            continue;
        }
        history.record(Op {
            process: "subscriber".into(),
            f: "subscribed",
            users: Vec::new(),
            invoke_ms: now_ms(),
            complete_ms: now_ms(),
            outcome: Outcome::Ok,
            node,
            value: Value::Null,
        });
        while !stop.load(Ordering::Relaxed) {
            match con.read_reply_within(Duration::from_millis(500)).await {
                Ok(message) => {
                    let parts: Vec<String> = message
                        .items()
                        .iter()
                        .map(|p| p.as_text().unwrap_or_default())
                        .collect();
                    if let [kind, _pattern, channel, payload] = &parts[..]
                        && kind == "pmessage"
                    {
                        let user = channel.strip_prefix("presence:").unwrap_or(channel);
                        let body: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
                        let at = now_ms();
                        history.record(Op {
                            process: "subscriber".into(),
                            f: "event",
                            users: vec![user.to_string()],
                            invoke_ms: at,
                            complete_ms: at,
                            outcome: Outcome::Ok,
                            node,
                            value: json!({
                                "state": body.get("state").cloned().unwrap_or(Value::Null),
                                "last_seen_ms": body.get("last_seen_ms").cloned().unwrap_or(Value::Null),
                            }),
                        });
                    }
                }
                // Quiet for half a second: fine, look at `stop` and go on.
                Err(Failure::Unknown(e)) if e.contains("timed out") => {}
                Err(_) => break,
            }
        }
    }
}
