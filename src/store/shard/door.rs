//! The door: the one place where a shard's user state changes. `Tables` owns the slot array,
//! the side table (and its insertion order) and the extras table, and only `Tables::commit`
//! writes them.
//!
//! An operation computes a user's new state (a `Change`: the new slot, and the new extras entry
//! or its removal) and hands it to `commit`, which applies it, builds a `ChangeRecord` on the
//! stack and derives from that record everything that follows from a change: the transition
//! handed to the event sink, `online_count` and the other counts, the offline-detection lag,
//! the monotonic `ShardCounters`, the dirty mark replication drains, and the store's growth
//! count (`maxmemory`). Nothing here decides what a user's state should be (that is `settle.rs`
//! and the operations), and nothing outside this module may write these tables: the fields are
//! private so that the compiler says so.
//!
//! A user whose slot becomes `NEVER_SEEN` is forgotten: a dense slot goes back to zero (its
//! page stays resident), a side-table entry is removed and its memory freed. Side-table users
//! keep a position for `SCAN`; a freed position is left empty and reused by a later user, never
//! filled by moving another, so a user present for a whole walk keeps their position and is
//! found (see `side_at`).

use std::sync::Arc;

use hashbrown::HashMap;

use super::dirty::{ChangedUser, DirtyKey, DirtyTracker};
use super::watch::{WatchMark, WatchTable};
use crate::expiry::LagHistogram;
use crate::store::event::{Cause, Transition, UserRef};
use crate::store::extra::{Extra, OwnedKey, ShardKey};
use crate::store::growth::Growth;
use crate::store::slot::Slot;
use crate::store::slot_array::{PAGE_BYTES, SlotArray};
use crate::store::status::State;

/// What an operation does to a user's extras entry.
pub(super) enum ExtraWrite {
    /// Leaves the entry (or its absence) as it is.
    Keep,
    /// Stores this entry, replacing any.
    Put(Extra),
    /// Removes the entry: the user is plain again.
    Remove,
}

/// Where a change comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// Something that happened in this process: a command or the timing wheel.
    Operation,
    /// A snapshot being loaded. Recorded and marked dirty like any change, but it produces no
    /// transition and moves no counter: nothing happened to the user, the process restarted.
    Snapshot,
}

/// A user's new state, handed to the door.
pub(super) struct Change<'k> {
    pub key: ShardKey<'k>,
    pub slot: Slot,
    pub extra: ExtraWrite,
    pub cause: Cause,
    /// The deadline that ran out, when this change (also) declares the user's time up: it
    /// counts as an expiry, its lag is recorded, and a change to offline is a `Timeout`.
    pub expired_deadline_ms: Option<u64>,
    /// The last-seen subscribers are shown with a transition (frozen while invisible).
    pub shown_last_seen_ms: Option<u64>,
    pub origin: Origin,
}

impl<'k> Change<'k> {
    /// A change of the slot alone, by an operation, showing the slot's last-seen.
    #[inline]
    pub(super) fn slot(key: ShardKey<'k>, slot: Slot, cause: Cause) -> Self {
        Self {
            key,
            slot,
            extra: ExtraWrite::Keep,
            cause,
            expired_deadline_ms: None,
            shown_last_seen_ms: slot.last_seen_ms(),
            origin: Origin::Operation,
        }
    }
}

/// What the door did to the extras table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ExtraEffect {
    Kept,
    Written,
    Removed,
}

/// One applied change, as everything derived from it sees it. Built on the stack per commit;
/// nothing keeps it (replication drains current state, see `dirty.rs`).
#[derive(Clone, Copy, Debug)]
pub(super) struct ChangeRecord<'k> {
    pub key: ShardKey<'k>,
    pub slot_before: Slot,
    pub slot_after: Slot,
    pub extra: ExtraEffect,
    /// The state subscribers were told before, and the state they must be told now.
    pub published_before: State,
    pub published_after: State,
    pub shown_last_seen_ms: Option<u64>,
    /// After the expiry adjustment: a change to offline with an expired deadline is `Timeout`.
    pub cause: Cause,
    pub expired_deadline_ms: Option<u64>,
    pub origin: Origin,
}

