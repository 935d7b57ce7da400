//! Which users of one shard changed since a consumer (replication) last drained them: one bit
//! per dense slot with a queue of the dense indices whose bit is set, and a set with a queue
//! for side-table users.
//!
//! State-based, not a log: a user who changes many times between two drains is queued once and
//! drained with their state at drain time. The door (`door.rs`) is the only code that marks a
//! user; this module must never read slots or decide what a change is, and must never exist
//! while nobody consumes it (a shard without a tracker pays one `None` check per change).

use std::collections::VecDeque;
use std::sync::Arc;

use hashbrown::HashSet;

use crate::store::event::UserRef;
use crate::store::slot::Slot;

/// A user who changed, with their slot as it is when drained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedUser {
    pub user: UserRef,
    pub slot: Slot,
}

/// A user the tracker hands back, in the shard's own terms.
pub(super) enum DirtyKey {
    Dense(usize),
    Side(Arc<[u8]>),
}

pub(super) struct DirtyTracker {
    /// One bit per dense slot: 2^31 slots need 256 MiB of bits, but `vec![0; n]` comes from
    /// calloc, so pages no marked user falls in are never touched and cost nothing.
    dense_bits: Vec<u64>,
    /// Dense indices whose bit is set, oldest first. Each index is here at most once (its bit
    /// says so), so the queue never outgrows the users; its capacity is kept across drains, so
    /// marking allocates nothing once it has grown.
    dense_queue: VecDeque<usize>,
    /// Side-table users marked and not drained; the queue keeps them in marking order.
    side_set: HashSet<Arc<[u8]>>,
    side_queue: VecDeque<Arc<[u8]>>,
}

impl DirtyTracker {
    pub(super) fn new(dense_len: usize) -> Self {
        Self {
            dense_bits: vec![0u64; dense_len.div_ceil(64)],
            dense_queue: VecDeque::new(),
            side_set: HashSet::new(),
            side_queue: VecDeque::new(),
        }
    }

    #[inline]
    pub(super) fn mark_dense(&mut self, index: usize) {
        let word = &mut self.dense_bits[index / 64];
        let bit = 1u64 << (index % 64);
        if *word & bit == 0 {
            *word |= bit;
            self.dense_queue.push_back(index);
        }
    }

    pub(super) fn mark_side(&mut self, id: &Arc<[u8]>) {
        if !self.side_set.contains(&**id) {
            self.side_set.insert(Arc::clone(id));
            self.side_queue.push_back(Arc::clone(id));
        }
    }

    /// Users marked and not yet drained.
    pub(super) fn len(&self) -> usize {
        self.dense_queue.len() + self.side_queue.len()
    }

    /// The oldest marked user, now clean until marked again. Alternates between dense and
    /// side-table users so that neither kind waits behind the other.
    pub(super) fn pop(&mut self, prefer_side: bool) -> Option<DirtyKey> {
        if (prefer_side || self.dense_queue.is_empty())
            && let Some(id) = self.side_queue.pop_front()
        {
            self.side_set.remove(&*id);
            return Some(DirtyKey::Side(id));
        }
        let index = self.dense_queue.pop_front()?;
        self.dense_bits[index / 64] &= !(1u64 << (index % 64));
        Some(DirtyKey::Dense(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user marked many times is queued once; popping clears the mark so the next change
    /// queues them again.
    #[test]
    fn marks_coalesce_and_pop_clears() {
        let mut dirty = DirtyTracker::new(1000);
        for _ in 0..5 {
            dirty.mark_dense(7);
            dirty.mark_side(&Arc::from(&b"u-1"[..]));
        }
        assert_eq!(dirty.len(), 2);
        assert!(matches!(dirty.pop(false), Some(DirtyKey::Dense(7))));
        assert!(matches!(dirty.pop(false), Some(DirtyKey::Side(id)) if &*id == b"u-1"));
        assert!(dirty.pop(false).is_none());
        dirty.mark_dense(7);
        assert_eq!(dirty.len(), 1);
    }
}
