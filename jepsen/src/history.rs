//! The history: every operation with its invocation and completion (ok, fail, or unknown when
//! it timed out or its connection broke), every event a subscriber received, and every fault
//! with its start and end. Times are wall-clock milliseconds, the clock the server's
//! `last_seen_ms` uses. Written as JSON lines, an invoke and a completion line per operation,
//! in time order.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail,
    Unknown,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "info",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Op {
    pub process: String,
    /// `heartbeat`, `logout`, `setstatus`, `mstatus`, `event`, or `nemesis`.
    pub f: &'static str,
    pub users: Vec<String>,
    pub invoke_ms: u64,
    pub complete_ms: u64,
    pub outcome: Outcome,
    /// The node (0..3) that served it, when known.
    pub node: Option<usize>,
    /// What the operation carried or returned (TTL, states, the fault's kind, an error).
    pub value: Value,
}

/// The wall clock, in ms: the harness compares its times with the servers' `last_seen_ms`,
/// which are wall-clock too (the server's own rule to read time through its clock module does
/// not apply to a separate process that judges it).
#[allow(clippy::disallowed_methods)]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Clone, Default)]
pub struct History {
    ops: Arc<Mutex<Vec<Op>>>,
}

impl History {
    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    pub fn ops(&self) -> Vec<Op> {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone();
        ops.sort_by_key(|op| (op.invoke_ms, op.complete_ms));
        ops
    }

    /// `history.jsonl`: an invoke line and a completion line per operation (one line for an
    /// event), sorted by time.
    pub fn write_jsonl(&self, path: &std::path::Path) -> std::io::Result<()> {
        let mut lines: Vec<(u64, String)> = Vec::new();
        for op in self.ops() {
            let base = |kind: &str, time: u64| {
                json!({
                    "time_ms": time,
                    "process": op.process,
                    "type": kind,
                    "f": op.f,
                    "users": op.users,
                    "node": op.node,
                })
            };
            if op.f == "event" {
                let mut line = base("event", op.complete_ms);
                line["value"] = op.value.clone();
                lines.push((op.complete_ms, line.to_string()));
                continue;
            }
            let mut invoke = base("invoke", op.invoke_ms);
            if op.f != "mstatus" {
                invoke["value"] = op.value.clone();
            }
            lines.push((op.invoke_ms, invoke.to_string()));
            let mut done = base(op.outcome.name(), op.complete_ms);
            done["value"] = op.value.clone();
            lines.push((op.complete_ms, done.to_string()));
        }
        lines.sort_by_key(|(t, _)| *t);
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (_, line) in lines {
            writeln!(file, "{line}")?;
        }
        file.flush()
    }
}