/// Monotonic counts of what the door applied, for metrics. They survive `FLUSHALL` (a flushed
/// shard inherits them) so that a scraper never sees one go backwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// Changes applied, snapshot loads included.
    pub commit_count: u64,
    /// Transitions handed to the event sink.
    pub transition_count: u64,
    /// Users whose slot went from offline to connected.
    pub came_online_count: u64,
    /// Users who went offline because a deadline ran out (what `ExpiryPass` reports).
    pub went_offline_timeout_count: u64,
    /// Users who went offline any other way: `OFFLINE`, `DEL`, a past expiry on a key.
    pub went_offline_logout_count: u64,
}

impl ShardCounters {
    pub fn merge(&mut self, other: &ShardCounters) {
        self.commit_count += other.commit_count;
        self.transition_count += other.transition_count;
        self.came_online_count += other.came_online_count;
        self.went_offline_timeout_count += other.went_offline_timeout_count;
        self.went_offline_logout_count += other.went_offline_logout_count;
    }
}

fn value_len(extra: &Extra) -> u64 {
    extra.value.as_ref().map_or(0, |v| v.len() as u64)
}

/// A side-table user's slot and their position in `Tables::side_order`.
#[derive(Clone, Copy, Debug)]
struct SideEntry {
    slot: Slot,
    position: usize,
}

/// What one side-table user costs beyond their ID's bytes, as an estimate from sizes (the
/// allocator's own overhead is guessed at 8 bytes per allocation, rounded to 16): the shared
/// ID's allocation (two reference counts), the table's bucket and control byte, the position.
pub(super) const SIDE_ENTRY_OVERHEAD_BYTES: u64 = (2 * 8 + 8)
    + std::mem::size_of::<(Arc<[u8]>, SideEntry)>() as u64
    + 1
    + std::mem::size_of::<Option<Arc<[u8]>>>() as u64;

/// What a new extras entry costs: its bucket in the table and its control byte (devices and
/// values are counted apart).
const EXTRA_ENTRY_BYTES: u64 = std::mem::size_of::<(OwnedKey, Extra)>() as u64 + 1;

/// Below this many entries a side table is not shrunk after removals: rehashing a small table
/// to save a few kilobytes is not worth the work.
const SIDE_SHRINK_CAPACITY_MIN: usize = 1024;

/// The state a user's visible state is compared with when it is plain: connected means the app
/// status, anything else offline.
#[inline]
pub(super) fn plain_state(slot: Slot) -> State {
    if slot.ttl_s() > 0 {
        slot.app_status().state()
    } else {
        State::Offline
    }
}

pub(super) struct Tables {
    shard_index: u64,
    shard_count: u64,
    dense: SlotArray,
    side: HashMap<Arc<[u8]>, SideEntry>,
    /// Side-table users by position, the order `SCAN` walks. A forgotten user leaves a hole
    /// (`None`) that a later user fills: a user never moves, so a position is a stable `SCAN`
    /// cursor while users come and go. Holes cost 16 bytes each until they are filled or the
    /// table empties (then positions start over: no user is left for a walk to miss).
    side_order: Vec<Option<Arc<[u8]>>>,
    /// The holes of `side_order`, reused last freed first.
    side_free: Vec<usize>,
    /// Bytes of the side table's IDs (`INFO memory`'s `side_table_bytes`).
    side_id_bytes: u64,
    /// The store's growth count, shared by its shards (`maxmemory`).
    growth: Growth,
    extras: HashMap<OwnedKey, Extra>,
    /// Slots whose TTL field is non-zero: users connected as of their last settling.
    online_count: u64,
    /// Dense slots ever written (side-table users are counted by the table's length).
    dense_tracked_count: u64,
    counters: ShardCounters,
    lag: LagHistogram,
    /// `None` until a consumer asks for change tracking, so that a user costs 8 bytes.
    dirty: Option<DirtyTracker>,
    /// Users some client `WATCH`es, with a version each commit to them moves.
    watches: WatchTable,
    /// Bytes of drop-in values held in extras entries (`INFO memory`).
    value_bytes: u64,
}

impl Tables {
    pub(super) fn new(
        dense_len: usize,
        shard_index: usize,
        shard_count: usize,
        growth: Growth,
    ) -> std::io::Result<Self> {
        Ok(Self {
            shard_index: shard_index as u64,
            shard_count: shard_count as u64,
            dense: SlotArray::new(dense_len)?,
            side: HashMap::new(),
            side_order: Vec::new(),
            side_free: Vec::new(),
            side_id_bytes: 0,
            growth,
            extras: HashMap::new(),
            online_count: 0,
            dense_tracked_count: 0,
            counters: ShardCounters::default(),
            lag: LagHistogram::default(),
            dirty: None,
            watches: WatchTable::default(),
            value_bytes: 0,
        })
    }

