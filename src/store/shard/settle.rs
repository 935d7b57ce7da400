//! Settling: applying what time alone has changed for a user (a TTL or grace period that ran
//! out, an override that lapsed) before an operation changes anything, and computing the slot
//! and extras entry of a user with extras after an operation changed their entry.
//!
//! Settling decides a user's new state and hands it to the door (`door.rs`); it must never
//! write the tables itself. It may arm the timing wheel, which the door does not own.

use super::Shard;
use super::door::{Change, ExtraWrite, Origin, plain_state};
use crate::store::event::{Cause, Transition};
use crate::store::extra::{Device, Extra, ShardKey, Truth};
use crate::store::slot::{SLOT_TTL_S_MAX, Slot};
use crate::store::status::AppStatus;

impl Shard {
    /// Applies what time alone has changed for this user.
    #[inline]
    pub(super) fn settle(&mut self, key: ShardKey<'_>, now_ms: u64, events: &mut Vec<Transition>) {
        let slot = self.tables.slot(key);
        if slot.is_never_seen() {
            return;
        }
        if slot.has_extra() {
            return self.settle_stored_extra(key, now_ms, events);
        }
        if slot.ttl_s() > 0 && !slot.is_online(now_ms) {
            let change = Change {
                expired_deadline_ms: Some(slot.deadline_ms().unwrap_or(now_ms)),
                ..Change::slot(key, slot.offline(), Cause::Timeout)
            };
            self.commit(change, now_ms, events);
        }
    }

    /// Settles a user with extras as stored, committing only if time changed something (a
    /// settle that changes nothing is no change: no record, no dirty mark).
    fn settle_stored_extra(
        &mut self,
        key: ShardKey<'_>,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) {
        let Some(stored) = self.tables.extra(key) else {
            return self.repair_missing_extra(key, now_ms, events);
        };
        let extra = stored.clone();
        let slot = self.tables.slot(key);
        let change = self.settle_extra(key, extra, now_ms, Cause::Timeout);
        let unchanged = change.slot == slot
            && matches!(&change.extra, ExtraWrite::Put(e) if Some(e) == self.tables.extra(key));
        if !unchanged {
            self.commit(change, now_ms, events);
        }
    }

    /// The `EXTRA` flag without an entry cannot happen; repair rather than fail a client.
    pub(super) fn repair_missing_extra(
        &mut self,
        key: ShardKey<'_>,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) {
        debug_assert!(false, "EXTRA flag without an extras entry");
        let slot = self.tables.slot(key).with_extra(false);
        self.commit(Change::slot(key, slot, Cause::Timeout), now_ms, events);
    }

    /// The user's extras entry to change: a copy of the stored one, or (for a plain user) one
    /// made from the slot, in which a live plain heartbeat becomes the unnamed device.
    pub(super) fn working_extra(&self, key: ShardKey<'_>) -> Extra {
        let slot = self.tables.slot(key);
        if slot.has_extra()
            && let Some(extra) = self.tables.extra(key)
        {
            return extra.clone();
        }
        extra_from_plain(slot)
    }

    /// Settles `extra` (as an operation left it) and commits the result.
    pub(super) fn settle_and_commit(
        &mut self,
        key: ShardKey<'_>,
        extra: Extra,
        now_ms: u64,
        events: &mut Vec<Transition>,
        cause: Cause,
    ) {
        let change = self.settle_extra(key, extra, now_ms, cause);
        self.commit(change, now_ms, events);
    }

    /// The change that settles a user with extras: prunes expired devices and lapsed
    /// overrides, records the visible state as published, re-arms the wheel if the next change
    /// is earlier than the entry it has, refreshes the slot's aggregate, and drops the extras
    /// once nothing is left in them.
    pub(super) fn settle_extra<'k>(
        &mut self,
        key: ShardKey<'k>,
        mut extra: Extra,
        now_ms: u64,
        cause: Cause,
    ) -> Change<'k> {
        let slot = self.tables.slot(key);
        let expired_deadline_ms = prune(&mut extra, now_ms);
        let truth = extra.truth(slot.last_seen_ms(), now_ms);
        if !truth.connected {
            extra.value = None;
        }
        extra.published = truth.state;
        let drop_extra = extra.devices.is_empty() && extra.manual.is_none();
        self.rearm_extra(key, &mut extra, truth.next_wake_ms);
        let slot = aggregate_slot(slot, &truth, extra.wheel_entries > 0);
        let (slot, write) = if drop_extra && extra.wheel_entries == 0 {
            (slot.with_extra(false), ExtraWrite::Remove)
        } else {
            (slot.with_extra(true), ExtraWrite::Put(extra))
        };
        Change {
            key,
            slot,
            extra: write,
            cause,
            expired_deadline_ms,
            shown_last_seen_ms: truth.shown_last_seen_ms,
            origin: Origin::Operation,
        }
    }

    /// Arms a wheel entry at `wake_ms` if it is earlier than the user's current entry (or the
    /// user has none), and records it as current in `extra`.
    fn rearm_extra(&mut self, key: ShardKey<'_>, extra: &mut Extra, wake_ms: Option<u64>) {
        if let Some(wake_ms) = wake_ms
            && extra
                .wheel_tick
                .is_none_or(|t| self.tick_for(key, wake_ms) < t)
        {
            extra.wheel_tick = Some(self.arm(key, wake_ms));
            extra.wheel_entries += 1;
        }
    }
}

/// Drops devices whose deadline passed and an override that lapsed. Returns the latest
/// deadline that passed, if any.
fn prune(extra: &mut Extra, now_ms: u64) -> Option<u64> {
    let mut expired_deadline_ms = None;
    extra.devices.retain(|d| {
        let live = now_ms < d.deadline_ms;
        if !live {
            expired_deadline_ms = expired_deadline_ms.max(Some(d.deadline_ms));
        }
        live
    });
    if extra.manual.is_some_and(|m| !m.active(now_ms)) {
        extra.manual = None;
    }
    expired_deadline_ms
}

/// The slot of a user with extras: the newest last-seen, a TTL reaching the latest device
/// deadline (rounded up, at least 1 s while connected, 0 once not), the app status shown.
fn aggregate_slot(slot: Slot, truth: &Truth, armed: bool) -> Slot {
    let ttl_s = match (truth.connected, truth.deadline_ms, truth.last_seen_ms) {
        (true, Some(deadline_ms), Some(seen_ms)) => deadline_ms
            .saturating_sub(seen_ms)
            .div_ceil(1000)
            .clamp(1, SLOT_TTL_S_MAX),
        (true, _, _) => 1,
        (false, _, _) => 0,
    };
    slot.with_times(truth.last_seen_ms, ttl_s)
        .with_app_status(if truth.connected {
            truth.app
        } else {
            AppStatus::Online
        })
        .with_armed(armed)
}

/// The extras entry a plain user starts with: a live plain heartbeat becomes the unnamed
/// device, what subscribers were told is implied by the slot, and the plain wheel entry (if
/// armed) is counted without a known tick.
fn extra_from_plain(slot: Slot) -> Extra {
    let devices = match (slot.last_seen_ms(), slot.deadline_ms()) {
        (Some(last_seen_ms), Some(deadline_ms)) => vec![Device {
            id: Box::default(),
            last_seen_ms,
            deadline_ms,
            status: slot.app_status(),
        }],
        _ => Vec::new(),
    };
    Extra {
        devices,
        manual: None,
        value: None,
        published: plain_state(slot),
        wheel_entries: u32::from(slot.armed()),
        wheel_tick: None,
    }
}
