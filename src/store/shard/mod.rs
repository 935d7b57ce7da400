//! One shard: its part of the dense slot array, its side table, the extras of users with
//! devices or overrides (all three behind the door, `door.rs`), and its timing wheels.
//!
//! Every operation first *settles* the user — applies whatever time alone has changed (a TTL
//! or grace period that ran out, an override that lapsed) — then computes the user's new state
//! and hands it to the door, which applies it and derives the rest from one change record: a
//! transition appended to the caller's `events` exactly when what subscribers were told
//! differs from the truth now (so a heartbeat of an online user produces none), the counts,
//! and the dirty mark replication drains. A shard does no I/O and never reads the clock: it is
//! handed `now_ms`. Nothing in this module or its children writes a slot or an extras entry
//! beside the door; the tables' fields are private to `door.rs`.
//!
//! Layout: `door` (the tables and `commit`), `settle` (what time changed; a user's settled
//! extras), `presence` (heartbeat, offline, disconnect, override, view), `expiry` (the wheels
//! firing), `keys` (the Redis drop-in surface), `restore` (a snapshot written back), `dirty`
//! (which users changed since replication last looked).

mod dirty;
mod door;
mod expiry;
mod keys;
mod presence;
mod restore;
mod settle;
mod watch;

use std::sync::Arc;

use hashbrown::HashMap;

pub use dirty::ChangedUser;
pub use door::ShardCounters;
pub use expiry::ExpiryPass;
pub use keys::{ExpireCondition, KeyExpiry, KeyTtl, KeyValue, SetCondition};
pub use presence::{StoreError, View};
pub use watch::WatchMark;

use super::event::Transition;
use super::extra::{OwnedKey, ShardKey};
use super::growth::Growth;
use crate::expiry::{LagHistogram, TimingWheel};
use door::{Change, Tables};

/// Whether an operation may make the store hold more: a user it does not track yet (a dense
/// slot or a side-table entry), or a drop-in value. `Full` while the server is past
/// `maxmemory`; the operation decides, in the pass over the user it makes anyway, whether it
/// would add, so a known user's heartbeat costs nothing more to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    Available,
    Full,
}

pub struct Shard {
    /// The slots, side table and extras, written only through `Tables::commit`.
    tables: Tables,
    dense_wheel: TimingWheel<usize>,
    side_wheel: TimingWheel<Arc<[u8]>>,
    /// Wheel entries still pointing at users forgotten since they were armed (`forget`), so
    /// that each is recognised when it fires, or counted again if the user comes back first
    /// (`revive_forgotten`). Empty unless users were forgotten while online; an entry goes
    /// when the last of its wheel entries fires, at most the longest TTL later.
    forgotten_wheel_entries: HashMap<OwnedKey, u32>,
}

impl Shard {
    /// A shard whose growth (`maxmemory`) is counted in `growth`, shared with its store.
    pub fn new(
        dense_len: usize,
        shard_index: usize,
        shard_count: usize,
        growth: Growth,
        now_ms: u64,
    ) -> std::io::Result<Self> {
        Ok(Self {
            tables: Tables::new(dense_len, shard_index, shard_count, growth)?,
            dense_wheel: TimingWheel::new(now_ms),
            side_wheel: TimingWheel::new(now_ms),
            forgotten_wheel_entries: HashMap::new(),
        })
    }

    /// An empty shard of the same size for `FLUSHALL`: its counters stay monotonic and change
    /// tracking stays as it was.
    pub fn flushed(&mut self, now_ms: u64) -> std::io::Result<Self> {
        Ok(Self {
            tables: self.tables.emptied(now_ms)?,
            dense_wheel: TimingWheel::new(now_ms),
            side_wheel: TimingWheel::new(now_ms),
            forgotten_wheel_entries: HashMap::new(),
        })
    }

    /// Bytes of drop-in values this shard holds (`INFO memory`).
    pub fn value_bytes(&self) -> u64 {
        self.tables.value_bytes()
    }

    /// This shard's index and the number of shards (what a snapshot's users are checked
    /// against).
    pub fn placement(&self) -> (usize, usize) {
        self.tables.placement()
    }