    /// Empty tables of the same size that keep the counters and whether changes are tracked
    /// (for `FLUSHALL`). The lag histogram starts over, as it always has.
    /// Watches move over too, those of users whose key existed marked changed (as Redis's
    /// `FLUSHALL` touches the watched keys it deletes).
    pub(super) fn emptied(&mut self, now_ms: u64) -> std::io::Result<Self> {
        let mut tables = Self::new(
            self.dense.len(),
            self.shard_index as usize,
            self.shard_count as usize,
            self.growth.clone(),
        )?;
        tables.counters = self.counters;
        tables.track_changes(self.dirty.is_some());
        let mut watches = std::mem::take(&mut self.watches);
        watches.touch_where(|key| self.key_exists(key, now_ms));
        tables.watches = watches;
        Ok(tables)
    }

    /// Bytes of drop-in values this shard holds.
    pub(super) fn value_bytes(&self) -> u64 {
        self.value_bytes
    }

    /// This shard's index and the number of shards.
    pub(super) fn placement(&self) -> (usize, usize) {
        (self.shard_index as usize, self.shard_count as usize)
    }

    /// Whether the user's presence key exists now: they read as online.
    fn key_exists(&self, key: ShardKey<'_>, now_ms: u64) -> bool {
        let slot = self.slot(key);
        match self.extra(key).filter(|_| slot.has_extra()) {
            Some(extra) => extra.truth(slot.last_seen_ms(), now_ms).state.is_online(),
            None => slot.is_online(now_ms) && slot.app_status().state().is_online(),
        }
    }

    /// One more watcher of `key` (`WATCH`).
    pub(super) fn watch(&mut self, key: ShardKey<'_>) -> WatchMark {
        let owned = match key {
            ShardKey::Dense(index) => OwnedKey::Dense(index),
            ShardKey::Side(id) => OwnedKey::Side(self.side_id(id)),
        };
        self.watches.watch(key, || owned)
    }

    pub(super) fn unwatch(&mut self, key: ShardKey<'_>) {
        self.watches.unwatch(key);
    }

    /// Whether nothing changed `key` since `mark` was taken.
    pub(super) fn watch_intact(&self, key: ShardKey<'_>, mark: WatchMark) -> bool {
        self.watches.intact(key, mark)
    }

    /// Applies `change` and derives its consequences from the record of it. Always inlined:
    /// at each call site most of it folds away (a plain heartbeat knows it keeps the extras
    /// entry and that its user has none), which keeps the hot path a slot read and a write.
    #[inline(always)]
    pub(super) fn commit(&mut self, change: Change<'_>, now_ms: u64, events: &mut Vec<Transition>) {
        let key = change.key;
        let before = self.slot(key);
        let published_before = self.published(key, before);
        let published_after = match &change.extra {
            ExtraWrite::Put(extra) => extra.published,
            ExtraWrite::Remove => plain_state(change.slot),
            ExtraWrite::Keep => self.published(key, change.slot),
        };
        let forgotten = self.write_slot(key, before, change.slot);
        let extra = match change.extra {
            ExtraWrite::Keep => ExtraEffect::Kept,
            ExtraWrite::Put(extra) => {
                self.put_extra(key, extra);
                ExtraEffect::Written
            }
            ExtraWrite::Remove => {
                if let Some(removed) = self.extras.remove(&key) {
                    self.value_bytes -= value_len(&removed);
                }
                ExtraEffect::Removed
            }
        };
        let cause = if published_after == State::Offline && change.expired_deadline_ms.is_some() {
            Cause::Timeout
        } else {
            change.cause
        };
        let record = ChangeRecord {
            key,
            slot_before: before,
            slot_after: change.slot,
            extra,
            published_before,
            published_after,
            shown_last_seen_ms: change.shown_last_seen_ms,
            cause,
            expired_deadline_ms: change.expired_deadline_ms,
            origin: change.origin,
        };
        // The slot's EXTRA flag says whether the extras table is consulted: a write that
        // disagrees with it would hide an entry or point at a missing one.
        debug_assert!(match record.extra {
            ExtraEffect::Written => record.slot_after.has_extra(),
            ExtraEffect::Removed => !record.slot_after.has_extra(),
            ExtraEffect::Kept => true,
        });
        self.count(&record, now_ms);
        self.publish(&record, events);
        self.track(&record, forgotten);
        if !self.watches.is_empty() {
            self.watches.touch(record.key);
        }
    }

