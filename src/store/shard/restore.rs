//! What `store::persist` needs of a shard: its contents read in order for a snapshot, and a
//! snapshot's users written back through the door (`Origin::Snapshot`: recorded and marked
//! dirty, but no transition and no counter) and then brought in line with the clock; and for
//! replication, a leader's user states written through the door as changes (with their
//! transitions), and the wheels rebuilt when a follower is promoted.
//!
//! No encoding here (that is `persist`), and never a write beside the door.

use std::sync::Arc;

use super::Shard;
use super::door::{Change, ExtraWrite, Origin};
use crate::expiry::TimingWheel;
use crate::store::event::{Cause, Transition};
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

    /// A user's extras entry, if any (what a replication record carries).
    pub(in crate::store) fn extra_of(&self, key: ShardKey<'_>) -> Option<&Extra> {
        self.tables.extra(key)
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

    /// Writes a user's state as the leader sent it, as a change: subscribers here see the
    /// transition the leader's subscribers saw (when the published state differs). The wheel
    /// bookkeeping (`ARMED`, an entry's tick) stays this process's own: a follower runs no
    /// expiry, and a promoted one rebuilds its wheels (`rebuild_wheels`).
    ///
    /// The stream carries states, not causes; a user going offline here went offline there
    /// by expiry if the deadline this copy holds had passed by `leader_now_ms` (the leader's
    /// clock at the drain), else by a logout, so keyspace events name what the leader decided
    /// (`expired` or `del`).
    pub(in crate::store) fn replicate_user(
        &mut self,
        key: ShardKey<'_>,
        slot: Slot,
        extra: Option<Extra>,
        leader_now_ms: u64,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) {
        if slot.is_never_seen() {
            // Forgotten on the leader (DEL, a past expiry): forgotten here, as it was there.
            self.forget(key, now_ms, events);
            return;
        }
        let local = self.tables.slot(key);
        let slot = slot.with_armed(local.armed());
        let cause = match local.deadline_ms() {
            Some(deadline_ms) if deadline_ms <= leader_now_ms => Cause::Timeout,
            Some(_) => Cause::Logout,
            None => Cause::Change,
        };
        let change = match extra {
            Some(mut extra) => {
                if let Some(current) = self.tables.extra(key) {
                    extra.wheel_entries = current.wheel_entries;
                    extra.wheel_tick = current.wheel_tick;
                }
                // An invisible user's events show the last-seen frozen when they hid.
                let shown = extra
                    .manual
                    .and_then(|m| m.frozen_last_seen_ms)
                    .or(slot.last_seen_ms());
                Change {
                    extra: ExtraWrite::Put(extra),
                    shown_last_seen_ms: shown,
                    ..Change::slot(key, slot.with_extra(true), cause)
                }
            }
            None => {
                let extra = if self.tables.extra(key).is_some() {
                    ExtraWrite::Remove
                } else {
                    ExtraWrite::Keep
                };
                Change {
                    extra,
                    ..Change::slot(key, slot.with_extra(false), cause)
                }
            }
        };
        self.commit(change, now_ms, events);
    }

    /// A promoted follower's wheels: emptied, then every online user armed at their deadline,
    /// extended to at least `now_ms + grace_ms` (heartbeats in flight to the dead leader get
    /// that long to arrive here), so a failover declares nobody offline at once. Users the
    /// leader had declared offline stay offline. No transition: nobody's published state
    /// changes.
    pub(in crate::store) fn rebuild_wheels(&mut self, now_ms: u64, grace_ms: u64) {
        self.dense_wheel = TimingWheel::new(now_ms);
        self.side_wheel = TimingWheel::new(now_ms);
        self.forgotten_wheel_entries.clear();
        let floor_ms = now_ms.saturating_add(grace_ms);
        let mut index = 0;
        while let Some(at) = self.next_touched(index) {
            self.regrace_user(ShardKey::Dense(at), floor_ms);
            index = at + 1;
        }
        let mut position = 0;
        while let Some(at) = self.tables.side_at(position) {
            if let Some(id) = at.cloned() {
                self.regrace_user(ShardKey::Side(&id), floor_ms);
            }
            position += 1;
        }
        self.restore_users(now_ms);
    }

    /// Extends an online user's deadline (and each live device's) to at least `floor_ms`.
    fn regrace_user(&mut self, key: ShardKey<'_>, floor_ms: u64) {
        let slot = self.tables.slot(key);
        let online = slot.ttl_s() > 0;
        // The wheel bookkeeping (the slot's ARMED bit, an extras entry's count and tick) of
        // every user is reset, offline ones included: it describes entries of the wheels just
        // emptied, and a stale count would make a later heartbeat believe an entry exists and
        // arm none, leaving that user online for good.
        let mut regraced = slot.with_armed(false);
        if online
            && let (Some(last_seen_ms), Some(deadline_ms)) =
                (slot.last_seen_ms(), slot.deadline_ms())
            && deadline_ms < floor_ms
        {
            let ttl_s = (floor_ms - last_seen_ms).div_ceil(1000);
            regraced = regraced.with_times(Some(last_seen_ms), ttl_s);
        }
        if slot.has_extra()
            && let Some(stored) = self.tables.extra(key)
        {
            let mut extra = stored.clone();
            extra.wheel_entries = 0;
            extra.wheel_tick = None;
            if online {
                for device in &mut extra.devices {
                    device.deadline_ms = device.deadline_ms.max(floor_ms);
                }
            }
            let change = Change {
                extra: ExtraWrite::Put(extra),
                origin: Origin::Snapshot,
                ..Change::slot(key, regraced, Cause::Change)
            };
            self.commit(change, 0, &mut Vec::new());
            return;
        }
        if regraced != slot {
            self.restore_slot(key, regraced);
        }
    }
}

