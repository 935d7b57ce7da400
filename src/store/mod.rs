//! The presence store: N shards, the router from a user ID to its shard, and batch operations
//! that visit each shard once per batch.
//!
//! Dense user `id` lives in shard `id % N` at index `id / N`, so consecutive IDs spread over
//! all shards. Side-table IDs go to the shard their hash picks. Each shard sits behind its own
//! mutex: no lock is shared by users of different shards. The store never reads the clock.
//!
//! Transitions are handed to the event sink while the shard's lock is still held, so two
//! transitions of one user reach the sink in the order they happened.

mod event;
mod extra;
mod growth;
mod packed;
mod persist;
mod shard;
mod slot;
mod slot_array;
pub use slot_array::HUGE_PAGES;
mod status;
mod user_id;

use std::sync::{Mutex, MutexGuard, OnceLock};

pub use event::{Cause, Transition, UserRef};
pub use extra::{DEVICE_ID_LEN_MAX, DEVICES_PER_USER_MAX, NO_DEADLINE_MS, ShardKey};
pub use growth::Growth;
pub use persist::{CHUNK_SLOTS, ImportError, ReplicatedBatch};
pub use shard::{
    ChangedUser, ExpireCondition, ExpiryPass, KeyExpiry, KeyTtl, KeyValue, Room, SetCondition,
    Shard, ShardCounters, StoreError, View, WatchMark,
};
pub use slot::{EPOCH_MS, SLOT_TTL_S_MAX, Slot};
pub use status::{AppStatus, ManualStatus, State};
pub use user_id::{UserIdError, UserKey, parse_user_id};

use crate::expiry::LagHistogram;

/// Most wheel entries one shard examines while holding its lock in one expiry pass, so that
/// 1,000,000 users expiring in the same tick do not stall that shard's heartbeats for long.
pub const EXPIRY_DUE_MAX: usize = 65_536;

const SCAN_SHARD_BITS: u32 = 10;
const SCAN_SHARD_MASK: u64 = (1 << SCAN_SHARD_BITS) - 1;

/// The shard a side-table ID lives in among `shard_count`: a fixed function (see `route`),
/// also what a snapshot's side-table users are checked against when loaded.
pub(crate) fn side_shard(id: &[u8], shard_count: usize) -> usize {
    (u64::from(crc32fast::hash(id)) % shard_count as u64) as usize
}

/// Receives every transition, in order per user.
pub type EventSink = Box<dyn Fn(&[Transition]) + Send + Sync>;

/// What one `heartbeat_many` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchHeartbeat {
    /// Users this call brought online.
    pub came_online_count: u64,
    /// Users left out because they are not tracked and the store had no room (`Room::Full`).
    pub refused_count: u64,
}

pub struct Store {
    shards: Vec<Mutex<Shard>>,
    capacity: u64,
    sink: OnceLock<EventSink>,
    growth: Growth,
}