    /// The state subscribers were last told about a user whose slot is `slot`.
    #[inline]
    fn published(&self, key: ShardKey<'_>, slot: Slot) -> State {
        if !slot.has_extra() {
            return plain_state(slot);
        }
        self.extras
            .get(&key)
            .map_or(plain_state(slot), |extra| extra.published)
    }

    /// Writes the slot; a user whose slot becomes `NEVER_SEEN` is forgotten. Returns the ID
    /// of a side-table user this removed (for the dirty mark, which needs the shared copy).
    #[inline]
    fn write_slot(&mut self, key: ShardKey<'_>, before: Slot, slot: Slot) -> Option<Arc<[u8]>> {
        match key {
            ShardKey::Dense(index) => {
                match (before.is_never_seen(), slot.is_never_seen()) {
                    (false, false) => {}
                    (true, false) => {
                        self.dense_tracked_count += 1;
                        if !self.dense.page_touched(index) {
                            // The kernel backs the page at this first write.
                            self.growth.add(PAGE_BYTES);
                        }
                    }
                    (false, true) => self.dense_tracked_count -= 1,
                    // Nothing to write, and an untouched page stays untouched.
                    (true, true) => return None,
                }
                self.dense.set(index, slot);
                None
            }
            ShardKey::Side(id) => match self.side.get_mut(id) {
                Some(stored) if !slot.is_never_seen() => {
                    stored.slot = slot;
                    None
                }
                Some(_) => self.remove_side(id),
                None if !slot.is_never_seen() => {
                    self.insert_side(id, slot);
                    None
                }
                // A user never seen stays absent: nothing is stored for them.
                None => None,
            },
        }
    }

    /// A new side-table user, at the most recently freed position or at the end.
    fn insert_side(&mut self, id: &[u8], slot: Slot) {
        let id: Arc<[u8]> = Arc::from(id);
        let position = match self.side_free.pop() {
            Some(position) => {
                debug_assert!(self.side_order[position].is_none(), "a hole is empty");
                self.side_order[position] = Some(Arc::clone(&id));
                position
            }
            None => {
                self.side_order.push(Some(Arc::clone(&id)));
                self.side_order.len() - 1
            }
        };
        self.side_id_bytes += id.len() as u64;
        self.growth.add(id.len() as u64 + SIDE_ENTRY_OVERHEAD_BYTES);
        self.side.insert(id, SideEntry { slot, position });
    }

    /// Forgets a side-table user: their entry and ID are freed (the ID's memory once the wheel,
    /// the dirty tracker and watches no longer hold it), their position becomes a hole.
    fn remove_side(&mut self, id: &[u8]) -> Option<Arc<[u8]>> {
        let (id, entry) = self.side.remove_entry(id)?;
        match self.side_order.get_mut(entry.position) {
            Some(hole) => *hole = None,
            None => debug_assert!(false, "side-table position {} out of range", entry.position),
        }
        self.side_id_bytes -= id.len() as u64;
        if self.side.is_empty() {
            // Nobody is left for a SCAN in progress to miss: positions start over, and the
            // order, the holes and the table give their memory back.
            self.side_order = Vec::new();
            self.side_free = Vec::new();
            self.side.shrink_to(0);
        } else {
            self.side_free.push(entry.position);
            // Halving when under a quarter full keeps removal amortised O(1).
            let capacity = self.side.capacity();
            if capacity > SIDE_SHRINK_CAPACITY_MIN && self.side.len() * 4 < capacity {
                self.side.shrink_to(self.side.len() * 2);
            }
        }
        Some(id)
    }

    fn put_extra(&mut self, key: ShardKey<'_>, extra: Extra) {
        self.value_bytes += value_len(&extra);
        if let Some(stored) = self.extras.get_mut(&key) {
            let stored_len = value_len(stored);
            self.value_bytes -= stored_len;
            self.growth
                .add(value_len(&extra).saturating_sub(stored_len));
            *stored = extra;
            return;
        }
        self.growth.add(EXTRA_ENTRY_BYTES + value_len(&extra));
        // `write_slot` ran first, so a side-table user's ID is in the table to share.
        let owned = match key {
            ShardKey::Dense(index) => OwnedKey::Dense(index),
            ShardKey::Side(id) => OwnedKey::Side(self.side_id(id)),
        };
        self.extras.insert(owned, extra);
    }

