//! Server-wide counters that connections and commands bump. Relaxed atomics: they are
//! statistics, not synchronisation, and nothing reads one counter to decide about another.
//! Every counter only grows (except through `CONFIG RESETSTAT`, as in Redis), so a scraper
//! may take differences. `metrics::Metrics` reads them together with the other components'
//! counters; nothing renders them from here. The per-command counters (`commands`) are kept
//! per thread instead, since they are bumped on every command.

mod commands;

use std::sync::atomic::{AtomicU64, Ordering};

pub use commands::{CommandStats, CommandTotals, LocalTable};

use crate::clients::CloseReason;

#[derive(Debug, Default)]
pub struct Stats {
    pub connections_received: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub commands_processed: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// Error replies to commands (protocol errors are counted in `protocol_errors`).
    pub error_replies: AtomicU64,
    pub heartbeats: AtomicU64,
    pub status_lookups: AtomicU64,
    pub logouts: AtomicU64,
    pub users_expired: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    /// Connections ended, by `CloseReason::index`.
    pub connections_closed: [AtomicU64; CloseReason::COUNT],
    /// Error replies by their first word (`INFO errorstats`), by `ERROR_PREFIXES` index.
    pub errors_by_prefix: [AtomicU64; ERROR_PREFIXES.len()],
    /// Calls, time, rejections and failures of each command (`INFO commandstats`).
    pub commands: CommandStats,
}

/// The first words presenced's error replies start with, as Redis groups them in
/// `INFO errorstats`; anything else is counted under the last, `OTHER`.
pub const ERROR_PREFIXES: [&str; 8] = [
    "ERR",
    "WRONGTYPE",
    "NOAUTH",
    "WRONGPASS",
    "NOPROTO",
    "EXECABORT",
    "OOM",
    "OTHER",
];

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts an error reply whose text is `text` (`total_error_replies` and errorstats).
    pub fn error_reply(&self, text: &str) {
        Self::add(&self.error_replies, 1);
        let prefix = text.split(' ').next().unwrap_or_default();
        let index = ERROR_PREFIXES
            .iter()
            .position(|p| *p == prefix)
            .unwrap_or(ERROR_PREFIXES.len() - 1);
        Self::add(&self.errors_by_prefix[index], 1);
    }

    pub fn connection_closed(&self, reason: CloseReason) {
        Self::add(&self.connections_closed[reason.index()], 1);
    }

    /// `CONFIG RESETSTAT`: every counter back to zero, the per-command ones included (as
    /// Redis resets its command and error tables). The slow log is not a statistic: it stays.
    pub fn reset(&self) {
        self.commands.reset();
        let counters = [
            &self.connections_received,
            &self.connections_rejected,
            &self.commands_processed,
            &self.protocol_errors,
            &self.error_replies,
            &self.heartbeats,
            &self.status_lookups,
            &self.logouts,
            &self.users_expired,
            &self.net_input_bytes,
            &self.net_output_bytes,
        ];
        let per_kind = self.connections_closed.iter().chain(&self.errors_by_prefix);
        for counter in counters.into_iter().chain(per_kind) {
            counter.store(0, Ordering::Relaxed);
        }
    }
}
