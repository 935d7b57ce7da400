//! `report.md`: what ran, the operations by kind and outcome, the faults with their spans,
//! and each check's counts (inside fault windows, allowed; outside, violations) with its
//! first examples.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::checker::{Bounds, Findings};
use crate::history::{Op, Outcome};

pub fn markdown(
    command: &str,
    ops: &[Op],
    findings: &Findings,
    bounds: &Bounds,
    started_ms: u64,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# presenced-jepsen run\n\n`{command}`\n");
    let mut table: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    for op in ops
        .iter()
        .filter(|op| op.f != "event" && op.f != "subscribed")
    {
        let row = table.entry(op.f).or_default();
        row[match op.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Unknown => 2,
        }] += 1;
    }
    let _ = writeln!(
        out,
        "## Operations\n\n| operation | ok | fail | unknown |\n|---|---|---|---|"
    );
    for (f, [ok, fail, unknown]) in &table {
        let _ = writeln!(out, "| {f} | {ok} | {fail} | {unknown} |");
    }
    let _ = writeln!(out, "| events received | {} | | |\n", findings.events);
    let _ = writeln!(
        out,
        "## Faults\n\nMeasured per fault: the leader before it and at its window's end (who \
         acknowledged heartbeats), the longest time no heartbeat was acknowledged, the bytes the \
         furthest-behind follower lagged just before it, acknowledged heartbeats lost, and the \
         users shown falsely offline or online (reads), with when the last false offline was \
         seen after the fault healed and how far past a deadline a user was shown online.\n\n\
         | start s | end s | fault | leader | no write acked ms | repl behind B | hb lost | \
         false offline users (reads), last after heal ms | false offline events | \
         zombie users (reads), max past deadline ms |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    for ((what, start, end), f) in findings.faults.iter().zip(&findings.per_fault) {
        let node = |n: Option<usize>| n.map_or("?".to_string(), |n| n.to_string());
        let _ = writeln!(
            out,
            "| {:.1} | {:.1} | {what} | {} → {} | {} | {} | {} | {} ({}), {} | {} | {} ({}), {} |",
            start.saturating_sub(started_ms) as f64 / 1000.0,
            end.saturating_sub(started_ms) as f64 / 1000.0,
            node(f.leader_before),
            node(f.leader_after),
            f.write_outage_ms,
            f.repl_behind_bytes
                .map_or("?".to_string(), |b| b.to_string()),
            f.lost_heartbeats,
            f.false_offline_users.len(),
            f.false_offline_reads,
            f.false_offline_last_after_heal_ms
                .map_or("-".to_string(), |t| t.to_string()),
            f.false_offline_events,
            f.zombie_users.len(),
            f.zombie_reads,
            f.zombie_overshoot_max_ms,
        );
    }
    let _ = writeln!(
        out,
        "\n## Measured bounds by kind of fault\n\nThe worst of each figure over the faults of \
         that kind (failovers: faults after which another node acknowledged heartbeats).\n\n\
         | fault | count | failovers | no write acked, max ms | hb lost, max per fault | \
         false offline users, max per fault | last false offline after heal, max ms | \
         false offline events, max per fault (max ms before the deadline) | \
         zombie users, max per fault | past deadline, max ms |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    let mut kinds: BTreeMap<&str, Vec<&crate::checker::FaultFigures>> = BTreeMap::new();
    for f in &findings.per_fault {
        kinds.entry(f.kind.as_str()).or_default().push(f);
    }
    for (kind, list) in &kinds {
        let max = |g: &dyn Fn(&crate::checker::FaultFigures) -> u64| {
            list.iter().map(|f| g(f)).max().unwrap_or(0)
        };
        let last_after = list
            .iter()
            .filter_map(|f| f.false_offline_last_after_heal_ms)
            .max()
            .map_or("-".to_string(), |t| t.to_string());
        let _ = writeln!(
            out,
            "| {kind} | {} | {} | {} | {} | {} | {last_after} | {} ({}) | {} | {} |",
            list.len(),
            list.iter().filter(|f| f.failed_over()).count(),
            max(&|f| f.write_outage_ms),
            max(&|f| f.lost_heartbeats as u64),
            max(&|f| f.false_offline_users.len() as u64),
            max(&|f| f.false_offline_events as u64),
            max(&|f| f.false_offline_event_early_max_ms),
            max(&|f| f.zombie_users.len() as u64),
            max(&|f| f.zombie_overshoot_max_ms),
        );
    }
    let _ = writeln!(
        out,
        "\n## Checks\n\nA fault's window is its span plus {:.1} s; false offline events are \
         allowed only inside a clock fault's window. Bounds: reads may lag an acknowledgement by \
         {} ms; a user may show online up to {} ms past their latest possible deadline.\n\n| check | total | inside fault windows (allowed) | violations |\n|---|---|---|---|",
        bounds.settle_ms as f64 / 1000.0,
        bounds.read_lag_ms,
        bounds.zombie_tolerance_ms
    );
    for (name, count) in findings.checks() {
        let _ = writeln!(
            out,
            "| {name} | {} ({} users) | {} | {} ({} users) |",
            count.total,
            count.users.len(),
            count.in_window,
            count.violations(),
            count.users_outside.len()
        );
    }
    let _ = writeln!(
        out,
        "\nAcknowledged heartbeats: {}; reads: {}.\n",
        findings.acknowledged_heartbeats, findings.reads
    );
    for (name, count) in findings.checks() {
        for example in &count.examples {
            let _ = writeln!(out, "- {name}: {example}");
        }
    }
    let verdict = if findings.violations() == 0 {
        "no violations outside the documented bounds"
    } else {
        "VIOLATIONS"
    };
    let _ = writeln!(out, "\nVerdict: {verdict}.");
    out
}