    /// Connectivity counts, expiries and their lag, and the monotonic counters.
    #[inline]
    fn count(&mut self, record: &ChangeRecord<'_>, now_ms: u64) {
        self.counters.commit_count += 1;
        let live = record.origin == Origin::Operation;
        match (
            record.slot_before.ttl_s() > 0,
            record.slot_after.ttl_s() > 0,
        ) {
            (false, true) => {
                self.online_count += 1;
                if live {
                    self.counters.came_online_count += 1;
                }
            }
            (true, false) => {
                self.online_count -= 1;
                if !live {
                    return;
                }
                match record.expired_deadline_ms {
                    Some(deadline_ms) => {
                        self.counters.went_offline_timeout_count += 1;
                        self.lag.record(now_ms.saturating_sub(deadline_ms));
                    }
                    None => self.counters.went_offline_logout_count += 1,
                }
            }
            _ => {}
        }
    }

    /// A transition exactly when the published state changes.
    #[inline]
    fn publish(&mut self, record: &ChangeRecord<'_>, events: &mut Vec<Transition>) {
        if record.published_before == record.published_after || record.origin == Origin::Snapshot {
            return;
        }
        self.counters.transition_count += 1;
        events.push(Transition {
            user: self.user_ref(record.key),
            state: record.published_after,
            last_seen_ms: record.shown_last_seen_ms,
            cause: record.cause,
        });
    }

    /// The replication hook: marks the user for the next drain, if anyone drains. A forgotten
    /// side-table user is marked with the ID the table gave back (a drain then reports them
    /// never seen).
    #[inline]
    fn track(&mut self, record: &ChangeRecord<'_>, forgotten: Option<Arc<[u8]>>) {
        let Some(dirty) = &mut self.dirty else {
            return;
        };
        match (record.key, forgotten) {
            (ShardKey::Dense(index), _) => dirty.mark_dense(index),
            (ShardKey::Side(_), Some(id)) => dirty.mark_side(&id),
            (ShardKey::Side(id), None) => {
                if let Some((id, _)) = self.side.get_key_value(id) {
                    dirty.mark_side(id);
                }
            }
        }
    }

    /// Starts (with nothing dirty) or stops tracking changed users. Stopping frees the tracker.
    pub(super) fn track_changes(&mut self, enabled: bool) {
        match (enabled, self.dirty.is_some()) {
            (true, false) => self.dirty = Some(DirtyTracker::new(self.dense.len())),
            (false, true) => self.dirty = None,
            _ => {}
        }
    }

    /// Appends at most `max` changed users with their current slot to `out`, oldest change
    /// first; each is clean until it changes again. Returns how many were appended.
    pub(super) fn drain_changes(&mut self, max: usize, out: &mut Vec<ChangedUser>) -> usize {
        let Some(dirty) = &mut self.dirty else {
            return 0;
        };
        let mut drained = 0;
        while drained < max {
            let Some(key) = dirty.pop(drained % 2 == 1) else {
                break;
            };
            let (user, slot) = match key {
                DirtyKey::Dense(index) => (
                    UserRef::Dense(index as u64 * self.shard_count + self.shard_index),
                    self.dense.get(index),
                ),
                DirtyKey::Side(id) => {
                    let slot = self.side.get(&id).map_or(Slot::NEVER_SEEN, |e| e.slot);
                    (UserRef::Side(id), slot)
                }
            };
            out.push(ChangedUser { user, slot });
            drained += 1;
        }
        drained
    }

    /// Users changed and not drained yet (0 while changes are not tracked).
    pub(super) fn dirty_count(&self) -> usize {
        self.dirty.as_ref().map_or(0, DirtyTracker::len)
    }

    #[inline]
    pub(super) fn slot(&self, key: ShardKey<'_>) -> Slot {
        match key {
            ShardKey::Dense(index) => self.dense.get(index),
            ShardKey::Side(id) => self.side.get(id).map_or(Slot::NEVER_SEEN, |e| e.slot),
        }
    }