    /// One more watcher of this user (`WATCH`); the mark `EXEC` compares.
    pub fn watch(&mut self, key: ShardKey<'_>) -> WatchMark {
        self.tables.watch(key)
    }

    pub fn unwatch(&mut self, key: ShardKey<'_>) {
        self.tables.unwatch(key);
    }

    /// Whether nothing changed this user since `mark` was taken.
    pub fn watch_intact(&self, key: ShardKey<'_>, mark: WatchMark) -> bool {
        self.tables.watch_intact(key, mark)
    }

    /// The door: every change to a slot, a side-table entry or an extras entry passes here.
    #[inline(always)]
    fn commit(&mut self, change: Change<'_>, now_ms: u64, events: &mut Vec<Transition>) {
        self.tables.commit(change, now_ms, events);
    }

    fn arm(&mut self, key: ShardKey<'_>, at_ms: u64) -> u64 {
        match key {
            ShardKey::Dense(index) => self.dense_wheel.insert(at_ms, index),
            ShardKey::Side(id) => {
                let id = self.tables.side_id(id);
                self.side_wheel.insert(at_ms, id)
            }
        }
    }

    fn tick_for(&self, key: ShardKey<'_>, at_ms: u64) -> u64 {
        match key {
            ShardKey::Dense(_) => self.dense_wheel.tick_for(at_ms),
            ShardKey::Side(_) => self.side_wheel.tick_for(at_ms),
        }
    }

    /// Starts or stops recording which users change (for replication). Off by default: while
    /// off, a user costs its 8-byte slot and nothing more. Starting marks nobody: a consumer
    /// takes a snapshot first, then drains what changed after it.
    pub fn track_changes(&mut self, enabled: bool) {
        self.tables.track_changes(enabled);
    }

    /// Appends at most `max` users changed since they were last drained, each with its current
    /// slot, to `out`; a drained user is clean until it changes again. Returns how many.
    pub fn drain_changes(&mut self, max: usize, out: &mut Vec<ChangedUser>) -> usize {
        self.tables.drain_changes(max, out)
    }

    /// Users changed and not yet drained (0 while changes are not tracked).
    pub fn dirty_count(&self) -> usize {
        self.tables.dirty_count()
    }

    pub fn counters(&self) -> ShardCounters {
        self.tables.counters()
    }

    /// Offline-detection lag (deadline to declared offline) of this shard.
    pub fn lag(&self) -> &LagHistogram {
        self.tables.lag()
    }

    pub fn online_count(&self) -> u64 {
        self.tables.online_count()
    }

    pub fn tracked_count(&self) -> u64 {
        self.tables.tracked_count()
    }

    pub fn side_count(&self) -> u64 {
        self.tables.side_count()
    }

    pub fn extras_count(&self) -> u64 {
        self.tables.extras_count()
    }

    /// Bytes the side table holds (an estimate from sizes; `INFO memory`).
    pub fn side_bytes(&self) -> u64 {
        self.tables.side_bytes()
    }

    /// Bytes of dense-slot pages ever written.
    pub fn dense_touched_bytes(&self) -> u64 {
        self.tables.dense_touched_bytes()
    }

    pub fn wheel_len(&self) -> usize {
        self.dense_wheel.len() + self.side_wheel.len()
    }

    pub fn dense_len(&self) -> usize {
        self.tables.dense().len()
    }
}

/// What the unit tests of every child module share: a shard, a hand-held clock, the wheel.
#[cfg(test)]
mod test_support {
    pub use super::{Room, Shard};
    pub use crate::store::event::Transition;
    pub use crate::store::status::State;

    pub const T0_MS: u64 = 1_764_000_000_000;

    pub fn shard() -> Shard {
        Shard::new(1024, 0, 1, Default::default(), T0_MS).expect("map")
    }

    /// Runs the wheel at `now_ms` and returns the transitions it produced.
    pub fn tick(shard: &mut Shard, now_ms: u64) -> Vec<(State, Option<u64>)> {
        let mut events = Vec::new();
        shard.expire_due(now_ms, usize::MAX, &mut events);
        events.iter().map(|e| (e.state, e.last_seen_ms)).collect()
    }

    pub fn states(events: &[Transition]) -> Vec<State> {
        events.iter().map(|e| e.state).collect()
    }
}
