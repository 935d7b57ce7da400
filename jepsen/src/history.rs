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

    /// Reads a `history.jsonl` back (`--check`): each completion paired with its process's
    /// invoke (a process has one operation outstanding at a time).
    pub fn read_jsonl(path: &std::path::Path) -> Result<History, String> {
        const NAMES: [&str; 8] = [
            "heartbeat",
            "logout",
            "setstatus",
            "mstatus",
            "event",
            "nemesis",
            "subscribed",
            "store",
        ];
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let history = History::default();
        let mut pending: std::collections::HashMap<String, u64> = Default::default();
        for (number, line) in text.lines().enumerate() {
            let bad = |what: &str| format!("{}:{}: {what}", path.display(), number + 1);
            let v: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
            let field = |name: &str| v[name].as_str().unwrap_or_default().to_string();
            let Some(f) = NAMES.iter().copied().find(|n| *n == v["f"]) else {
                return Err(bad("unknown operation"));
            };
            let time_ms = v["time_ms"].as_u64().ok_or_else(|| bad("no time_ms"))?;
            let process = field("process");
            let outcome = match field("type").as_str() {
                "invoke" => {
                    pending.insert(process, time_ms);
                    continue;
                }
                "ok" | "event" => Outcome::Ok,
                "fail" => Outcome::Fail,
                "info" => Outcome::Unknown,
                _ => return Err(bad("unknown type")),
            };
            let invoke_ms = if f == "event" {
                time_ms
            } else {
                pending
                    .remove(&process)
                    .ok_or_else(|| bad("completion without invoke"))?
            };
            let users = v["users"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            history.record(Op {
                process,
                f,
                users,
                invoke_ms,
                complete_ms: time_ms,
                outcome,
                node: v["node"].as_u64().map(|n| n as usize),
                value: v["value"].clone(),
            });
        }
        Ok(history)
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