    /// The user's extras entry, looked up whatever the slot's flag says.
    pub(super) fn extra(&self, key: ShardKey<'_>) -> Option<&Extra> {
        self.extras.get(&key)
    }

    /// The user as an owned key (a side-table user's ID shared with the table if stored).
    pub(super) fn owned_key(&self, key: ShardKey<'_>) -> OwnedKey {
        match key {
            ShardKey::Dense(index) => OwnedKey::Dense(index),
            ShardKey::Side(id) => OwnedKey::Side(self.side_id(id)),
        }
    }

    /// The side table's shared copy of `id` (a new one if the user is not stored yet).
    pub(super) fn side_id(&self, id: &[u8]) -> Arc<[u8]> {
        match self.side.get_key_value(id) {
            Some((arc, _)) => Arc::clone(arc),
            None => Arc::from(id),
        }
    }

    pub(super) fn user_ref(&self, key: ShardKey<'_>) -> UserRef {
        match key {
            ShardKey::Dense(index) => {
                UserRef::Dense(index as u64 * self.shard_count + self.shard_index)
            }
            ShardKey::Side(id) => UserRef::Side(self.side_id(id)),
        }
    }

    /// The side-table user at `position`: `None` past the last position, `Some(None)` for a
    /// hole a forgotten user left. Positions only ever hold one user each until that user is
    /// forgotten, which is what lets `SCAN` walk them while users come and go.
    pub(super) fn side_at(&self, position: usize) -> Option<Option<&Arc<[u8]>>> {
        self.side_order.get(position).map(Option::as_ref)
    }

    /// Side-table users with their slots, in position order (holes left out).
    pub(super) fn side_users(&self) -> impl Iterator<Item = (&Arc<[u8]>, Slot)> {
        self.side_order.iter().flatten().map(|id| {
            let slot = self.side.get(id).map_or(Slot::NEVER_SEEN, |e| e.slot);
            (id, slot)
        })
    }

    pub(super) fn extras(&self) -> impl Iterator<Item = (&OwnedKey, &Extra)> {
        self.extras.iter()
    }

    pub(super) fn dense(&self) -> &SlotArray {
        &self.dense
    }

    pub(super) fn online_count(&self) -> u64 {
        self.online_count
    }

    pub(super) fn tracked_count(&self) -> u64 {
        self.dense_tracked_count + self.side.len() as u64
    }

    pub(super) fn side_count(&self) -> u64 {
        self.side.len() as u64
    }

    /// What the side table holds, in bytes: the hash table's allocation, the IDs with their
    /// allocation overhead, the position list and its holes. An estimate from sizes.
    pub(super) fn side_bytes(&self) -> u64 {
        /// A shared ID's allocation beyond its bytes: two counts and the allocator's header.
        const ID_ALLOCATION_BYTES: u64 = 2 * 8 + 8;
        self.side.allocation_size() as u64
            + self.side_id_bytes
            + self.side.len() as u64 * ID_ALLOCATION_BYTES
            + (self.side_order.capacity() * std::mem::size_of::<Option<Arc<[u8]>>>()) as u64
            + (self.side_free.capacity() * std::mem::size_of::<usize>()) as u64
    }

    /// Bytes of dense-slot pages ever written (resident unless swapped out).
    pub(super) fn dense_touched_bytes(&self) -> u64 {
        self.dense.touched_page_count() as u64 * PAGE_BYTES
    }

    pub(super) fn extras_count(&self) -> u64 {
        self.extras.len() as u64
    }

    pub(super) fn counters(&self) -> ShardCounters {
        self.counters
    }

