//! The door: the one place where a shard's user state changes. `Tables` owns the slot array,
//! the side table (and its insertion order) and the extras table, and only `Tables::commit`
//! writes them.
//!
//! An operation computes a user's new state (a `Change`: the new slot, and the new extras entry
//! or its removal) and hands it to `commit`, which applies it, builds a `ChangeRecord` on the
//! stack and derives from that record everything that follows from a change: the transition
//! handed to the event sink, `online_count` and the other counts, the offline-detection lag,
//! the monotonic `ShardCounters`, and the dirty mark replication drains. Nothing here decides
//! what a user's state should be (that is `settle.rs` and the operations), and nothing outside
//! this module may write these tables: the fields are private so that the compiler says so.

use std::sync::Arc;

use hashbrown::HashMap;

use super::dirty::{ChangedUser, DirtyKey, DirtyTracker};
use super::watch::{WatchMark, WatchTable};
use crate::expiry::LagHistogram;
use crate::store::event::{Cause, Transition, UserRef};
use crate::store::extra::{Extra, OwnedKey, ShardKey};
use crate::store::slot::Slot;
use crate::store::slot_array::SlotArray;
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

/// The state a user's visible state is compared with when it is plain: connected means the app
/// status, anything else offline.
fn value_len(extra: &Extra) -> u64 {
    extra.value.as_ref().map_or(0, |v| v.len() as u64)
}

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
    side: HashMap<Arc<[u8]>, Slot>,
    /// Side-table users in insertion order. Users are never removed (last-seen outlives
    /// presence), so a position here is a stable `SCAN` cursor.
    side_order: Vec<Arc<[u8]>>,
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
    ) -> std::io::Result<Self> {
        Ok(Self {
            shard_index: shard_index as u64,
            shard_count: shard_count as u64,
            dense: SlotArray::new(dense_len)?,
            side: HashMap::new(),
            side_order: Vec::new(),
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
        self.write_slot(key, before, change.slot);
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
        self.track(&record);
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

    #[inline]
    fn write_slot(&mut self, key: ShardKey<'_>, before: Slot, slot: Slot) {
        match key {
            ShardKey::Dense(index) => {
                if before.is_never_seen() && !slot.is_never_seen() {
                    self.dense_tracked_count += 1;
                }
                self.dense.set(index, slot);
            }
            ShardKey::Side(id) => match self.side.get_mut(id) {
                Some(stored) => *stored = slot,
                None => {
                    let id: Arc<[u8]> = Arc::from(id);
                    self.side_order.push(Arc::clone(&id));
                    self.side.insert(id, slot);
                }
            },
        }
    }

    fn put_extra(&mut self, key: ShardKey<'_>, extra: Extra) {
        self.value_bytes += value_len(&extra);
        if let Some(stored) = self.extras.get_mut(&key) {
            self.value_bytes -= value_len(stored);
            *stored = extra;
            return;
        }
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

    /// The replication hook: marks the user for the next drain, if anyone drains.
    #[inline]
    fn track(&mut self, record: &ChangeRecord<'_>) {
        let Some(dirty) = &mut self.dirty else {
            return;
        };
        match record.key {
            ShardKey::Dense(index) => dirty.mark_dense(index),
            ShardKey::Side(id) => {
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
                    let slot = self.side.get(&id).copied().unwrap_or(Slot::NEVER_SEEN);
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
            ShardKey::Side(id) => self.side.get(id).copied().unwrap_or(Slot::NEVER_SEEN),
        }
    }

    /// The user's extras entry, looked up whatever the slot's flag says.
    pub(super) fn extra(&self, key: ShardKey<'_>) -> Option<&Extra> {
        self.extras.get(&key)
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

    /// The side-table user at `position` in insertion order.
    pub(super) fn side_at(&self, position: usize) -> Option<&Arc<[u8]>> {
        self.side_order.get(position)
    }

    /// Side-table users with their slots, in insertion order.
    pub(super) fn side_users(&self) -> impl Iterator<Item = (&Arc<[u8]>, Slot)> {
        self.side_order.iter().map(|id| {
            let slot = self.side.get(id).copied().unwrap_or(Slot::NEVER_SEEN);
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
            .heartbeat(user, 30, None, None, t_ms, &mut events)
            .expect("heartbeat");
        check(&mut shard, "heartbeat coming online");
        t_ms += 1_000;
        shard
            .heartbeat(user, 30, None, None, t_ms, &mut events)
            .expect("heartbeat");
        check(&mut shard, "heartbeat of an online user");
        assert!(shard.offline(user, None, t_ms, &mut events));
        check(&mut shard, "offline");
        shard
            .heartbeat(user, 30, None, Some(b"phone"), t_ms, &mut events)
            .expect("heartbeat");
        drain(&mut shard);
        assert!(shard.disconnect(user, None, 5_000, t_ms, &mut events));
        check(&mut shard, "disconnect");
        shard.set_status(user, Some(ManualStatus::Dnd), None, t_ms, &mut events);
        check(&mut shard, "setstatus");
        let (set, _) = shard.set_key(
            user,
            KeyValue::Custom(b"{}"),
            KeyExpiry::At(t_ms + 10_000),
            SetCondition::Always,
            t_ms,
            &mut events,
        );
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
        shard.set_status(user, None, None, t_ms, &mut events);
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
                    .heartbeat(ShardKey::Dense(id), 30, None, None, T0_MS + i, &mut events)
                    .expect("heartbeat");
            }
            shard
                .heartbeat(
                    ShardKey::Side(b"u-1"),
                    30,
                    None,
                    None,
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
            .heartbeat(ShardKey::Dense(5), 30, None, None, T0_MS, &mut events)
            .expect("heartbeat");
        saved
            .heartbeat(
                ShardKey::Side(b"u-1"),
                30,
                None,
                Some(b"phone"),
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

    /// Without tracking nothing is recorded and a drain returns nobody.
    #[test]
    fn tracking_is_off_by_default() {
        let mut shard = shard();
        let mut events = Vec::new();
        shard
            .heartbeat(ShardKey::Dense(1), 30, None, None, T0_MS, &mut events)
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
                .heartbeat(ShardKey::Dense(id), 1, None, None, T0_MS, &mut events)
                .expect("heartbeat");
        }
        assert!(shard.offline(ShardKey::Dense(0), None, T0_MS + 10, &mut events));
        shard
            .heartbeat(
                ShardKey::Dense(1),
                1,
                Some(AppStatus::Away),
                None,
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
