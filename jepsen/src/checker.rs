//! The checker: reads the history and counts the lies a presence system can tell, each with
//! its first examples, split into those inside a fault window (a fault's span plus the bound
//! documented for that kind of anomaly, allowed) and those outside it (violations).
//!
//! - **false offline**: a read shows a user offline while an acknowledged heartbeat is within
//!   its TTL (acknowledged at least `read_lag_ms` before the read, no logout since);
//! - **zombie online**: a read shows a user online later than `zombie_tolerance_ms` after the
//!   latest deadline any of their heartbeats (acknowledged or unknown) could have set, or after
//!   an acknowledged logout with no heartbeat since;
//! - **lost heartbeat**: an acknowledged heartbeat whose effect a later read does not show
//!   (last seen earlier than the heartbeat was sent) while it is within its TTL — counted per
//!   heartbeat, beside the faults;
//! - **last seen backwards**: one reader on one node sees a user's last-seen move back;
//! - **event order**: a user's events from the subscriber repeat a state or move last-seen
//!   back, or the last event disagrees with the final state (everyone offline once the
//!   workload has stopped and every TTL has run out).

use std::collections::{BTreeSet, HashMap};

use crate::history::{Op, Outcome};

pub struct Bounds {
    pub ttl_ms: u64,
    /// A follower may show a heartbeat this late (replication lag, generous).
    pub read_lag_ms: u64,
    /// Expiry lag on top of a deadline (the expiry tick, the stream, the reads).
    pub zombie_tolerance_ms: u64,
    /// After a fault ends, this long still belongs to its window: Sentinel's failover
    /// (down-after + election), the promotion grace, a heartbeat period to recover.
    pub settle_ms: u64,
}

#[derive(Default)]
pub struct Count {
    pub total: usize,
    pub in_window: usize,
    /// Distinct users with at least one such observation.
    pub users: BTreeSet<String>,
    /// Distinct users with one outside every fault window.
    pub users_outside: BTreeSet<String>,
    pub examples: Vec<String>,
}

impl Count {
    fn add(&mut self, in_window: bool, user: &str, example: impl FnOnce() -> String) {
        self.total += 1;
        self.users.insert(user.to_string());
        if in_window {
            self.in_window += 1;
        } else {
            self.users_outside.insert(user.to_string());
            if self.examples.len() < 3 {
                self.examples.push(example());
            }
        }
    }

    pub fn violations(&self) -> usize {
        self.total - self.in_window
    }
}

#[derive(Default)]
pub struct Findings {
    pub false_offline: Count,
    pub zombie_online: Count,
    pub lost_heartbeats: Count,
    pub last_seen_backwards: Count,
    pub event_order: Count,
    pub acknowledged_heartbeats: usize,
    pub reads: usize,
    pub events: usize,
    pub faults: Vec<(String, u64, u64)>,
    /// What each fault cost, measured from the history (same order as `faults`).
    pub per_fault: Vec<FaultFigures>,
}

/// One fault's cost, measured: what the documented bounds are checked against.
#[derive(Clone, Debug, Default)]
pub struct FaultFigures {
    pub kind: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// The replication the leader reported just before the fault (bytes its furthest-behind
    /// follower lagged, and Redis's `lag` seconds).
    pub repl_behind_bytes: Option<u64>,
    /// The node that acknowledged heartbeats before the fault, and the one at its window's end.
    pub leader_before: Option<usize>,
    pub leader_after: Option<usize>,
    /// The longest time no heartbeat was acknowledged, from a gap that overlaps the fault.
    pub write_outage_ms: u64,
    pub lost_heartbeats: usize,
    pub false_offline_reads: usize,
    pub false_offline_users: BTreeSet<String>,
    /// The last false-offline read, in ms after the fault healed (negative: during it).
    pub false_offline_last_after_heal_ms: Option<i64>,
    pub zombie_reads: usize,
    pub zombie_users: BTreeSet<String>,
    /// The furthest past its deadline (+ tolerance's base) a user was shown online, in ms.
    pub zombie_overshoot_max_ms: u64,
}

impl FaultFigures {
    pub fn failed_over(&self) -> bool {
        self.leader_before.is_some()
            && self.leader_after.is_some()
            && self.leader_before != self.leader_after
    }
}

