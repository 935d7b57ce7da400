//! What `store::persist` needs of a shard: its contents read in order for a snapshot, and a
//! snapshot's users written back through the door (`Origin::Snapshot`: recorded and marked
//! dirty, but no transition and no counter) and then brought in line with the clock.
//!
//! No encoding here (that is `persist`), and never a write beside the door.

use std::sync::Arc;

use super::Shard;
use super::door::{Change, ExtraWrite, Origin};
use crate::store::event::Cause;
use crate::store::extra::{Extra, OwnedKey, ShardKey};
use crate::store::slot::Slot;

impl Shard {
    /// The first dense index at or after `from` in a page that was ever written.
    pub(in crate::store) fn next_touched(&self, from: usize) -> Option<usize> {
        let dense = self.tables.dense();
        dense
            .next_touched(from)
            .filter(|&index| index < dense.len())
    }

    /// The dense slots `[start, end)` as little-endian bytes.
    pub(in crate::store) fn copy_dense(&self, start: usize, end: usize, out: &mut [u8]) {
        self.tables.dense().copy_out(start, end, out);
    }

    /// Side-table users with their slots, in insertion order.
    pub(in crate::store) fn side_users(&self) -> impl Iterator<Item = (&Arc<[u8]>, Slot)> {
        self.tables.side_users()
    }

    pub(in crate::store) fn extras(&self) -> impl Iterator<Item = (&OwnedKey, &Extra)> {
        self.tables.extras()
    }

    /// A user's slot as stored (what a snapshot's extras are checked against).
    pub(in crate::store) fn slot_of(&self, key: ShardKey<'_>) -> Slot {
        self.tables.slot(key)
    }

    /// Writes a slot read from a snapshot.
    pub(in crate::store) fn restore_slot(&mut self, key: ShardKey<'_>, slot: Slot) {
        let change = Change {
            origin: Origin::Snapshot,
            ..Change::slot(key, slot, Cause::Change)
        };
        // A snapshot change produces no transition; nothing is pushed here.
        self.commit(change, 0, &mut Vec::new());
    }

    /// Writes an extras entry read from a snapshot, with the `EXTRA` flag on the user's slot
    /// (a snapshot whose slot lost it is repaired).
    pub(in crate::store) fn restore_extra(&mut self, key: ShardKey<'_>, extra: Extra) {
        let slot = self.tables.slot(key).with_extra(true);
        let change = Change {
            extra: ExtraWrite::Put(extra),
            origin: Origin::Snapshot,
            ..Change::slot(key, slot, Cause::Change)
        };
        self.commit(change, 0, &mut Vec::new());
    }

    /// After every record is imported: users whose deadline passed while the server was down
    /// are offline; the others are online again with fresh wheel entries.
    pub(in crate::store) fn restore_users(&mut self, now_ms: u64) {
        let mut index = 0;
        while let Some(at) = self.next_touched(index) {
            self.restore_user(ShardKey::Dense(at), now_ms);
            index = at + 1;
        }
        // By position, holes skipped: restoring a user may forget them (a slot with nothing
        // left to restore), which leaves a hole and moves nobody.
        let mut position = 0;
        while let Some(at) = self.tables.side_at(position) {
            if let Some(id) = at.cloned() {
                self.restore_user(ShardKey::Side(&id), now_ms);
            }
            position += 1;
        }
    }

    fn restore_user(&mut self, key: ShardKey<'_>, now_ms: u64) {
        let slot = self.tables.slot(key);
        if slot.is_never_seen() {
            return;
        }
        let mut discarded = Vec::new();
        if slot.has_extra()
            && let Some(stored) = self.tables.extra(key)
        {
            // Disconnected with nothing published; settling brings both in line with the truth.
            let extra = stored.clone();
            let disconnected = slot.with_times(slot.last_seen_ms(), 0).with_armed(false);
            self.restore_slot(key, disconnected);
            let change = Change {
                origin: Origin::Snapshot,
                ..self.settle_extra(key, extra, now_ms, Cause::Change)
            };
            self.commit(change, now_ms, &mut discarded);
            return;
        }
        let slot = slot.with_extra(false).with_armed(false);
        match slot.deadline_ms() {
            Some(deadline_ms) if now_ms < deadline_ms => {
                self.restore_slot(key, slot.with_armed(true));
                self.arm(key, deadline_ms);
            }
            _ => self.restore_slot(key, slot.offline()),
        }
    }
}
