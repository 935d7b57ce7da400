//! The presence operations: heartbeat, logout (`OFFLINE`), disconnect with a grace period, the
//! manual override (`SETSTATUS`), and forgetting a user (`DEL`).
//!
//! Each settles the user, computes the user's new state and hands it to the door; none writes
//! a slot or an extras entry itself. The plain heartbeat of an online user is the hot path: one
//! slot read, one commit that writes the slot, no hash lookup, no allocation. Past `maxmemory`
//! (`Room::Full`) an operation that would add a user refuses with `StoreError::OutOfMemory`,
//! judged from the slot it reads anyway.

use super::door::{Change, ExtraWrite};
use super::{Room, Shard};
use crate::store::event::{Cause, Transition};
use crate::store::extra::{DEVICES_PER_USER_MAX, Device, Extra, Override, ShardKey};
use crate::store::slot::Slot;
use crate::store::status::{AppStatus, ManualStatus, State};

/// What a reader sees of a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub state: State,
    pub last_seen_ms: Option<u64>,
}

/// Why the store refused an operation. The store says what happened; `cmd` says it to the
/// client in Redis's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// A new device would pass `DEVICES_PER_USER_MAX` live devices for one user.
    TooManyDevices,
    /// The operation would add a user the store does not track, or a value, while the server
    /// is past `maxmemory`.
    OutOfMemory,
}

/// What a reader sees of a user without extras: the slot judges its own expiry.
#[inline(always)]
fn plain_view(slot: Slot, now_ms: u64) -> View {
    View {
        state: if slot.is_online(now_ms) {
            slot.app_status().state()
        } else {
            State::Offline
        },
        last_seen_ms: slot.last_seen_ms(),
    }
}

impl Shard {
    /// What a reader sees now. Always inlined, with the rare extras case kept out of line:
    /// `MSTATUS` calls it once per user from the store's batch loop, where each call is one
    /// slot read that misses the cache, and the misses of consecutive users overlap only if
    /// the loop body is small and straight.
    #[inline(always)]
    pub fn view(&self, key: ShardKey<'_>, now_ms: u64) -> View {
        let slot = self.tables.slot(key);
        if slot.has_extra() {
            return self.view_extra(key, slot, now_ms);
        }
        plain_view(slot, now_ms)
    }

    /// `view` of a user with devices or an override: the settled truth of their extras entry.
    #[cold]
    #[inline(never)]
    fn view_extra(&self, key: ShardKey<'_>, slot: Slot, now_ms: u64) -> View {
        match self.tables.extra(key) {
            Some(extra) => {
                let truth = extra.truth(slot.last_seen_ms(), now_ms);
                View {
                    state: truth.state,
                    last_seen_ms: truth.shown_last_seen_ms,
                }
            }
            // The flag without an entry cannot happen; read the slot as a plain user's.
            None => plain_view(slot, now_ms),
        }
    }