impl Findings {
    pub fn checks(&self) -> [(&'static str, &Count); 5] {
        [
            ("false offline", &self.false_offline),
            ("zombie online", &self.zombie_online),
            ("acknowledged heartbeat lost", &self.lost_heartbeats),
            ("last seen backwards", &self.last_seen_backwards),
            ("event order / final state", &self.event_order),
        ]
    }

    pub fn violations(&self) -> usize {
        self.checks().iter().map(|(_, c)| c.violations()).sum()
    }
}

/// What one read said of one user.
struct Seen<'a> {
    op: &'a Op,
    state: String,
    last_seen_ms: Option<u64>,
}

fn reads_of(op: &Op) -> Vec<(String, Seen<'_>)> {
    let Some(entries) = op.value.as_array() else {
        return Vec::new();
    };
    op.users
        .iter()
        .zip(entries)
        .filter_map(|(user, entry)| {
            let pair = entry.as_array()?;
            let state = pair.first()?.as_str()?.to_string();
            let last_seen_ms = pair.get(1).and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            });
            Some((
                user.clone(),
                Seen {
                    op,
                    state,
                    last_seen_ms,
                },
            ))
        })
        .collect()
}

pub fn check(ops: &[Op], bounds: &Bounds) -> Findings {
    let mut findings = Findings::default();
    let windows: Vec<(u64, u64)> = ops
        .iter()
        .filter(|op| op.f == "nemesis")
        .map(|op| (op.invoke_ms, op.complete_ms + bounds.settle_ms))
        .collect();
    findings.faults = ops
        .iter()
        .filter(|op| op.f == "nemesis")
        .map(|op| {
            let what = op.value["detail"].as_str().unwrap_or_default().to_string();
            (what, op.invoke_ms, op.complete_ms)
        })
        .collect();
    let window_of = |t: u64| windows.iter().position(|&(a, b)| t >= a && t <= b);
    let in_window = |t: u64| window_of(t).is_some();
    findings.per_fault = ops
        .iter()
        .filter(|op| op.f == "nemesis")
        .map(|op| FaultFigures {
            kind: op.value["fault"].as_str().unwrap_or_default().to_string(),
            start_ms: op.invoke_ms,
            end_ms: op.complete_ms,
            repl_behind_bytes: op.value["repl_before"]["behind_bytes"].as_u64(),
            ..FaultFigures::default()
        })
        .collect();
    measure_writes(ops, &mut findings.per_fault, bounds.settle_ms);

    let mut heartbeats: HashMap<&str, Vec<&Op>> = HashMap::new();
    let mut logouts: HashMap<&str, Vec<&Op>> = HashMap::new();
    let mut reads: HashMap<String, Vec<Seen<'_>>> = HashMap::new();
    let mut events: HashMap<&str, Vec<&Op>> = HashMap::new();
    let mut final_reads: Vec<(String, Seen<'_>)> = Vec::new();
    for op in ops {
        let user = op.users.first().map(String::as_str).unwrap_or_default();
        match op.f {
            "heartbeat" if op.outcome != Outcome::Fail => {
                heartbeats.entry(user).or_default().push(op)
            }
            "logout" if op.outcome != Outcome::Fail => logouts.entry(user).or_default().push(op),
            "mstatus" if op.outcome == Outcome::Ok => {
                findings.reads += 1;
                let seen = reads_of(op);
                if op.process == "final" {
                    final_reads.extend(seen);
                } else {
                    for (user, s) in seen {
                        reads.entry(user).or_default().push(s);
                    }
                }
            }
            "event" => {
                findings.events += 1;
                events.entry(user).or_default().push(op);
            }
            _ => {}
        }
    }
    findings.acknowledged_heartbeats = heartbeats
        .values()
        .flatten()
        .filter(|h| h.outcome == Outcome::Ok)
        .count();

    let ttl = bounds.ttl_ms;
    for (user, seen) in &reads {
        let hbs = heartbeats.get(user.as_str()).map_or(&[][..], Vec::as_slice);
        let outs = logouts.get(user.as_str()).map_or(&[][..], Vec::as_slice);
        for s in seen {
            let r = s.op;
            let offline = s.state == "offline";
            let logged_out_since = |since_ms: u64| {
                outs.iter()
                    .any(|l| l.invoke_ms <= r.complete_ms && l.complete_ms >= since_ms)
            };
            if offline {
                let covering = hbs.iter().find(|h| {
                    h.outcome == Outcome::Ok
                        && h.complete_ms + bounds.read_lag_ms <= r.invoke_ms
                        && r.complete_ms < h.invoke_ms + ttl
                        && !logged_out_since(h.invoke_ms)
                });
                if let Some(h) = covering {
                    if let Some(f) = window_of(r.invoke_ms) {
                        let figures = &mut findings.per_fault[f];
                        figures.false_offline_reads += 1;
                        figures.false_offline_users.insert(user.clone());
                        let after = r.invoke_ms as i64 - figures.end_ms as i64;
                        figures.false_offline_last_after_heal_ms = Some(
                            figures
                                .false_offline_last_after_heal_ms
                                .map_or(after, |a| a.max(after)),
                        );
                    }
                    findings.false_offline.add(in_window(r.invoke_ms), user, || {
                        format!(
                            "{user} offline on node {:?} ({}) at {} while its heartbeat acknowledged at {} holds until {}",
                            r.node, r.process, r.invoke_ms, h.complete_ms, h.invoke_ms + ttl
                        )
                    });
                }
            } else {
                let deadline = hbs
                    .iter()
                    .filter(|h| h.invoke_ms <= r.complete_ms)
                    .map(|h| h.complete_ms + ttl)
                    .max();
                let last_hb_invoke = hbs
                    .iter()
                    .filter(|h| h.invoke_ms <= r.complete_ms)
                    .map(|h| h.invoke_ms)
                    .max();
                let logout_done = outs
                    .iter()
                    .filter(|l| {
                        l.outcome == Outcome::Ok && last_hb_invoke.is_none_or(|t| l.invoke_ms > t)
                    })
                    .map(|l| l.complete_ms + bounds.read_lag_ms)
                    .min();
                let should_be_offline_from = match (deadline, logout_done) {
                    (Some(d), Some(l)) => Some(d.min(l)),
                    (d, l) => d.or(l),
                };
                if let Some(from) = should_be_offline_from
                    && r.invoke_ms > from + bounds.zombie_tolerance_ms
                {
                    if let Some(f) = window_of(r.invoke_ms) {
                        let figures = &mut findings.per_fault[f];
                        figures.zombie_reads += 1;
                        figures.zombie_users.insert(user.clone());
                        figures.zombie_overshoot_max_ms =
                            figures.zombie_overshoot_max_ms.max(r.invoke_ms - from);
                    }
                    findings.zombie_online.add(in_window(r.invoke_ms), user, || {
                        format!(
                            "{user} {} on node {:?} ({}) at {}, {} ms after it should be offline",
                            s.state,
                            r.node,
                            r.process,
                            r.invoke_ms,
                            r.invoke_ms - from
                        )
                    });
                }
            }
        }
        // Lost heartbeats: each acknowledged heartbeat, judged by the first read after it
        // that is late enough to show it and early enough that it still holds.
        for h in hbs.iter().filter(|h| h.outcome == Outcome::Ok) {
            let judge = seen.iter().find(|s| {
                s.op.invoke_ms > h.complete_ms + bounds.read_lag_ms
                    && s.op.complete_ms < h.invoke_ms + ttl
                    && !logged_out_since_for(outs, h.invoke_ms, s.op.complete_ms)
            });
            if let Some(s) = judge {
                let shows = s.last_seen_ms.is_some_and(|t| t + 50 >= h.invoke_ms);
                if !shows {
                    if let Some(f) = window_of(h.invoke_ms) {
                        findings.per_fault[f].lost_heartbeats += 1;
                    }
                    findings.lost_heartbeats.add(in_window(h.invoke_ms), user, || {
                        format!(
                            "{user}: heartbeat sent at {} acknowledged at {}; node {:?} showed {} last seen {:?} at {}",
                            h.invoke_ms, h.complete_ms, s.op.node, s.state, s.last_seen_ms, s.op.invoke_ms
                        )
                    });
                }
            }
        }
        // Last seen never moves back for one reader on one node.
        let mut latest: HashMap<(&str, Option<usize>), (u64, u64)> = HashMap::new();
        for s in seen {
            let Some(t) = s.last_seen_ms else { continue };
            let key = (s.op.process.as_str(), s.op.node);
            if let Some(&(prev, prev_at)) = latest.get(&key)
                && t + 1 < prev
            {
                findings
                    .last_seen_backwards
                    .add(in_window(s.op.invoke_ms), user, || {
                        format!(
                            "{user} on node {:?} ({}): last seen {prev} at {prev_at}, then {t} at {}",
                            s.op.node, s.op.process, s.op.invoke_ms
                        )
                    });
            }
            let entry = latest.entry(key).or_insert((t, s.op.invoke_ms));
            if t >= entry.0 {
                *entry = (t, s.op.invoke_ms);
            }
        }
    }

    // Events: per user, between two (re)subscriptions, states alternate and last-seen does
    // not move back; the last one agrees with the final state.
    let subscriptions: Vec<u64> = ops
        .iter()
        .filter(|op| op.f == "subscribed")
        .map(|op| op.invoke_ms)
        .collect();
    let final_state: HashMap<&str, &str> = final_reads
        .iter()
        .map(|(u, s)| (u.as_str(), s.state.as_str()))
        .collect();
    for (user, list) in &events {
        let mut previous: Option<&Op> = None;
        for e in list {
            if let Some(p) = previous
                && !subscriptions
                    .iter()
                    .any(|&t| t > p.complete_ms && t <= e.complete_ms)
            {
                let state = |op: &Op| op.value["state"].as_str().unwrap_or_default().to_string();
                let seen = |op: &Op| op.value["last_seen_ms"].as_u64();
                let repeated = state(p) == state(e) && state(e) == "offline";
                let backwards = matches!((seen(p), seen(e)), (Some(a), Some(b)) if b + 1 < a);
                if repeated || backwards {
                    findings
                        .event_order
                        .add(in_window(e.complete_ms), user, || {
                            format!(
                                "{user}: event {} (last seen {:?}) at {} after {} (last seen {:?})",
                                state(e),
                                seen(e),
                                e.complete_ms,
                                state(p),
                                seen(p)
                            )
                        });
                }
            }
            previous = Some(e);
        }
        if let (Some(last), Some(fin)) = (list.last(), final_state.get(user)) {
            let last_state = last.value["state"].as_str().unwrap_or_default();
            // The subscriber reconnected after this user's last event: pub/sub is at most once,
            // and what was published in the gap is gone (allowed, counted).
            let resubscribed = subscriptions.iter().any(|&t| t > last.complete_ms);
            if (last_state == "offline") != (*fin == "offline") {
                findings.event_order.add(resubscribed, user, || {
                    format!("{user}: last event {last_state}, final state {fin}")
                });
            }
        }
    }
    // The store's own count after the quiescence: nobody online (reads hide a user past the
    // deadline, so a user the server never declared offline shows only here).
    for op in ops.iter().filter(|op| op.f == "store") {
        let online = op.value["online_users"].as_u64().unwrap_or(0);
        if online > 0 {
            findings.zombie_online.add(false, "(store count)", || {
                format!(
                    "node {:?} still counts {online} users online after the quiescence ({} wheel entries)",
                    op.node, op.value["expiry_wheel_entries"]
                )
            });
        }
    }
    // The final reads: every user offline everywhere once all TTLs ran out.
    for (user, s) in &final_reads {
        if s.state != "offline" {
            findings.zombie_online.add(false, user, || {
                format!(
                    "{user} still {} on node {:?} in the final read",
                    s.state, s.op.node
                )
            });
        }
    }
    findings
}

/// Per fault: who acknowledged heartbeats before it and at its window's end, and the longest
/// stretch without any acknowledged heartbeat that overlaps the fault itself.
fn measure_writes(ops: &[Op], per_fault: &mut [FaultFigures], settle_ms: u64) {
    let mut acked: Vec<(u64, Option<usize>)> = ops
        .iter()
        .filter(|op| op.f == "heartbeat" && op.outcome == Outcome::Ok)
        .map(|op| (op.complete_ms, op.node))
        .collect();
    acked.sort_by_key(|&(t, _)| t);
    for figures in per_fault {
        let (start, end) = (figures.start_ms, figures.end_ms);
        let before = acked.partition_point(|&(t, _)| t < start);
        figures.leader_before = before.checked_sub(1).and_then(|i| acked[i].1);
        let window_end = acked.partition_point(|&(t, _)| t <= end + settle_ms);
        figures.leader_after = window_end.checked_sub(1).and_then(|i| acked[i].1);
        let mut outage = 0;
        let mut previous = before.checked_sub(1).map_or(start, |i| acked[i].0);
        for &(t, _) in &acked[before..window_end] {
            if previous < end {
                outage = outage.max(t - previous);
            }
            previous = t;
        }
        if previous < end {
            // Nothing acknowledged until the window closed.
            outage = outage.max(end + settle_ms - previous);
        }
        figures.write_outage_ms = outage;
    }
}

fn logged_out_since_for(outs: &[&Op], since_ms: u64, until_ms: u64) -> bool {
    outs.iter()
        .any(|l| l.invoke_ms <= until_ms && l.complete_ms >= since_ms)
}
