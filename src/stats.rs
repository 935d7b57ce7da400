//! Server-wide counters that connections and commands bump. Relaxed atomics: they are
//! statistics, not synchronisation, and nothing reads one counter to decide about another.
//! Every counter only grows (except through `CONFIG RESETSTAT`, as in Redis), so a scraper
//! may take differences. `metrics::Metrics` reads them together with the other components'
//! counters; nothing renders them from here.

use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn connection_closed(&self, reason: CloseReason) {
        Self::add(&self.connections_closed[reason.index()], 1);
    }

    /// `CONFIG RESETSTAT`: every counter back to zero.
    pub fn reset(&self) {
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
        for counter in counters.into_iter().chain(&self.connections_closed) {
            counter.store(0, Ordering::Relaxed);
        }
    }
}
