//! What the store has added to memory since it started: one monotonic count of bytes, bumped
//! by the door when a user or a value takes memory the process did not hold before (a dense
//! page written for the first time, a side-table entry, an extras entry, a value's bytes).
//!
//! `maxmemory` compares the process's resident size with the limit, but reading it costs a
//! `/proc` read, so it is refreshed on a timer (`crate::memory`); between two refreshes this
//! count says how much the store has grown since the last one, so a burst of new users cannot
//! run far past the limit unseen. It never goes down: memory given back shows in the next
//! refresh of the resident size, not here. Nothing on the path of a known user's heartbeat
//! touches it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared by every shard of a store (and read by the memory gauge): one relaxed atomic add
/// per growth, which only new users, new extras entries and values pay.
#[derive(Clone, Debug, Default)]
pub struct Growth(Arc<AtomicU64>);

impl Growth {
    #[inline]
    pub fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes added since the store started.
    #[inline]
    pub fn total_bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
