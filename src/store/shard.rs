//! One shard: its part of the dense slot array, its side table and its timing wheel.
//!
//! A shard does no I/O and never reads the clock: every method is handed `now_ms`.

use std::sync::Arc;

use hashbrown::HashMap;

use super::slot::Slot;
use super::slot_array::SlotArray;
use crate::expiry::TimingWheel;

/// A user within one shard.
#[derive(Clone, Copy, Debug)]
pub enum ShardKey<'a> {
    /// Index into this shard's slot array (the user ID divided by the shard count).
    Dense(usize),
    Side(&'a [u8]),
}

/// What one pass of offline detection did.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExpiryPass {
    /// Users declared offline because their TTL ran out.
    pub expired_count: u64,
    /// Entries still online that were re-armed at their new deadline.
    pub rearmed_count: u64,
}

pub struct Shard {
    dense: SlotArray,
    side: HashMap<Arc<[u8]>, Slot>,
    dense_wheel: TimingWheel<usize>,
    side_wheel: TimingWheel<Arc<[u8]>>,
    /// Slots whose TTL field is non-zero: online, or expired but not yet reaped by the wheel.
    online_count: u64,
    /// Dense slots ever written (side-table users are counted by the table's length).
    dense_tracked_count: u64,
}

impl Shard {
    pub fn new(dense_len: usize, now_ms: u64) -> std::io::Result<Self> {
        Ok(Self {
            dense: SlotArray::new(dense_len)?,
            side: HashMap::new(),
            dense_wheel: TimingWheel::new(now_ms),
            side_wheel: TimingWheel::new(now_ms),
            online_count: 0,
            dense_tracked_count: 0,
        })
    }

    pub fn get(&self, key: ShardKey<'_>) -> Slot {
        match key {
            ShardKey::Dense(index) => self.dense.get(index),
            ShardKey::Side(id) => self.side.get(id).copied().unwrap_or(Slot::NEVER_SEEN),
        }
    }

    /// Marks the user online now for `ttl_s` seconds. Returns true if this brought them online.
    pub fn heartbeat(&mut self, key: ShardKey<'_>, ttl_s: u64, now_ms: u64) -> bool {
        debug_assert!(ttl_s > 0);
        let deadline_ms = now_ms + ttl_s * 1000;
        match key {
            ShardKey::Dense(index) => {
                let old = self.dense.get(index);
                if !old.armed() {
                    self.dense_wheel.insert(deadline_ms, index);
                }
                self.dense.set(index, Slot::new(now_ms, ttl_s, true));
                if old.is_never_seen() {
                    self.dense_tracked_count += 1;
                }
                self.count_online_transition(old);
                !old.is_online(now_ms)
            }
            ShardKey::Side(id) => {
                let (old, arc_key) = match self.side.get_key_value(id) {
                    Some((k, slot)) => (*slot, Arc::clone(k)),
                    None => (Slot::NEVER_SEEN, Arc::<[u8]>::from(id)),
                };
                if !old.armed() {
                    self.side_wheel.insert(deadline_ms, Arc::clone(&arc_key));
                }
                self.side.insert(arc_key, Slot::new(now_ms, ttl_s, true));
                self.count_online_transition(old);
                !old.is_online(now_ms)
            }
        }
    }

    fn count_online_transition(&mut self, old: Slot) {
        if old.ttl_s() == 0 {
            self.online_count += 1;
        }
    }

    /// Logs the user out now, keeping last-seen. Returns true if they were online.
    pub fn offline(&mut self, key: ShardKey<'_>, now_ms: u64) -> bool {
        let old = self.get(key);
        if old.is_never_seen() {
            return false;
        }
        if old.ttl_s() > 0 {
            self.online_count -= 1;
        }
        // The wheel entry stays armed and finds the user offline when it fires.
        let new = old.offline();
        match key {
            ShardKey::Dense(index) => self.dense.set(index, new),
            ShardKey::Side(id) => {
                if let Some(slot) = self.side.get_mut(id) {
                    *slot = new;
                }
            }
        }
        old.is_online(now_ms)
    }

