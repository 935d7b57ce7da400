//! The checker: reads the history and counts the lies a presence system can tell, each with
//! its first examples, split into those inside a fault window (a fault's span plus the bound
//! documented for that kind of anomaly, allowed) and those outside it (violations).
//!
//! - **false offline**: a read shows a user offline while an acknowledged heartbeat is within
//!   its TTL (acknowledged at least `read_lag_ms` before the read, no logout since);
//! - **zombie online**: a read shows a user online later than `zombie_tolerance_ms` after the
//!   latest deadline any of their heartbeats (acknowledged or unknown) could have set, or after
//!   an acknowledged logout with no heartbeat since;
//! - **false offline event**: an offline event for a user while an acknowledged heartbeat is
//!   within its TTL — the leader itself declared a live user gone; allowed only while a
//!   node's clock is wrong (see `check`);
//! - **lost heartbeat**: an acknowledged heartbeat whose effect a later read on the leader
//!   does not show (last seen earlier than the heartbeat was sent) before the user's next
//!   heartbeat — counted per heartbeat, beside the faults;
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
    /// When each was seen, and whether inside a fault window (for the timeline).
    pub times: Vec<(u64, bool)>,
    pub examples: Vec<String>,
}

impl Count {
    fn add(&mut self, at_ms: u64, in_window: bool, user: &str, example: impl FnOnce() -> String) {
        self.total += 1;
        self.times.push((at_ms, in_window));
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
    pub false_offline_events: Count,
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
    /// Offline events published for a user whose acknowledged heartbeat still held, and the
    /// most any came before that heartbeat's deadline, in ms.
    pub false_offline_events: usize,
    pub false_offline_event_early_max_ms: u64,
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
    pub fn checks(&self) -> [(&'static str, &Count); 6] {
        [
            ("false offline (reads)", &self.false_offline),
            ("false offline (events)", &self.false_offline_events),
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
            let mut what = op.value["detail"].as_str().unwrap_or_default().to_string();
            // What the healing did, where it did more than undo the fault (a damaged file).
            if let Some(healed) = op.value["healed"].as_str() {
                what = format!("{what}; restarted after {healed}");
            }
            (what, op.invoke_ms, op.complete_ms)
        })
        .collect();
    // An observation belongs to the latest fault whose window holds it: windows overlap when
    // a fault follows the last one's heal by less than the settle time.
    let window_of = |t: u64| windows.iter().rposition(|&(a, b)| t >= a && t <= b);
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
    // Offline events come from the leader's own deadlines, so no fault but a wrong clock may
    // produce a false one: a failover's promotion grace keeps every user online at that
    // moment for longer than any fault here lasts. While a node's wall clock is off (and
    // while the 1% steering undoes what it followed, at most as long again) its deadlines
    // may fall up to 1% early.
    let clock_windows: Vec<(u64, u64)> = findings
        .per_fault
        .iter()
        .zip(&windows)
        .filter(|(f, _)| f.kind == "clock")
        .map(|(_, &w)| w)
        .collect();
    let in_clock_window = |t: u64| clock_windows.iter().any(|&(a, b)| t >= a && t <= b);
    // How far a node's presence time may be off at `t`: 1% of the time since its wall clock
    // went wrong, while it was wrong; the same 1% takes it back afterwards.
    let clock_faults: Vec<(u64, u64)> = findings
        .per_fault
        .iter()
        .filter(|f| f.kind == "clock")
        .map(|f| (f.start_ms, f.end_ms))
        .collect();
    let clock_skew_ms = |t: u64| {
        clock_faults
            .iter()
            .filter(|&&(a, e)| t >= a && t <= e + bounds.settle_ms)
            .map(|&(a, e)| (t.min(e) - a) / 100 + 1)
            .max()
            .unwrap_or(0)
    };

    let acked = acknowledgements(ops);
    // The node that acknowledged the latest heartbeat before `t`.
    let leader_at = |t: u64| {
        acked
            .partition_point(|&(at, _)| at < t)
            .checked_sub(1)
            .and_then(|i| acked[i].1)
    };
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
                    findings.false_offline.add(r.invoke_ms, in_window(r.invoke_ms), user, || {
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
                    findings.zombie_online.add(r.invoke_ms, in_window(r.invoke_ms), user, || {
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
        // Lost heartbeats: each acknowledged heartbeat, judged by the last read that is late
        // enough to show it and comes before the user's next heartbeat (which would hide the
        // loss), on the node then acknowledging heartbeats (the leader): a cut-off or paused
        // node's stale reads are false offlines, not losses, and an old leader that
        // acknowledged it before it was cut off may still show it to its own readers.
        for h in hbs.iter().filter(|h| h.outcome == Outcome::Ok) {
            let next_ms = hbs
                .iter()
                .map(|n| n.invoke_ms)
                .filter(|&t| t > h.invoke_ms)
                .min()
                .unwrap_or(u64::MAX);
            let judge = seen.iter().rev().find(|s| {
                s.op.node.is_some()
                    && s.op.node == leader_at(s.op.invoke_ms)
                    && s.op.invoke_ms > h.complete_ms + bounds.read_lag_ms
                    && s.op.complete_ms < next_ms
                    && !logged_out_since_for(outs, h.invoke_ms, s.op.complete_ms)
            });
            if let Some(s) = judge {
                // Last seen is stamped by the leader's presence time: 50 ms for the
                // scheduling between the harness's clock read and the server's, plus what a
                // wrong clock allows.
                let slack_ms = 50 + clock_skew_ms(h.invoke_ms);
                let shows = s.last_seen_ms.is_some_and(|t| t + slack_ms >= h.invoke_ms);
                if !shows {
                    if let Some(f) = window_of(h.invoke_ms) {
                        findings.per_fault[f].lost_heartbeats += 1;
                    }
                    findings.lost_heartbeats.add(h.invoke_ms, in_window(h.invoke_ms), user, || {
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
                    .add(s.op.invoke_ms, in_window(s.op.invoke_ms), user, || {
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
        let hbs = heartbeats.get(user).map_or(&[][..], Vec::as_slice);
        let outs = logouts.get(user).map_or(&[][..], Vec::as_slice);
        let mut previous: Option<&Op> = None;
        for e in list {
            // An offline event while an acknowledged heartbeat holds: the server itself
            // declared a live user gone (not a stale follower's read), which is what the
            // promotion grace exists to prevent.
            let at = e.complete_ms;
            if e.value["state"] == "offline"
                && let Some(h) = hbs.iter().find(|h| {
                    h.outcome == Outcome::Ok
                        && h.complete_ms + bounds.read_lag_ms <= at
                        && at < h.invoke_ms + ttl
                        && !logged_out_since_for(outs, h.invoke_ms, at)
                })
            {
                if let Some(f) = window_of(at) {
                    let figures = &mut findings.per_fault[f];
                    figures.false_offline_events += 1;
                    figures.false_offline_event_early_max_ms = figures
                        .false_offline_event_early_max_ms
                        .max(h.invoke_ms + ttl - at);
                }
                findings.false_offline_events.add(at, in_clock_window(at), user, || {
                    format!(
                        "{user}: offline event from node {:?} at {at} while its heartbeat acknowledged at {} holds until {}",
                        e.node, h.complete_ms, h.invoke_ms + ttl
                    )
                });
            }
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
                        .add(e.complete_ms, in_window(e.complete_ms), user, || {
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
                findings
                    .event_order
                    .add(last.complete_ms, resubscribed, user, || {
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
            findings.zombie_online.add(op.invoke_ms, false, "(store count)", || {
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
            findings.zombie_online.add(s.op.invoke_ms, false, user, || {
                format!(
                    "{user} still {} on node {:?} in the final read",
                    s.state, s.op.node
                )
            });
        }
    }
    findings
}

/// Every acknowledged heartbeat's completion time and node, in time order.
fn acknowledgements(ops: &[Op]) -> Vec<(u64, Option<usize>)> {
    let mut acked: Vec<(u64, Option<usize>)> = ops
        .iter()
        .filter(|op| op.f == "heartbeat" && op.outcome == Outcome::Ok)
        .map(|op| (op.complete_ms, op.node))
        .collect();
    acked.sort_by_key(|&(t, _)| t);
    acked
}

/// Per fault: who acknowledged heartbeats before it and at its window's end, and the longest
/// stretch without any acknowledged heartbeat that overlaps the fault itself.
fn measure_writes(ops: &[Op], per_fault: &mut [FaultFigures], settle_ms: u64) {
    let acked = acknowledgements(ops);
    let next_starts: Vec<u64> = per_fault
        .iter()
        .skip(1)
        .map(|f| f.start_ms)
        .chain([u64::MAX])
        .collect();
    for (figures, next_start) in per_fault.iter_mut().zip(next_starts) {
        let (start, end) = (figures.start_ms, figures.end_ms);
        let before = acked.partition_point(|&(t, _)| t < start);
        figures.leader_before = before.checked_sub(1).and_then(|i| acked[i].1);
        // The leader after: at the window's end, or before the next fault if that is sooner,
        // or at the last acknowledgement of the run (the workload stops at the time limit).
        let last_ack_ms = acked.last().map_or(end, |&(t, _)| t);
        let until = (end + settle_ms)
            .min(next_start.max(end))
            .min(last_ack_ms.max(start));
        let window_end = acked.partition_point(|&(t, _)| t <= until);
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
            outage = outage.max(until.saturating_sub(previous));
        }
        figures.write_outage_ms = outage;
    }
}

fn logged_out_since_for(outs: &[&Op], since_ms: u64, until_ms: u64) -> bool {
    outs.iter()
        .any(|l| l.invoke_ms <= until_ms && l.complete_ms >= since_ms)
}
