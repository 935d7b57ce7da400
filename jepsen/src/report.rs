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
        "## Faults\n\n| start s | end s | fault |\n|---|---|---|"
    );
    for (what, start, end) in &findings.faults {
        let _ = writeln!(
            out,
            "| {:.1} | {:.1} | {what} |",
            start.saturating_sub(started_ms) as f64 / 1000.0,
            end.saturating_sub(started_ms) as f64 / 1000.0
        );
    }
    let _ = writeln!(
        out,
        "\n## Checks\n\nA fault's window is its span plus {:.1} s. Bounds: reads may lag an \
         acknowledgement by {} ms; a user may show online up to {} ms past their latest possible \
         deadline.\n\n| check | total | inside fault windows (allowed) | violations |\n|---|---|---|---|",
        bounds.settle_ms as f64 / 1000.0,
        bounds.read_lag_ms,
        bounds.zombie_tolerance_ms
    );
    for (name, count) in findings.checks() {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} |",
            count.total,
            count.in_window,
            count.violations()
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