#[cfg(test)]
mod rebuild_tests {
    use super::super::test_support::*;
    use crate::store::extra::ShardKey;
    use crate::store::status::ManualStatus;

    /// A seeded generator for the randomized tests (xorshift64).
    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// The smallest case the randomized test below found: a user with a device logs out, a
    /// rebuild runs while they are offline, and they come back without a device. The rebuild
    /// used to skip offline users, leaving their extras entry counting an entry of the
    /// discarded wheel; the heartbeat then armed nothing and the user stayed online for good.
    #[test]
    fn a_user_offline_during_a_rebuild_expires_after_coming_back() {
        let mut shard = shard();
        let mut events = Vec::new();
        let key = ShardKey::Dense(5);
        let t_ms = T0_MS;
        shard
            .heartbeat(
                key,
                2,
                None,
                Some(b"d0"),
                Room::Available,
                t_ms,
                &mut events,
            )
            .unwrap();
        shard.offline(key, None, t_ms + 1_600, &mut events);
        shard.rebuild_wheels(t_ms + 3_300, 2_000);
        shard
            .heartbeat(
                key,
                2,
                None,
                None,
                Room::Available,
                t_ms + 5_000,
                &mut events,
            )
            .unwrap();
        events.clear();
        for step in 1..=10 {
            tick(&mut shard, t_ms + 5_000 + step * 1_000);
        }
        assert_eq!(shard.online_count(), 0);
        assert_eq!(shard.tables.slot(key).ttl_s(), 0);
    }