    pub(super) fn lag(&self) -> &LagHistogram {
        &self.lag
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::store::extra::ShardKey;
    use crate::store::shard::{ExpireCondition, KeyExpiry, KeyValue, SetCondition};
    use crate::store::status::{AppStatus, ManualStatus};

    /// Drains every changed user of `shard`.
    fn drain(shard: &mut Shard) -> Vec<ChangedUser> {
        let mut out = Vec::new();
        shard.drain_changes(usize::MAX, &mut out);
        out
    }

    fn dense(id: u64, shard: &Shard) -> ChangedUser {
        let slot = shard.tables.slot(ShardKey::Dense(id as usize));
        ChangedUser {
            user: UserRef::Dense(id),
            slot,
        }
    }

    /// Every mutating operation marks its user dirty, a drain hands the user back with the
    /// current slot and leaves them clean, and a second drain finds nobody.
    #[test]
    fn every_operation_marks_its_user_dirty() {
        let mut shard = shard();
        shard.track_changes(true);
        let user = ShardKey::Dense(3);
        let mut events = Vec::new();
        let mut t_ms = T0_MS;
        let check = |shard: &mut Shard, what: &str| {
            assert_eq!(drain(shard), vec![dense(3, shard)], "{what}");
            assert!(drain(shard).is_empty(), "{what}: drained users are clean");
        };
        shard
            .heartbeat(user, 30, None, None, Room::Available, t_ms, &mut events)
            .expect("heartbeat");
        check(&mut shard, "heartbeat coming online");
        t_ms += 1_000;
        shard
            .heartbeat(user, 30, None, None, Room::Available, t_ms, &mut events)
            .expect("heartbeat");
        check(&mut shard, "heartbeat of an online user");
        assert!(shard.offline(user, None, t_ms, &mut events));
        check(&mut shard, "offline");
        shard
            .heartbeat(
                user,
                30,
                None,
                Some(b"phone"),
                Room::Available,
                t_ms,
                &mut events,
            )
            .expect("heartbeat");
        drain(&mut shard);
        assert!(shard.disconnect(user, None, 5_000, t_ms, &mut events));
        check(&mut shard, "disconnect");
        shard
            .set_status(
                user,
                Some(ManualStatus::Dnd),
                None,
                Room::Available,
                t_ms,
                &mut events,
            )
            .expect("room");
        check(&mut shard, "setstatus");
        let (set, _) = shard
            .set_key(
                user,
                KeyValue::Custom(b"{}"),
                KeyExpiry::At(t_ms + 10_000),
                SetCondition::Always,
                Room::Available,
                t_ms,
                &mut events,
            )
            .expect("room");
        assert!(set);
        check(&mut shard, "set_key");
        assert!(shard.expire_key(
            user,
            Some(t_ms + 2_000),
            ExpireCondition::Always,
            t_ms,
            &mut events
        ));
        check(&mut shard, "expire_key");
        shard
            .set_status(user, None, None, Room::Available, t_ms, &mut events)
            .expect("room");
        drain(&mut shard);
        tick(&mut shard, t_ms + 2_100);
        assert_eq!(shard.view(user, t_ms + 2_100).state, State::Offline);
        check(&mut shard, "expiry by the wheel");
    }

    /// A user who changes many times between two drains is drained once, with the state of
    /// the last change; batches are bounded by `max`.
    #[test]
    fn repeated_changes_coalesce() {
        let mut shard = shard();
        shard.track_changes(true);
        let mut events = Vec::new();
        for i in 0..100 {
            for id in [1, 2] {
                shard
                    .heartbeat(
                        ShardKey::Dense(id),
                        30,
                        None,
                        None,
                        Room::Available,
                        T0_MS + i,
                        &mut events,
                    )
                    .expect("heartbeat");
            }
            shard
                .heartbeat(
                    ShardKey::Side(b"u-1"),
                    30,
                    None,
                    None,
                    Room::Available,
                    T0_MS + i,
                    &mut events,
                )
                .expect("heartbeat");
        }
        assert_eq!(shard.dirty_count(), 3);
        let mut out = Vec::new();
        assert_eq!(shard.drain_changes(2, &mut out), 2);
        assert_eq!(shard.drain_changes(2, &mut out), 1);
        assert_eq!(shard.drain_changes(2, &mut out), 0);
        assert_eq!(out.len(), 3);
        assert!(out.contains(&dense(1, &shard)) && out.contains(&dense(2, &shard)));
        let side = out
            .iter()
            .find(|c| c.user == UserRef::Side(Arc::from(&b"u-1"[..])))
            .expect("the side-table user");
        assert_eq!(
            side.slot.last_seen_ms(),
            Some(T0_MS + 99),
            "the latest state"
        );
    }

    /// Loading a snapshot marks every restored user dirty (a follower must hear of them).
    #[test]
    fn import_marks_users_dirty() {
        let mut saved = shard();
        let mut events = Vec::new();
        saved
            .heartbeat(
                ShardKey::Dense(5),
                30,
                None,
                None,
                Room::Available,
                T0_MS,
                &mut events,
            )
            .expect("heartbeat");
        saved
            .heartbeat(
                ShardKey::Side(b"u-1"),
                30,
                None,
                Some(b"phone"),
                Room::Available,
                T0_MS,
                &mut events,
            )
            .expect("heartbeat");
        let mut loaded = shard();
        loaded.track_changes(true);
        for chunk in saved.touched_chunks() {
            let mut bytes = vec![0; saved.chunk_slot_count(chunk) * 8];
            saved.export_chunk(chunk, &mut bytes);
            loaded.import_chunk(chunk, &bytes).expect("chunk");
        }
        let (mut side, mut extras) = (Vec::new(), Vec::new());
        saved.export_side(&mut side);
        saved.export_extras(&mut extras);
        loaded.import_side(&side, 1024).expect("side");
        loaded.import_extras(&extras, 1024).expect("extras");
        loaded.finish_import(T0_MS + 1_000);
        let users: Vec<UserRef> = drain(&mut loaded).into_iter().map(|c| c.user).collect();
        assert_eq!(users.len(), 2, "{users:?}");
        assert!(users.contains(&UserRef::Dense(5)));
        assert!(users.contains(&UserRef::Side(Arc::from(&b"u-1"[..]))));
        assert_eq!(loaded.online_count(), 2);
        assert_eq!(
            loaded.counters().transition_count,
            0,
            "a load publishes nothing"
        );
    }

    /// Forgetting users (`DEL`) marks them dirty like any change: a drain reports them never
    /// seen, a side-table user included although the table no longer holds them.
    #[test]
    fn forgetting_marks_users_dirty() {
        let mut shard = shard();
        let mut events = Vec::new();
        for key in [ShardKey::Dense(5), ShardKey::Side(b"u-1")] {
            shard
                .heartbeat(key, 30, None, None, Room::Available, T0_MS, &mut events)
                .expect("heartbeat");
        }
        shard.track_changes(true);
        for key in [ShardKey::Dense(5), ShardKey::Side(b"u-1")] {
            assert!(shard.forget(key, T0_MS + 1, &mut events));
        }
        let drained = drain(&mut shard);
        assert_eq!(drained.len(), 2, "{drained:?}");
        assert!(drained.iter().all(|c| c.slot == Slot::NEVER_SEEN));
        assert!(drained.iter().any(|c| c.user == UserRef::Dense(5)));
        assert!(
            drained
                .iter()
                .any(|c| c.user == UserRef::Side(Arc::from(&b"u-1"[..])))
        );
        assert_eq!(shard.side_count(), 0);
    }

    /// Without tracking nothing is recorded and a drain returns nobody.
    #[test]
    fn tracking_is_off_by_default() {
        let mut shard = shard();
        let mut events = Vec::new();
        shard
            .heartbeat(
                ShardKey::Dense(1),
                30,
                None,
                None,
                Room::Available,
                T0_MS,
                &mut events,
            )
            .expect("heartbeat");
        assert_eq!(shard.dirty_count(), 0);
        assert!(drain(&mut shard).is_empty());
        assert!(shard.tables.dirty.is_none(), "no tracker, no memory");
    }

    /// The counters follow connectivity by cause, and count every transition handed out.
    #[test]
    fn counters_follow_changes() {
        let mut shard = shard();
        let mut events = Vec::new();
        for id in 0..3 {
            shard
                .heartbeat(
                    ShardKey::Dense(id),
                    1,
                    None,
                    None,
                    Room::Available,
                    T0_MS,
                    &mut events,
                )
                .expect("heartbeat");
        }
        assert!(shard.offline(ShardKey::Dense(0), None, T0_MS + 10, &mut events));
        shard
            .heartbeat(
                ShardKey::Dense(1),
                1,
                Some(AppStatus::Away),
                None,
                Room::Available,
                T0_MS + 20,
                &mut events,
            )
            .expect("heartbeat");
        tick(&mut shard, T0_MS + 2_000);
        let counters = shard.counters();
        assert_eq!(counters.came_online_count, 3);
        assert_eq!(counters.went_offline_logout_count, 1);
        assert_eq!(counters.went_offline_timeout_count, 2);
        // 3 online, 1 offline, 1 away, then 2 offline from the wheel.
        assert_eq!(counters.transition_count, 7);
        assert_eq!(events.len(), 5);
        assert!(counters.commit_count >= 7);
    }
}