    /// Declares offline every user whose deadline has passed, looking only at wheel entries
    /// that are due, never at the whole slot array. At most about `due_max` entries per call.
    pub fn expire_due(&mut self, now_ms: u64, due_max: usize) -> ExpiryPass {
        let mut pass = ExpiryPass::default();
        let mut due = Vec::new();
        self.dense_wheel.advance(now_ms, &mut due, due_max);
        for index in due {
            let slot = self.dense.get(index);
            match self.judge(slot, now_ms, &mut pass) {
                Verdict::Rearm(deadline_ms) => self.dense_wheel.insert(deadline_ms, index),
                Verdict::Set(new) => self.dense.set(index, new),
            }
        }
        let mut due = Vec::new();
        self.side_wheel.advance(now_ms, &mut due, due_max);
        for id in due {
            let Some(slot) = self.side.get(&*id).copied() else {
                continue;
            };
            match self.judge(slot, now_ms, &mut pass) {
                Verdict::Rearm(deadline_ms) => self.side_wheel.insert(deadline_ms, id),
                Verdict::Set(new) => {
                    self.side.insert(id, new);
                }
            }
        }
        pass
    }

    fn judge(&mut self, slot: Slot, now_ms: u64, pass: &mut ExpiryPass) -> Verdict {
        match slot.deadline_ms() {
            Some(deadline_ms) if now_ms < deadline_ms => {
                pass.rearmed_count += 1;
                Verdict::Rearm(deadline_ms)
            }
            Some(_) => {
                pass.expired_count += 1;
                self.online_count -= 1;
                Verdict::Set(slot.offline().with_armed(false))
            }
            None => Verdict::Set(slot.with_armed(false)),
        }
    }

    pub fn online_count(&self) -> u64 {
        self.online_count
    }

    pub fn tracked_count(&self) -> u64 {
        self.dense_tracked_count + self.side.len() as u64
    }

    pub fn side_count(&self) -> u64 {
        self.side.len() as u64
    }

    pub fn wheel_len(&self) -> usize {
        self.dense_wheel.len() + self.side_wheel.len()
    }

    pub fn dense_len(&self) -> usize {
        self.dense.len()
    }
}

enum Verdict {
    Rearm(u64),
    Set(Slot),
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0_MS: u64 = 1_764_000_000_000;

    /// Heartbeat, expiry by the wheel and logout, driven by a hand-held clock.
    #[test]
    fn lifecycle_with_controlled_clock() {
        let mut shard = Shard::new(1024, T0_MS).expect("map");
        let user = ShardKey::Dense(7);
        assert!(shard.heartbeat(user, 1, T0_MS));
        assert!(!shard.heartbeat(user, 1, T0_MS + 500));
        assert_eq!(shard.online_count(), 1);
        assert_eq!(shard.wheel_len(), 1);
        // The first entry fires at T0+1 s, finds the later deadline and re-arms.
        let pass = shard.expire_due(T0_MS + 1_000, usize::MAX);
        assert_eq!((pass.expired_count, pass.rearmed_count), (0, 1));
        assert!(shard.get(user).is_online(T0_MS + 1_499));
        let pass = shard.expire_due(T0_MS + 1_500, usize::MAX);
        assert_eq!(pass.expired_count, 1);
        let slot = shard.get(user);
        assert!(!slot.is_online(T0_MS + 1_500));
        assert_eq!(slot.last_seen_ms(), Some(T0_MS + 500));
        assert_eq!(shard.online_count(), 0);
        assert_eq!(shard.wheel_len(), 0);
        assert!(shard.heartbeat(user, 30, T0_MS + 2_000));
        assert!(shard.offline(user, T0_MS + 3_000));
        assert!(!shard.offline(user, T0_MS + 3_000));
        assert_eq!(shard.get(user).last_seen_ms(), Some(T0_MS + 2_000));
        // Coming back before the old entry fires must not add a second entry.
        assert!(shard.heartbeat(user, 30, T0_MS + 4_000));
        assert_eq!(shard.wheel_len(), 1);
        assert_eq!(shard.online_count(), 1);
    }

    /// Side-table users behave exactly like dense ones.
    #[test]
    fn side_table_behaves_identically() {
        let mut shard = Shard::new(16, T0_MS).expect("map");
        let user = ShardKey::Side(b"0b0e5a52-1111-4b3c-9f4e-8d2d7c1f0a11");
        assert!(shard.get(user).is_never_seen());
        assert!(shard.heartbeat(user, 1, T0_MS));
        assert_eq!(shard.tracked_count(), 1);
        assert_eq!(shard.expire_due(T0_MS + 1_000, usize::MAX).expired_count, 1);
        assert_eq!(shard.get(user).last_seen_ms(), Some(T0_MS));
        assert!(!shard.get(user).is_online(T0_MS + 1_000));
        assert_eq!(shard.online_count(), 0);
    }
}