    /// Heartbeats, overrides and logouts with wheel rebuilds (a promotion's) at random points
    /// in between: once every TTL and the grace have run out and the wheel has run, nobody is
    /// online — no user is left with a deadline and no wheel entry.
    #[test]
    fn rebuilds_between_operations_leave_nobody_online_for_good() {
        for seed in 0..200u64 {
            let mut shard = shard();
            let mut events = Vec::new();
            let mut next = xorshift(seed);
            let mut t_ms = T0_MS;
            let mut log = Vec::new();
            for _ in 0..300 {
                t_ms += next() % 300;
                let user = (next() % 8) as usize;
                let key = ShardKey::Dense(user);
                match next() % 20 {
                    0..=1 => {
                        let manual = [Some(ManualStatus::Dnd), Some(ManualStatus::Away), None]
                            [(next() % 3) as usize];
                        let _ =
                            shard.set_status(key, manual, None, Room::Available, t_ms, &mut events);
                        log.push(format!("{t_ms} setstatus {user} {manual:?}"));
                    }
                    2 => {
                        shard.offline(key, None, t_ms, &mut events);
                        log.push(format!("{t_ms} offline {user}"));
                    }
                    3 => {
                        shard.rebuild_wheels(t_ms, 2_000);
                        log.push(format!("{t_ms} rebuild"));
                    }
                    4..=5 => {
                        let device: &[u8] = if next().is_multiple_of(2) {
                            b"d0"
                        } else {
                            b"d1"
                        };
                        let _ = shard.heartbeat(
                            key,
                            2,
                            None,
                            Some(device),
                            Room::Available,
                            t_ms,
                            &mut events,
                        );
                        log.push(format!("{t_ms} heartbeat {user} device"));
                    }
                    _ => {
                        let _ =
                            shard.heartbeat(key, 2, None, None, Room::Available, t_ms, &mut events);
                        log.push(format!("{t_ms} heartbeat {user}"));
                    }
                }
                if next().is_multiple_of(4) {
                    tick(&mut shard, t_ms);
                    log.push(format!("{t_ms} tick"));
                }
            }
            for step in 1..=20 {
                tick(&mut shard, t_ms + step * 1_000);
            }
            let stuck: Vec<usize> = (0..8)
                .filter(|&u| shard.tables.slot(ShardKey::Dense(u)).ttl_s() > 0)
                .collect();
            assert!(
                shard.online_count() == 0 && stuck.is_empty(),
                "seed {seed}: users {stuck:?} online for good ({} counted) after\n{}",
                shard.online_count(),
                log.join("\n")
            );
        }
    }

    /// As a server sees it: many users, bursts of heartbeats and logouts within the same
    /// milliseconds, the wheel run every 10 ms, one rebuild in the middle.
    #[test]
    fn a_rebuild_amid_bursts_leaves_nobody_online_for_good() {
        for (seed, grace_ms) in (0..400u64).map(|s| (s, if s % 2 == 0 { 2_000 } else { 0 })) {
            let mut shard = shard();
            let mut events = Vec::new();
            let mut next = xorshift(seed);
            let mut t_ms = T0_MS;
            let mut last_tick = t_ms;
            for op in 0..6000 {
                if next().is_multiple_of(4) {
                    t_ms += 1;
                }
                // A follower runs no ticks: 50 ms without any before the promotion's rebuild.
                let stepped_down = (2_950..3_000).contains(&op);
                if t_ms >= last_tick + 50 && !stepped_down {
                    tick(&mut shard, t_ms);
                    last_tick = t_ms;
                }
                if stepped_down {
                    t_ms += 1;
                    continue;
                }
                if op == 3000 {
                    shard.rebuild_wheels(t_ms, grace_ms);
                    t_ms += 60;
                }
                let key = ShardKey::Dense((next() % 40) as usize);
                // A connection's clock is its batch's start: up to a few ms behind the wheel's.
                let op_ms = t_ms - next() % 8;
                if next().is_multiple_of(10) {
                    shard.offline(key, None, op_ms, &mut events);
                } else {
                    let _ =
                        shard.heartbeat(key, 2, None, None, Room::Available, op_ms, &mut events);
                }
            }
            for step in 1..=20 {
                tick(&mut shard, t_ms + step * 1_000);
            }
            let stuck: Vec<usize> = (0..40)
                .filter(|&u| shard.tables.slot(ShardKey::Dense(u)).ttl_s() > 0)
                .collect();
            assert!(
                stuck.is_empty(),
                "seed {seed}: users {stuck:?} online for good"
            );
        }
    }
}