    /// A heartbeat: the user (or one of their devices) is live now for `ttl_s` seconds.
    /// Returns true if this brought the user online. With `Room::Full`, a user the store does
    /// not track is refused (`OutOfMemory`); a tracked one, online or not, is not: their slot
    /// exists, and so may their devices (at most `DEVICES_PER_USER_MAX` each). Inline: the hot
    /// path is a few instructions, called per heartbeat from the store's routing in another
    /// module.
    // Eight plain arguments rather than a struct built per heartbeat: this is the hot path.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn heartbeat(
        &mut self,
        key: ShardKey<'_>,
        ttl_s: u64,
        app: Option<AppStatus>,
        device: Option<&[u8]>,
        room: Room,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) -> Result<bool, StoreError> {
        debug_assert!(ttl_s > 0);
        self.settle(key, now_ms, events);
        let mut slot = self.tables.slot(key);
        if slot.is_never_seen() {
            // A new user: the only heartbeat `Room::Full` refuses. Off the hot path.
            if room == Room::Full {
                return Err(StoreError::OutOfMemory);
            }
            self.revive_forgotten(key, now_ms, events);
            slot = self.tables.slot(key);
        }
        let was_connected = slot.ttl_s() > 0;
        let deadline_ms = now_ms + ttl_s * 1000;
        let extends = slot.deadline_ms().is_none_or(|d| deadline_ms >= d);
        // The plain path keeps one wheel entry at or before the deadline. A user coming back
        // while an old entry is still pending (logged out, then in again) might need an earlier
        // one than that entry: the extras path tracks which entry is current.
        let entry_fits = if was_connected {
            extends
        } else {
            !slot.armed()
        };
        if !slot.has_extra() && device.is_none() && entry_fits {
            // The hot path: one slot read, one slot write; the wheel only when coming online.
            let app = app.unwrap_or(if was_connected {
                slot.app_status()
            } else {
                AppStatus::Online
            });
            let new_slot = slot
                .with_times(Some(now_ms), ttl_s)
                .with_app_status(app)
                .with_armed(true);
            let change = Change {
                shown_last_seen_ms: Some(now_ms),
                ..Change::slot(key, new_slot, Cause::Change)
            };
            self.commit(change, now_ms, events);
            if !slot.armed() {
                self.arm(key, deadline_ms);
            }
            return Ok(!was_connected);
        }
        self.heartbeat_device(key, ttl_s, app, device, now_ms, events)?;
        Ok(!was_connected)
    }

    /// A heartbeat through the extras entry: a named device, or a plain user whose pending
    /// wheel entry comes after the new deadline.
    fn heartbeat_device(
        &mut self,
        key: ShardKey<'_>,
        ttl_s: u64,
        app: Option<AppStatus>,
        device: Option<&[u8]>,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) -> Result<(), StoreError> {
        let deadline_ms = now_ms + ttl_s * 1000;
        let id = device.unwrap_or_default();
        let mut extra = self.working_extra(key);
        if extra.devices.len() >= DEVICES_PER_USER_MAX
            && !extra.devices.iter().any(|d| &*d.id == id)
        {
            return Err(StoreError::TooManyDevices);
        }
        // The device heard from last goes to the end: among devices seen in the same
        // millisecond, the latest heartbeat's status is the one shown.
        let device = match extra.devices.iter().position(|d| &*d.id == id) {
            Some(at) => {
                let mut d = extra.devices.remove(at);
                if let Some(app) = app {
                    d.status = app;
                }
                d
            }
            None => Device {
                id: id.into(),
                last_seen_ms: now_ms,
                deadline_ms,
                status: app.unwrap_or_default(),
            },
        };
        extra.devices.push(Device {
            last_seen_ms: now_ms,
            deadline_ms,
            ..device
        });
        self.settle_and_commit(key, extra, now_ms, events, Cause::Change);
        Ok(())
    }

    /// Logs the user (or one device) out now, keeping last-seen. Returns true if the user
    /// (or that device) was live.
    pub fn offline(
        &mut self,
        key: ShardKey<'_>,
        device: Option<&[u8]>,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) -> bool {
        self.settle(key, now_ms, events);
        let slot = self.tables.slot(key);
        if slot.is_never_seen() {
            return false;
        }
        if !slot.has_extra() {
            if device.is_some() || slot.ttl_s() == 0 {
                return false;
            }
            self.commit(
                Change::slot(key, slot.offline(), Cause::Logout),
                now_ms,
                events,
            );
            return true;
        }
        let Some(stored) = self.tables.extra(key) else {
            return false;
        };
        let mut extra = stored.clone();
        let was_live = match device {
            Some(id) => {
                let before = extra.devices.len();
                extra.devices.retain(|d| &*d.id != id);
                before != extra.devices.len()
            }
            None => {
                let had = !extra.devices.is_empty();
                extra.devices.clear();
                had
            }
        };
        self.settle_and_commit(key, extra, now_ms, events, Cause::Logout);
        was_live
    }

    /// A dropped connection: the user (or one device) stays live for `grace_ms` more, and goes
    /// offline then unless a heartbeat arrives first. Returns true if anything was live.
    pub fn disconnect(
        &mut self,
        key: ShardKey<'_>,
        device: Option<&[u8]>,
        grace_ms: u64,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) -> bool {
        self.settle(key, now_ms, events);
        if self.tables.slot(key).ttl_s() == 0 {
            return false;
        }
        let mut extra = self.working_extra(key);
        let mut hit = false;
        for d in extra
            .devices
            .iter_mut()
            .filter(|d| device.is_none_or(|id| &*d.id == id))
        {
            d.deadline_ms = now_ms + grace_ms;
            hit = true;
        }
        self.settle_and_commit(key, extra, now_ms, events, Cause::Change);
        hit
    }

    /// Sets (`Some`) or clears (`None`) the user's manual override, for `ttl_s` or until
    /// cleared. With `Room::Full`, an override for a user the store does not track is refused.
    pub fn set_status(
        &mut self,
        key: ShardKey<'_>,
        manual: Option<ManualStatus>,
        ttl_s: Option<u64>,
        room: Room,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) -> Result<(), StoreError> {
        self.settle(key, now_ms, events);
        let slot = self.tables.slot(key);
        if manual.is_none() && !slot.has_extra() {
            // Clearing an override nobody set changes nothing and must not create a user.
            return Ok(());
        }
        if slot.is_never_seen() {
            if room == Room::Full {
                return Err(StoreError::OutOfMemory);
            }
            self.revive_forgotten(key, now_ms, events);
        }
        let slot = self.tables.slot(key);
        let mut extra = self.working_extra(key);
        extra.manual = manual.map(|status| {
            let frozen_last_seen_ms = match (status, extra.manual) {
                (ManualStatus::Invisible, Some(old))
                    if old.status == ManualStatus::Invisible && old.active(now_ms) =>
                {
                    old.frozen_last_seen_ms
                }
                (ManualStatus::Invisible, _) => {
                    extra.truth(slot.last_seen_ms(), now_ms).shown_last_seen_ms
                }
                _ => None,
            };
            Override {
                status,
                until_ms: ttl_s.map(|t| now_ms + t * 1000),
                frozen_last_seen_ms,
            }
        });
        self.settle_and_commit(key, extra, now_ms, events, Cause::Change);
        Ok(())
    }

    /// Forgets the user (`DEL`): presence, last-seen, devices, override and value, and the
    /// memory they held (a side-table entry, an extras entry; a dense slot goes back to zero).
    /// If they were visible, subscribers are told they went offline (a logout, which Redis's
    /// keyspace events call `del`). Returns whether the store tracked them.
    ///
    /// Wheel entries may still point at the user; they are counted in
    /// `forgotten_wheel_entries` so that each is dropped when it fires, or counted again with
    /// the user if they come back first. Keeping the slot until then instead would keep the
    /// memory DEL is asked to free, for up to a TTL.
    pub fn forget(&mut self, key: ShardKey<'_>, now_ms: u64, events: &mut Vec<Transition>) -> bool {
        self.settle(key, now_ms, events);
        let slot = self.tables.slot(key);
        if slot.is_never_seen() {
            return false;
        }
        let shown_last_seen_ms = self.view(key, now_ms).last_seen_ms;
        let stored = self.tables.extra(key).filter(|_| slot.has_extra());
        let (pending, extra) = match stored {
            Some(stored) => (stored.wheel_entries, ExtraWrite::Remove),
            None => (u32::from(slot.armed()), ExtraWrite::Keep),
        };
        let change = Change {
            extra,
            shown_last_seen_ms,
            ..Change::slot(key, Slot::NEVER_SEEN, Cause::Logout)
        };
        self.commit(change, now_ms, events);
        if pending > 0 {
            let owned = self.tables.owned_key(key);
            *self.forgotten_wheel_entries.entry(owned).or_insert(0) += pending;
        }
        true
    }

    /// Before an operation stores a user it read as never seen: if wheel entries still point
    /// at them from before they were forgotten, the user comes back with those entries counted
    /// (a plain slot marked `ARMED` for one, an extras entry's `wheel_entries` for more), as a
    /// user who logged out and came back before their entry fired. Without this, a returning
    /// user would be armed again beside an entry nobody counts.
    pub(super) fn revive_forgotten(
        &mut self,
        key: ShardKey<'_>,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) {
        if self.forgotten_wheel_entries.is_empty() {
            return;
        }
        let Some(count) = self.forgotten_wheel_entries.remove(&key) else {
            return;
        };
        let armed = Slot::NEVER_SEEN.with_armed(true);
        let change = if count == 1 {
            Change::slot(key, armed, Cause::Change)
        } else {
            let pending = Extra {
                devices: Vec::new(),
                manual: None,
                value: None,
                published: State::Offline,
                wheel_entries: count,
                wheel_tick: None,
            };
            Change {
                extra: ExtraWrite::Put(pending),
                ..Change::slot(key, armed.with_extra(true), Cause::Change)
            }
        };
        self.commit(change, now_ms, events);
    }

    /// A wheel entry fired for a user forgotten since it was armed: one fewer to wait for.
    pub(super) fn drop_forgotten_entry(&mut self, key: ShardKey<'_>) {
        if let Some(count) = self.forgotten_wheel_entries.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.forgotten_wheel_entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::store::event::UserRef;

    /// Heartbeat, expiry by the wheel and logout, driven by a hand-held clock.
    #[test]
    fn lifecycle_with_controlled_clock() {
        let mut shard = shard();
        let user = ShardKey::Dense(7);
        let mut events = Vec::new();
        assert_eq!(
            shard.heartbeat(user, 1, None, None, Room::Available, T0_MS, &mut events),
            Ok(true)
        );
        assert_eq!(
            shard.heartbeat(
                user,
                1,
                None,
                None,
                Room::Available,
                T0_MS + 500,
                &mut events
            ),
            Ok(false)
        );
        assert_eq!(
            states(&events),
            vec![State::Online],
            "no event per heartbeat"
        );
        assert_eq!(events[0].user, UserRef::Dense(7));
        assert_eq!(shard.online_count(), 1);
        assert_eq!(shard.wheel_len(), 1);
        // The first entry fires at T0+1 s, finds the later deadline and re-arms.
        assert!(tick(&mut shard, T0_MS + 1_000).is_empty());
        assert_eq!(shard.view(user, T0_MS + 1_499).state, State::Online);
        assert_eq!(
            tick(&mut shard, T0_MS + 1_500),
            vec![(State::Offline, Some(T0_MS + 500))]
        );
        assert_eq!(shard.online_count(), 0);
        assert_eq!(shard.wheel_len(), 0);
        assert_eq!(shard.lag().count(), 1);
        events.clear();
        assert_eq!(
            shard.heartbeat(
                user,
                30,
                None,
                None,
                Room::Available,
                T0_MS + 2_000,
                &mut events
            ),
            Ok(true)
        );
        assert!(shard.offline(user, None, T0_MS + 3_000, &mut events));
        assert!(!shard.offline(user, None, T0_MS + 3_000, &mut events));
        assert_eq!(states(&events), vec![State::Online, State::Offline]);
        assert_eq!(
            shard.view(user, T0_MS + 3_000).last_seen_ms,
            Some(T0_MS + 2_000)
        );
        // Coming back before the old entry fires arms a current entry; the superseded one is
        // dropped when it fires, leaving one.
        assert_eq!(
            shard.heartbeat(
                user,
                30,
                None,
                None,
                Room::Available,
                T0_MS + 4_000,
                &mut events
            ),
            Ok(true)
        );
        assert_eq!(shard.wheel_len(), 2);
        assert_eq!(shard.online_count(), 1);
        assert!(tick(&mut shard, T0_MS + 32_000).is_empty());
        assert_eq!(shard.wheel_len(), 1);
        assert_eq!(
            tick(&mut shard, T0_MS + 34_000),
            vec![(State::Offline, Some(T0_MS + 4_000))]
        );
        assert_eq!(shard.wheel_len(), 0);
    }

    /// Side-table users behave exactly like dense ones.
    #[test]
    fn side_table_behaves_identically() {
        let mut shard = shard();
        let user = ShardKey::Side(b"0b0e5a52-1111-4b3c-9f4e-8d2d7c1f0a11");
        let mut events = Vec::new();
        assert_eq!(shard.view(user, T0_MS).last_seen_ms, None);
        assert_eq!(
            shard.heartbeat(user, 1, None, None, Room::Available, T0_MS, &mut events),
            Ok(true)
        );
        assert_eq!(shard.tracked_count(), 1);
        assert_eq!(
            tick(&mut shard, T0_MS + 1_000),
            vec![(State::Offline, Some(T0_MS))]
        );
        assert_eq!(shard.online_count(), 0);
    }

    /// DISCONNECT then a heartbeat inside the grace: no events; left alone: offline at its end.
    #[test]
    fn grace_period() {
        let mut shard = shard();
        let user = ShardKey::Dense(5);
        let mut events = Vec::new();
        shard
            .heartbeat(user, 30, None, None, Room::Available, T0_MS, &mut events)
            .unwrap();
        events.clear();
        assert!(shard.disconnect(user, None, 10_000, T0_MS + 1_000, &mut events));
        assert_eq!(
            shard.heartbeat(
                user,
                30,
                None,
                None,
                Room::Available,
                T0_MS + 5_000,
                &mut events
            ),
            Ok(false)
        );
        assert!(tick(&mut shard, T0_MS + 12_000).is_empty());
        assert!(events.is_empty(), "no flapping: {events:?}");
        assert!(shard.disconnect(user, None, 10_000, T0_MS + 20_000, &mut events));
        assert!(tick(&mut shard, T0_MS + 29_999).is_empty());
        assert_eq!(
            tick(&mut shard, T0_MS + 30_000),
            vec![(State::Offline, Some(T0_MS + 5_000))]
        );
        assert_eq!(shard.online_count(), 0);
        assert!(!shard.disconnect(user, None, 10_000, T0_MS + 31_000, &mut events));
    }

    /// Two devices: one logs out (still online), then the other (offline).
    #[test]
    fn devices() {
        let mut shard = shard();
        let user = ShardKey::Dense(9);
        let mut events = Vec::new();
        let phone = Some(&b"phone"[..]);
        let laptop = Some(&b"laptop"[..]);
        assert_eq!(
            shard.heartbeat(user, 30, None, phone, Room::Available, T0_MS, &mut events),
            Ok(true)
        );
        assert_eq!(
            shard.heartbeat(
                user,
                30,
                None,
                laptop,
                Room::Available,
                T0_MS + 10,
                &mut events
            ),
            Ok(false)
        );
        assert!(shard.offline(user, phone, T0_MS + 20, &mut events));
        assert_eq!(shard.view(user, T0_MS + 20).state, State::Online);
        assert!(!shard.offline(user, phone, T0_MS + 20, &mut events));
        assert!(shard.offline(user, laptop, T0_MS + 30, &mut events));
        assert_eq!(states(&events), vec![State::Online, State::Offline]);
        assert_eq!(events[1].last_seen_ms, Some(T0_MS + 10));
        assert_eq!(shard.online_count(), 0);
        // A device expiring while another lives changes nothing visible.
        events.clear();
        shard
            .heartbeat(
                user,
                1,
                None,
                phone,
                Room::Available,
                T0_MS + 100,
                &mut events,
            )
            .unwrap();
        shard
            .heartbeat(
                user,
                5,
                None,
                laptop,
                Room::Available,
                T0_MS + 100,
                &mut events,
            )
            .unwrap();
        assert!(tick(&mut shard, T0_MS + 1_200).is_empty());
        assert_eq!(
            tick(&mut shard, T0_MS + 5_100),
            vec![(State::Offline, Some(T0_MS + 100))]
        );
        for i in 0..DEVICES_PER_USER_MAX {
            let id = format!("d{i}");
            shard
                .heartbeat(
                    user,
                    30,
                    None,
                    Some(id.as_bytes()),
                    Room::Available,
                    T0_MS + 6_000,
                    &mut events,
                )
                .unwrap();
        }
        assert_eq!(
            shard.heartbeat(
                user,
                30,
                None,
                Some(b"one-too-many"),
                Room::Available,
                T0_MS + 6_000,
                &mut events
            ),
            Err(StoreError::TooManyDevices)
        );
    }

    /// Manual override beats the app's status, which beats the inferred `online`.
    #[test]
    fn status_precedence() {
        let mut shard = shard();
        let user = ShardKey::Dense(11);
        let mut events = Vec::new();
        shard
            .heartbeat(user, 30, None, None, Room::Available, T0_MS, &mut events)
            .unwrap();
        shard
            .heartbeat(
                user,
                30,
                Some(AppStatus::Away),
                None,
                Room::Available,
                T0_MS + 1,
                &mut events,
            )
            .unwrap();
        shard
            .set_status(
                user,
                Some(ManualStatus::Dnd),
                None,
                Room::Available,
                T0_MS + 2,
                &mut events,
            )
            .expect("room");
        shard
            .heartbeat(
                user,
                30,
                Some(AppStatus::Busy),
                None,
                Room::Available,
                T0_MS + 3,
                &mut events,
            )
            .unwrap();
        assert_eq!(shard.view(user, T0_MS + 3).state, State::Dnd);
        shard
            .set_status(user, None, None, Room::Available, T0_MS + 4, &mut events)
            .expect("room");
        assert_eq!(
            states(&events),
            vec![State::Online, State::Away, State::Dnd, State::Busy]
        );
        // An override with a TTL lapses by itself, and the wheel publishes that.
        events.clear();
        shard
            .set_status(
                user,
                Some(ManualStatus::Away),
                Some(2),
                Room::Available,
                T0_MS + 10,
                &mut events,
            )
            .expect("room");
        assert_eq!(states(&events), vec![State::Away]);
        assert_eq!(
            tick(&mut shard, T0_MS + 2_100),
            vec![(State::Busy, Some(T0_MS + 3))]
        );
    }

    /// An invisible user reads as offline with a frozen last-seen and publishes nothing.
    #[test]
    fn invisible() {
        let mut shard = shard();
        let user = ShardKey::Dense(12);
        let mut events = Vec::new();
        shard
            .set_status(
                user,
                Some(ManualStatus::Invisible),
                None,
                Room::Available,
                T0_MS,
                &mut events,
            )
            .expect("room");
        shard
            .heartbeat(user, 1, None, None, Room::Available, T0_MS + 1, &mut events)
            .unwrap();
        shard
            .heartbeat(
                user,
                1,
                Some(AppStatus::Busy),
                None,
                Room::Available,
                T0_MS + 2,
                &mut events,
            )
            .unwrap();
        assert_eq!(
            shard.view(user, T0_MS + 2),
            View {
                state: State::Offline,
                last_seen_ms: None
            }
        );
        assert!(tick(&mut shard, T0_MS + 1_500).is_empty());
        assert!(tick(&mut shard, T0_MS + 3_000).is_empty());
        assert!(events.is_empty(), "{events:?}");
        // Going invisible while online looks like going offline to everyone else.
        shard
            .set_status(
                user,
                None,
                None,
                Room::Available,
                T0_MS + 4_000,
                &mut events,
            )
            .expect("room");
        shard
            .heartbeat(
                user,
                30,
                None,
                None,
                Room::Available,
                T0_MS + 4_000,
                &mut events,
            )
            .unwrap();
        shard
            .set_status(
                user,
                Some(ManualStatus::Invisible),
                None,
                Room::Available,
                T0_MS + 5_000,
                &mut events,
            )
            .expect("room");
        assert_eq!(states(&events), vec![State::Online, State::Offline]);
        assert_eq!(events[1].last_seen_ms, Some(T0_MS + 4_000));
        shard
            .heartbeat(
                user,
                30,
                None,
                None,
                Room::Available,
                T0_MS + 6_000,
                &mut events,
            )
            .unwrap();
        assert_eq!(
            shard.view(user, T0_MS + 6_000).last_seen_ms,
            Some(T0_MS + 4_000)
        );
        assert_eq!(events.len(), 2);
    }

    /// Heartbeats in the same millisecond: the status of the one heard last is shown.
    #[test]
    fn latest_device_wins_a_tie() {
        let mut shard = shard();
        let user = ShardKey::Dense(20);
        let mut events = Vec::new();
        shard
            .heartbeat(user, 30, None, None, Room::Available, T0_MS, &mut events)
            .unwrap();
        shard
            .heartbeat(
                user,
                30,
                None,
                Some(b"phone"),
                Room::Available,
                T0_MS,
                &mut events,
            )
            .unwrap();
        shard
            .heartbeat(
                user,
                30,
                Some(AppStatus::Away),
                None,
                Room::Available,
                T0_MS,
                &mut events,
            )
            .unwrap();
        assert_eq!(shard.view(user, T0_MS).state, State::Away);
        assert_eq!(states(&events), vec![State::Online, State::Away]);
    }

    /// Past `maxmemory` (`Room::Full`) only users the store does not track are refused: a
    /// known user's heartbeat (online or offline, with a new device or not) and override go
    /// on, clearing an override nobody set changes nothing, and nothing refused is stored.
    #[test]
    fn room_full_refuses_only_new_users() {
        let mut shard = shard();
        let mut events = Vec::new();
        let (dense, side) = (ShardKey::Dense(3), ShardKey::Side(b"u-1"));
        for key in [dense, side] {
            assert_eq!(
                shard.heartbeat(key, 30, None, None, Room::Available, T0_MS, &mut events),
                Ok(true)
            );
        }
        assert!(shard.offline(side, None, T0_MS + 1, &mut events));
        let full = |shard: &mut Shard, key, device, events: &mut Vec<Transition>| {
            shard.heartbeat(key, 30, None, device, Room::Full, T0_MS + 2, events)
        };
        assert_eq!(full(&mut shard, dense, None, &mut events), Ok(false));
        assert_eq!(
            full(&mut shard, side, None, &mut events),
            Ok(true),
            "an offline user the store tracks comes back"
        );
        assert_eq!(
            full(&mut shard, dense, Some(b"phone"), &mut events),
            Ok(false)
        );
        for key in [ShardKey::Dense(4), ShardKey::Side(b"u-2")] {
            assert_eq!(
                full(&mut shard, key, None, &mut events),
                Err(StoreError::OutOfMemory)
            );
            assert_eq!(
                shard.set_status(
                    key,
                    Some(ManualStatus::Dnd),
                    None,
                    Room::Full,
                    T0_MS,
                    &mut events
                ),
                Err(StoreError::OutOfMemory)
            );
            assert_eq!(
                shard.set_status(key, None, None, Room::Full, T0_MS, &mut events),
                Ok(())
            );
        }
        assert_eq!(
            shard.set_status(
                dense,
                Some(ManualStatus::Dnd),
                None,
                Room::Full,
                T0_MS,
                &mut events
            ),
            Ok(())
        );
        assert_eq!(shard.tracked_count(), 2, "nothing refused was stored");
        assert_eq!(shard.side_count(), 1);
    }

    /// Forgetting a user frees them: a side-table entry and its bytes go, a dense slot reads
    /// as never seen again, subscribers are told offline (a logout), and their wheel entry
    /// firing later neither publishes nor stores them again.
    #[test]
    fn forget_frees_the_user() {
        let mut shard = shard();
        let mut events = Vec::new();
        let (dense, side) = (ShardKey::Dense(3), ShardKey::Side(b"0b0e5a52-1111-4b3c"));
        for key in [dense, side] {
            shard
                .heartbeat(key, 1, None, None, Room::Available, T0_MS, &mut events)
                .expect("heartbeat");
        }
        shard
            .heartbeat(
                side,
                1,
                None,
                Some(b"phone"),
                Room::Available,
                T0_MS,
                &mut events,
            )
            .expect("a device: an extras entry");
        let side_bytes = shard.side_bytes();
        assert!(side_bytes > 0);
        events.clear();
        for key in [dense, side] {
            assert!(shard.forget(key, T0_MS + 10, &mut events));
            assert!(
                !shard.forget(key, T0_MS + 10, &mut events),
                "already forgotten"
            );
            assert_eq!(
                shard.view(key, T0_MS + 10),
                View {
                    state: State::Offline,
                    last_seen_ms: None
                }
            );
        }
        assert_eq!(states(&events), vec![State::Offline, State::Offline]);
        assert!(events.iter().all(|e| e.cause == Cause::Logout));
        assert_eq!(
            events[0].last_seen_ms,
            Some(T0_MS),
            "the last-seen they had"
        );
        assert_eq!(shard.online_count(), 0);
        assert_eq!(shard.tracked_count(), 0);
        assert_eq!(shard.side_count(), 0);
        assert_eq!(shard.extras_count(), 0);
        assert!(
            shard.side_bytes() < side_bytes,
            "the side table gave its memory back"
        );
        // Their wheel entries were still pending: they fire into nothing.
        assert!(shard.wheel_len() > 0);
        assert!(tick(&mut shard, T0_MS + 2_000).is_empty());
        assert_eq!(shard.wheel_len(), 0);
        assert!(shard.forgotten_wheel_entries.is_empty());
        assert_eq!(shard.tracked_count(), 0, "nobody stored again");
        assert_eq!(shard.counters().went_offline_logout_count, 2);
    }

    /// A user forgotten while wheel entries point at them and back before those fire is a new
    /// user (refused past `maxmemory`), gets one live entry more, goes offline at their new
    /// deadline, and the old entries change nothing when they fire: for a plain user (one
    /// entry), one with a device, and one whose deadline was shortened (two entries).
    #[test]
    fn forgotten_user_coming_back_keeps_one_live_entry() {
        let mut shard = shard();
        let mut events = Vec::new();
        let users = [
            ShardKey::Dense(8),
            ShardKey::Side(b"u-8"),
            ShardKey::Side(b"u-9"),
        ];
        let beat = |shard: &mut Shard, key, ttl_s, device, room, at_ms, events: &mut Vec<_>| {
            shard.heartbeat(key, ttl_s, None, device, room, at_ms, events)
        };
        let phone = Some(&b"phone"[..]);
        beat(
            &mut shard,
            users[0],
            3,
            None,
            Room::Available,
            T0_MS,
            &mut events,
        )
        .expect("beat");
        beat(
            &mut shard,
            users[1],
            3,
            phone,
            Room::Available,
            T0_MS,
            &mut events,
        )
        .expect("beat");
        for ttl_s in [3, 2] {
            beat(
                &mut shard,
                users[2],
                ttl_s,
                None,
                Room::Available,
                T0_MS,
                &mut events,
            )
            .expect("beat");
        }
        assert_eq!(shard.wheel_len(), 4);
        for key in users {
            assert!(shard.forget(key, T0_MS + 100, &mut events));
            assert_eq!(
                beat(
                    &mut shard,
                    key,
                    1,
                    None,
                    Room::Full,
                    T0_MS + 200,
                    &mut events
                ),
                Err(StoreError::OutOfMemory),
                "forgotten: a new user"
            );
            assert_eq!(
                beat(
                    &mut shard,
                    key,
                    1,
                    None,
                    Room::Available,
                    T0_MS + 200,
                    &mut events
                ),
                Ok(true)
            );
        }
        assert_eq!(shard.online_count(), 3);
        assert_eq!(
            tick(&mut shard, T0_MS + 1_300),
            vec![(State::Offline, Some(T0_MS + 200)); 3]
        );
        assert_eq!(shard.online_count(), 0);
        assert!(
            tick(&mut shard, T0_MS + 4_000).is_empty(),
            "the old entries change nothing"
        );
        assert_eq!(shard.wheel_len(), 0);
        assert_eq!(shard.extras_count(), 0);
        assert!(shard.forgotten_wheel_entries.is_empty());
        assert_eq!(shard.tracked_count(), 3, "offline, last-seen kept");
    }
}
