//! The presence store: N shards, the router from a user ID to its shard, and batch operations
//! that visit each shard once per batch.
//!
//! Dense user `id` lives in shard `id % N` at index `id / N`, so consecutive IDs spread over
//! all shards. Side-table IDs go to the shard their hash picks. Each shard sits behind its own
//! mutex: no lock is shared by users of different shards. The store never reads the clock.

mod shard;
mod slot;
mod slot_array;
mod user_id;

use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, MutexGuard};

pub use shard::{ExpiryPass, Shard, ShardKey};
pub use slot::{EPOCH_MS, SLOT_TTL_S_MAX, Slot};
pub use user_id::{UserIdError, UserKey, parse_user_id};

/// Most wheel entries one shard examines while holding its lock in one expiry pass, so that
/// 1,000,000 users expiring in the same tick do not stall that shard's heartbeats for long.
pub const EXPIRY_DUE_MAX: usize = 65_536;

pub struct Store {
    shards: Vec<Mutex<Shard>>,
    capacity: u64,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Store {
    pub fn new(capacity: u64, shard_count: usize, now_ms: u64) -> std::io::Result<Self> {
        assert!(shard_count > 0, "at least one shard");
        let per_shard = capacity.div_ceil(shard_count as u64) as usize;
        let shards = (0..shard_count)
            .map(|_| Shard::new(per_shard, now_ms).map(Mutex::new))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            shards,
            capacity,
            hasher: hashbrown::DefaultHashBuilder::default(),
        })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn parse<'a>(&self, id: &'a [u8]) -> Result<UserKey<'a>, UserIdError> {
        parse_user_id(id, self.capacity)
    }

    /// The shard a user lives in and its key there.
    pub fn route<'a>(&self, key: UserKey<'a>) -> (usize, ShardKey<'a>) {
        let n = self.shards.len() as u64;
        match key {
            UserKey::Dense(id) => ((id % n) as usize, ShardKey::Dense((id / n) as usize)),
            UserKey::Side(bytes) => {
                let mut hasher = self.hasher.build_hasher();
                hasher.write(bytes);
                ((hasher.finish() % n) as usize, ShardKey::Side(bytes))
            }
        }
    }

    pub fn lock(&self, shard_index: usize) -> MutexGuard<'_, Shard> {
        // A poisoned lock means a panic while a shard was held; its slots are plain integers
        // and stay meaningful, so serving on is better than failing every later command.
        self.shards[shard_index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn heartbeat(&self, key: UserKey<'_>, ttl_s: u64, now_ms: u64) -> bool {
        let (shard_index, shard_key) = self.route(key);
        self.lock(shard_index).heartbeat(shard_key, ttl_s, now_ms)
    }

    /// Heartbeats every user of `keys`, taking each shard's lock once. Returns how many came
    /// online with this call.
    pub fn heartbeat_many(&self, keys: &[UserKey<'_>], ttl_s: u64, now_ms: u64) -> u64 {
        let routed: Vec<(usize, ShardKey<'_>)> = keys.iter().map(|&k| self.route(k)).collect();
        let mut came_online = 0;
        for shard_index in 0..self.shards.len() {
            if !routed.iter().any(|(s, _)| *s == shard_index) {
                continue;
            }
            let mut shard = self.lock(shard_index);
            for (_, key) in routed.iter().filter(|(s, _)| *s == shard_index) {
                came_online += u64::from(shard.heartbeat(*key, ttl_s, now_ms));
            }
        }
        came_online
    }

    pub fn get(&self, key: UserKey<'_>) -> Slot {
        let (shard_index, shard_key) = self.route(key);
        self.lock(shard_index).get(shard_key)
    }

    /// The slots of `keys`, in request order, taking each shard's lock once.
    pub fn get_many(&self, keys: &[UserKey<'_>]) -> Vec<Slot> {
        let routed: Vec<(usize, ShardKey<'_>)> = keys.iter().map(|&k| self.route(k)).collect();
        let mut slots = vec![Slot::NEVER_SEEN; keys.len()];
        for shard_index in 0..self.shards.len() {
            if !routed.iter().any(|(s, _)| *s == shard_index) {
                continue;
            }
            let shard = self.lock(shard_index);
            for (i, (_, key)) in routed.iter().enumerate() {
                if routed[i].0 == shard_index {
                    slots[i] = shard.get(*key);
                }
            }
        }
        slots
    }

    pub fn offline(&self, key: UserKey<'_>, now_ms: u64) -> bool {
        let (shard_index, shard_key) = self.route(key);
        self.lock(shard_index).offline(shard_key, now_ms)
    }

    /// One offline-detection pass over every shard.
    pub fn expire_due(&self, now_ms: u64) -> ExpiryPass {
        let mut total = ExpiryPass::default();
        for shard_index in 0..self.shards.len() {
            let pass = self.lock(shard_index).expire_due(now_ms, EXPIRY_DUE_MAX);
            total.expired_count += pass.expired_count;
            total.rearmed_count += pass.rearmed_count;
        }
        total
    }

    /// Forgets every user. Each shard's memory is returned to the kernel.
    pub fn flush(&self, now_ms: u64) -> std::io::Result<()> {
        for shard_index in 0..self.shards.len() {
            let mut shard = self.lock(shard_index);
            let dense_len = shard.dense_len();
            *shard = Shard::new(dense_len, now_ms)?;
        }
        Ok(())
    }

    pub fn online_count(&self) -> u64 {
        self.sum(|s| s.online_count())
    }

    pub fn tracked_count(&self) -> u64 {
        self.sum(|s| s.tracked_count())
    }

    pub fn side_count(&self) -> u64 {
        self.sum(|s| s.side_count())
    }

    pub fn wheel_len(&self) -> u64 {
        self.sum(|s| s.wheel_len() as u64)
    }

    fn sum(&self, f: impl Fn(&Shard) -> u64) -> u64 {
        (0..self.shards.len()).map(|i| f(&self.lock(i))).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0_MS: u64 = 1_764_000_000_000;

    /// Batches spread over shards come back in request order.
    #[test]
    fn batches_keep_request_order() {
        let store = Store::new(1 << 20, 3, T0_MS).expect("map");
        let ids: Vec<Vec<u8>> = (0..100u32)
            .map(|i| {
                if i % 7 == 0 {
                    format!("u-{i}")
                } else {
                    i.to_string()
                }
                .into_bytes()
            })
            .collect();
        let keys: Vec<UserKey<'_>> = ids
            .iter()
            .map(|id| store.parse(id).expect("valid"))
            .collect();
        let odd: Vec<UserKey<'_>> = keys.iter().copied().skip(1).step_by(2).collect();
        assert_eq!(store.heartbeat_many(&odd, 30, T0_MS), 50);
        assert_eq!(store.heartbeat_many(&odd, 30, T0_MS + 1), 0);
        let slots = store.get_many(&keys);
        for (i, slot) in slots.iter().enumerate() {
            assert_eq!(slot.is_online(T0_MS + 2), i % 2 == 1, "user {i}");
        }
        assert_eq!(store.online_count(), 50);
        assert_eq!(store.tracked_count(), 50);
        store.flush(T0_MS).expect("flush");
        assert_eq!(store.tracked_count(), 0);
    }
}