impl Store {
    pub fn new(capacity: u64, shard_count: usize, now_ms: u64) -> std::io::Result<Self> {
        assert!(shard_count > 0, "at least one shard");
        let per_shard = capacity.div_ceil(shard_count as u64) as usize;
        let growth = Growth::default();
        let shards = (0..shard_count)
            .map(|i| Shard::new(per_shard, i, shard_count, growth.clone(), now_ms).map(Mutex::new))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            shards,
            capacity,
            sink: OnceLock::new(),
            growth,
        })
    }

    /// The count of bytes the store has added (new pages, entries, values) since it started,
    /// which the memory gauge adds to its last reading of the resident size.
    pub fn growth(&self) -> &Growth {
        &self.growth
    }

    /// Sets where transitions go; without a sink they are dropped. Set once, at start.
    pub fn set_event_sink(&self, sink: EventSink) {
        let _ = self.sink.set(sink);
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
            // A fixed function, not a per-process random hasher: a snapshot puts each
            // side-table user back in the shard it was saved from, so routing must not change
            // across restarts. Skew from chosen IDs only unbalances shards, it cannot slow a
            // lookup (each shard's table has its own randomised hasher).
            UserKey::Side(bytes) => (side_shard(bytes, self.shards.len()), ShardKey::Side(bytes)),
        }
    }

    pub fn lock(&self, shard_index: usize) -> MutexGuard<'_, Shard> {
        // A poisoned lock means a panic while a shard was held; its slots are plain integers
        // and stay meaningful, so serving on is better than failing every later command.
        self.shards[shard_index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, events: &[Transition]) {
        if events.is_empty() {
            return;
        }
        if let Some(sink) = self.sink.get() {
            sink(events);
        }
    }

    /// Runs `f` on the user's shard and hands its transitions to the sink before unlocking.
    fn with_user<R>(
        &self,
        key: UserKey<'_>,
        f: impl FnOnce(&mut Shard, ShardKey<'_>, &mut Vec<Transition>) -> R,
    ) -> R {
        let (shard_index, shard_key) = self.route(key);
        let mut shard = self.lock(shard_index);
        let mut events = Vec::new();
        let result = f(&mut shard, shard_key, &mut events);
        self.emit(&events);
        result
    }

    /// A heartbeat; with `Room::Full`, refused for a user the store does not track.
    pub fn heartbeat(
        &self,
        key: UserKey<'_>,
        ttl_s: u64,
        app: Option<AppStatus>,
        device: Option<&[u8]>,
        room: Room,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.with_user(key, |shard, k, events| {
            shard.heartbeat(k, ttl_s, app, device, room, now_ms, events)
        })
    }

    /// Heartbeats every user of `keys`, taking each shard's lock once. With `Room::Full`, users
    /// the store does not track are left out and counted, and every tracked one is still
    /// heartbeated: past `maxmemory` a gateway's batch keeps its known users online.
    pub fn heartbeat_many(
        &self,
        keys: &[UserKey<'_>],
        ttl_s: u64,
        room: Room,
        now_ms: u64,
    ) -> BatchHeartbeat {
        let routed: Vec<(usize, ShardKey<'_>)> = keys.iter().map(|&k| self.route(k)).collect();
        let mut batch = BatchHeartbeat::default();
        let mut events = Vec::new();
        for shard_index in 0..self.shards.len() {
            if !routed.iter().any(|(s, _)| *s == shard_index) {
                continue;
            }
            let mut shard = self.lock(shard_index);
            for (_, key) in routed.iter().filter(|(s, _)| *s == shard_index) {
                // Without a device a heartbeat cannot hit the device limit; only room can
                // refuse it.
                match shard.heartbeat(*key, ttl_s, None, None, room, now_ms, &mut events) {
                    Ok(true) => batch.came_online_count += 1,
                    Ok(false) => {}
                    Err(_) => batch.refused_count += 1,
                }
            }
            self.emit(&events);
            events.clear();
        }
        batch
    }

    pub fn view(&self, key: UserKey<'_>, now_ms: u64) -> View {
        let (shard_index, shard_key) = self.route(key);
        self.lock(shard_index).view(shard_key, now_ms)
    }

    /// What readers see of `keys`, in request order, taking each shard's lock once.
    pub fn view_many(&self, keys: &[UserKey<'_>], now_ms: u64) -> Vec<View> {
        let routed: Vec<(usize, ShardKey<'_>)> = keys.iter().map(|&k| self.route(k)).collect();
        let never_seen = View {
            state: State::Offline,
            last_seen_ms: None,
        };
        let mut views = vec![never_seen; keys.len()];
        for shard_index in 0..self.shards.len() {
            if !routed.iter().any(|(s, _)| *s == shard_index) {
                continue;
            }
            let shard = self.lock(shard_index);
            for (view, (s, key)) in views.iter_mut().zip(&routed) {
                if *s == shard_index {
                    *view = shard.view(*key, now_ms);
                }
            }
        }
        views
    }

    pub fn offline(&self, key: UserKey<'_>, device: Option<&[u8]>, now_ms: u64) -> bool {
        self.with_user(key, |shard, k, events| {
            shard.offline(k, device, now_ms, events)
        })
    }

    pub fn disconnect(
        &self,
        key: UserKey<'_>,
        device: Option<&[u8]>,
        grace_ms: u64,
        now_ms: u64,
    ) -> bool {
        self.with_user(key, |shard, k, events| {
            shard.disconnect(k, device, grace_ms, now_ms, events)
        })
    }

    pub fn set_status(
        &self,
        key: UserKey<'_>,
        manual: Option<ManualStatus>,
        ttl_s: Option<u64>,
        room: Room,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.with_user(key, |shard, k, events| {
            shard.set_status(k, manual, ttl_s, room, now_ms, events)
        })
    }

    pub fn key_value(&self, key: UserKey<'_>, now_ms: u64) -> Option<Vec<u8>> {
        let (shard_index, shard_key) = self.route(key);
        self.lock(shard_index).key_value(shard_key, now_ms)
    }

    /// `MEMORY USAGE`: the bytes a key holds, `None` while it does not exist.
    pub fn key_memory_bytes(&self, key: UserKey<'_>, now_ms: u64) -> Option<u64> {
        let (shard_index, shard_key) = self.route(key);
        self.lock(shard_index).key_memory_bytes(shard_key, now_ms)
    }

    /// Bytes of drop-in values held over every shard (`INFO memory`).
    pub fn value_bytes(&self) -> u64 {
        self.sum(|s| s.value_bytes())
    }

    /// Values of many keys in request order, taking each shard's lock once.
    pub fn key_values(&self, keys: &[UserKey<'_>], now_ms: u64) -> Vec<Option<Vec<u8>>> {
        let routed: Vec<(usize, ShardKey<'_>)> = keys.iter().map(|&k| self.route(k)).collect();
        let mut values = vec![None; keys.len()];
        for shard_index in 0..self.shards.len() {
            if !routed.iter().any(|(s, _)| *s == shard_index) {
                continue;
            }
            let shard = self.lock(shard_index);
            for (value, (s, key)) in values.iter_mut().zip(&routed) {
                if *s == shard_index {
                    *value = shard.key_value(*key, now_ms);
                }
            }
        }
        values
    }

    pub fn key_ttl(&self, key: UserKey<'_>, now_ms: u64) -> KeyTtl {
        let (shard_index, shard_key) = self.route(key);
        self.lock(shard_index).key_ttl(shard_key, now_ms)
    }

    pub fn set_key(
        &self,
        key: UserKey<'_>,
        value: KeyValue<'_>,
        expiry: KeyExpiry,
        condition: SetCondition,
        room: Room,
        now_ms: u64,
    ) -> Result<(bool, Option<Vec<u8>>), StoreError> {
        self.with_user(key, |shard, k, events| {
            shard.set_key(k, value, expiry, condition, room, now_ms, events)
        })
    }

    /// Whether `SET` of `value` would make the store hold more (a user not tracked yet, or a
    /// value that is not a status word): what `MSET` asks of every pair before setting any
    /// past `maxmemory`.
    pub fn set_adds(&self, key: UserKey<'_>, value: KeyValue<'_>) -> bool {
        let (shard_index, shard_key) = self.route(key);
        self.lock(shard_index).set_adds(shard_key, value)
    }

    pub fn expire_key(
        &self,
        key: UserKey<'_>,
        at_ms: Option<u64>,
        condition: ExpireCondition,
        now_ms: u64,
    ) -> bool {
        self.with_user(key, |shard, k, events| {
            shard.expire_key(k, at_ms, condition, now_ms, events)
        })
    }

    /// `DEL`: forgets the user (presence and last-seen; their memory is freed), whether or not
    /// their key exists. Returns whether it existed: a user online is told offline first.
    pub fn del_key(&self, key: UserKey<'_>, now_ms: u64) -> bool {
        self.with_user(key, |shard, k, events| {
            let existed = shard.view(k, now_ms).state.is_online();
            shard.forget(k, now_ms, events);
            existed
        })
    }

    /// One step of a cursor walk over users whose key exists. The cursor packs the shard (low
    /// 10 bits) and the position within it; 0 starts a walk and is returned when it ends.
    pub fn scan(&self, cursor: u64, budget: usize, now_ms: u64, out: &mut Vec<UserRef>) -> u64 {
        let shard_count = self.shards.len() as u64;
        let mut shard_index = cursor & SCAN_SHARD_MASK;
        let mut position = cursor >> SCAN_SHARD_BITS;
        if shard_index >= shard_count {
            return 0;
        }
        loop {
            let next = self
                .lock(shard_index as usize)
                .scan(position, budget, now_ms, out);
            match next {
                Some(position) => return (position << SCAN_SHARD_BITS) | shard_index,
                None if shard_index + 1 < shard_count => {
                    shard_index += 1;
                    position = 0;
                    if !out.is_empty() {
                        return shard_index;
                    }
                }
                None => return 0,
            }
        }
    }

    /// One offline-detection pass over every shard.
    pub fn expire_due(&self, now_ms: u64) -> ExpiryPass {
        let mut total = ExpiryPass::default();
        let mut events = Vec::new();
        for shard_index in 0..self.shards.len() {
            let mut shard = self.lock(shard_index);
            let pass = shard.expire_due(now_ms, EXPIRY_DUE_MAX, &mut events);
            self.emit(&events);
            events.clear();
            total.expired_count += pass.expired_count;
            total.rearmed_count += pass.rearmed_count;
        }
        total
    }

    /// Forgets every user. Each shard's memory is returned to the kernel.
    pub fn flush(&self, now_ms: u64) -> std::io::Result<()> {
        for shard_index in 0..self.shards.len() {
            let mut shard = self.lock(shard_index);
            let fresh = shard.flushed(now_ms)?;
            *shard = fresh;
        }
        Ok(())
    }

    /// Offline-detection lag over all shards.
    pub fn lag(&self) -> LagHistogram {
        let mut total = LagHistogram::default();
        for shard_index in 0..self.shards.len() {
            total.merge(self.lock(shard_index).lag());
        }
        total
    }

    /// Starts watching a user for `WATCH`: any later change to them (a heartbeat, a `SET`, a
    /// logout, an expiry, `FLUSHALL`) makes `watch_intact` false for the returned mark.
    pub fn watch(&self, key: UserKey<'_>) -> WatchMark {
        let (shard_index, shard_key) = self.route(key);
        self.lock(shard_index).watch(shard_key)
    }

    /// Ends one `watch` of the user.
    pub fn unwatch(&self, key: UserKey<'_>) {
        let (shard_index, shard_key) = self.route(key);
        self.lock(shard_index).unwatch(shard_key);
    }

    pub fn watch_intact(&self, key: UserKey<'_>, mark: WatchMark) -> bool {
        let (shard_index, shard_key) = self.route(key);
        self.lock(shard_index).watch_intact(shard_key, mark)
    }

    /// The door's monotonic change counters, summed over every shard.
    pub fn counters(&self) -> ShardCounters {
        let mut total = ShardCounters::default();
        for shard_index in 0..self.shards.len() {
            total.merge(&self.lock(shard_index).counters());
        }
        total
    }

    /// Starts or stops recording which users change, in every shard, for a consumer such as
    /// replication. Off by default, so that a user costs 8 bytes; see
    /// docs/design/change-records.md.
    pub fn track_changes(&self, enabled: bool) {
        for shard_index in 0..self.shards.len() {
            self.lock(shard_index).track_changes(enabled);
        }
    }

    /// Appends to `out` at most `max` users of shard `shard_index` that changed since they were
    /// last drained, each with its current slot, holding that shard's lock for the batch only.
    /// Returns how many were appended (0 while changes are not tracked).
    pub fn drain_changes(
        &self,
        shard_index: usize,
        max: usize,
        out: &mut Vec<ChangedUser>,
    ) -> usize {
        self.lock(shard_index).drain_changes(max, out)
    }

    /// Replication, on a leader: drains at most `max` changed users of shard `shard_index` into
    /// a batch (their state now): plain dense users packed into `packed`, the others as
    /// records appended to `records`; returns how many.
    pub fn encode_changes(
        &self,
        shard_index: usize,
        max: usize,
        packed: &mut Vec<u8>,
        records: &mut Vec<u8>,
    ) -> usize {
        let mut plain = Vec::new();
        let drained = self
            .lock(shard_index)
            .encode_changes(max, &mut plain, records);
        // Sorted and packed with the lock released: a full drain's packing is most of its time.
        packed::encode(&mut plain, packed);
        drained
    }

    /// Replication, on a follower: applies records a leader's shard `shard_index` encoded,
    /// publishing their transitions as if they had happened here. Errors name the bad record;
    /// records before it stay applied (each is a whole user's state, so that is consistent).
    pub fn apply_changes(
        &self,
        shard_index: usize,
        batch: ReplicatedBatch<'_>,
        now_ms: u64,
    ) -> Result<usize, ImportError> {
        if shard_index >= self.shards.len() {
            return Err(ImportError(format!(
                "shard {shard_index} does not exist here ({} shards)",
                self.shards.len()
            )));
        }
        let mut events = Vec::new();
        let mut shard = self.lock(shard_index);
        let applied = shard.apply_changes(batch, self.capacity, now_ms, &mut events);
        // Published while the shard is held, as every change's events are: in order.
        self.emit(&events);
        applied
    }

    /// Replication, on a promoted follower: its wheels rebuilt from the users it holds, every
    /// online user's deadline at least `grace_ms` away (see `Shard::rebuild_wheels`).
    pub fn rebuild_wheels(&self, now_ms: u64, grace_ms: u64) {
        for shard_index in 0..self.shards.len() {
            self.lock(shard_index).rebuild_wheels(now_ms, grace_ms);
        }
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

    pub fn extras_count(&self) -> u64 {
        self.sum(|s| s.extras_count())
    }

    /// Bytes the side tables hold (an estimate from sizes).
    pub fn side_bytes(&self) -> u64 {
        self.sum(|s| s.side_bytes())
    }

    /// Bytes of dense-slot pages ever written, over every shard.
    pub fn dense_touched_bytes(&self) -> u64 {
        self.sum(|s| s.dense_touched_bytes())
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

    /// With change tracking on, heartbeats of online users still allocate nothing once a first
    /// drain has grown the tracker's queues: the bitmap and queue capacity are reused.
    #[test]
    fn tracked_heartbeats_do_not_allocate() {
        let store = Store::new(1 << 16, 2, T0_MS).expect("store");
        store.track_changes(true);
        let users = 1_000u64;
        for id in 0..users {
            assert_eq!(
                store.heartbeat(UserKey::Dense(id), 30, None, None, Room::Available, T0_MS),
                Ok(true)
            );
        }
        let mut out = Vec::with_capacity(users as usize);
        let drain_all = |out: &mut Vec<ChangedUser>| {
            out.clear();
            (0..store.shard_count())
                .map(|s| store.drain_changes(s, usize::MAX, out))
                .sum::<usize>()
        };
        assert_eq!(drain_all(&mut out), users as usize, "the warm-up drain");
        let before = crate::alloc_count::allocations();
        for i in 0..10_000u64 {
            let came_online = store.heartbeat(
                UserKey::Dense(i % users),
                30,
                None,
                None,
                Room::Available,
                T0_MS + 1 + i,
            );
            assert_eq!(came_online, Ok(false));
        }
        let allocated = crate::alloc_count::allocations() - before;
        assert_eq!(allocated, 0, "allocations on the tracked heartbeat path");
        assert_eq!(drain_all(&mut out), users as usize, "each user once");
        assert_eq!(store.counters().came_online_count, users);
    }

    /// `FLUSHALL` empties the store but keeps the counters and change tracking.
    #[test]
    fn flush_keeps_counters_and_tracking() {
        let store = Store::new(1 << 10, 2, T0_MS).expect("store");
        store.track_changes(true);
        store
            .heartbeat(UserKey::Dense(1), 30, None, None, Room::Available, T0_MS)
            .expect("heartbeat");
        store.flush(T0_MS).expect("flush");
        assert_eq!(store.online_count(), 0);
        assert_eq!(store.counters().came_online_count, 1);
        store
            .heartbeat(UserKey::Dense(1), 30, None, None, Room::Available, T0_MS)
            .expect("heartbeat");
        let mut out = Vec::new();
        assert_eq!(store.drain_changes(1, 10, &mut out), 1);
        assert_eq!(out[0].user, UserRef::Dense(1));
    }
}
