//! One shard: its part of the dense slot array, its side table, the extras of users with
//! devices or overrides, and its timing wheels.
//!
//! Every operation first *settles* the user — applies whatever time alone has changed (a TTL
//! or grace period that ran out, an override that lapsed) — then changes what it changes, then
//! compares what subscribers were last told with the truth now. A difference is a transition,
//! appended to the caller's `events`; nothing else produces events, so a heartbeat of an online
//! user produces none. A shard does no I/O and never reads the clock: it is handed `now_ms`.

use std::sync::Arc;

use hashbrown::HashMap;

use super::extra::{
    DEVICES_PER_USER_MAX, Device, Extra, NO_DEADLINE_MS, Override, OwnedKey, ShardKey,
};
use super::slot::{SLOT_TTL_S_MAX, Slot};
use super::status::{AppStatus, ManualStatus, State};
use crate::expiry::{LagHistogram, TimingWheel};

/// A user as events name them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserRef {
    Dense(u64),
    Side(Arc<[u8]>),
}

impl UserRef {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            UserRef::Dense(id) => id.to_string().into_bytes(),
            UserRef::Side(bytes) => bytes.to_vec(),
        }
    }
}

/// Why a transition happened; keyspace notifications tell an expiry from a deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A TTL, grace period or override ran out.
    Timeout,
    /// An explicit logout (`OFFLINE`, `DEL`).
    Logout,
    /// Anything else: a heartbeat, a status, an override.
    Change,
}

/// A change subscribers must hear about: the user's visible state is now `state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub user: UserRef,
    pub state: State,
    /// The last-seen others may see (frozen while invisible), `None` for never seen.
    pub last_seen_ms: Option<u64>,
    pub cause: Cause,
}

/// The value a drop-in `SET` stores.
#[derive(Clone, Copy, Debug)]
pub enum KeyValue<'a> {
    /// A status word, kept in the slot's two status bits.
    Status(AppStatus),
    /// Anything else, kept byte for byte in the extras table.
    Custom(&'a [u8]),
}

/// When a drop-in key expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyExpiry {
    At(u64),
    Never,
    /// `KEEPTTL`: what the key had (none if it did not exist).
    Keep,
}

/// `SET ... NX | XX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCondition {
    Always,
    IfMissing,
    IfExists,
}

/// `EXPIRE ... NX | XX | GT | LT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireCondition {
    Always,
    IfNoTtl,
    IfTtl,
    IfGreater,
    IfLess,
    /// `XX LT`: the key has a TTL and the new one is earlier (LT alone also accepts no TTL).
    IfTtlAndLess,
}

/// A drop-in key's time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTtl {
    Missing,
    Persistent,
    RemainingMs(u64),
}

/// What a reader sees of a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub state: State,
    pub last_seen_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    TooManyDevices,
}

impl StoreError {
    pub fn message(self) -> String {
        match self {
            StoreError::TooManyDevices => {
                format!("ERR too many devices for this user (at most {DEVICES_PER_USER_MAX})")
            }
        }
    }
}

/// What one pass of offline detection did.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExpiryPass {
    /// Users declared offline because their TTL or grace period ran out.
    pub expired_count: u64,
    /// Entries still online that were re-armed at their new deadline.
    pub rearmed_count: u64,
}

pub struct Shard {
    shard_index: u64,
    shard_count: u64,
    pub(super) dense: super::slot_array::SlotArray,
    pub(super) side: HashMap<Arc<[u8]>, Slot>,
    /// Side-table users in insertion order. Users are never removed (last-seen outlives
    /// presence), so a position here is a stable `SCAN` cursor.
    pub(super) side_order: Vec<Arc<[u8]>>,
    pub(super) extras: HashMap<OwnedKey, Extra>,
    dense_wheel: TimingWheel<usize>,
    side_wheel: TimingWheel<Arc<[u8]>>,
    /// Slots whose TTL field is non-zero: users connected as of their last settling.
    pub(super) online_count: u64,
    /// Dense slots ever written (side-table users are counted by the table's length).
    dense_tracked_count: u64,
    expired_count: u64,
    pub lag: LagHistogram,
}

fn plain_state(slot: Slot) -> State {
    if slot.ttl_s() > 0 {
        slot.app_status().state()
    } else {
        State::Offline
    }
}

impl Shard {
    pub fn new(
        dense_len: usize,
        shard_index: usize,
        shard_count: usize,
        now_ms: u64,
    ) -> std::io::Result<Self> {
        Ok(Self {
            shard_index: shard_index as u64,
            shard_count: shard_count as u64,
            dense: super::slot_array::SlotArray::new(dense_len)?,
            side: HashMap::new(),
            side_order: Vec::new(),
            extras: HashMap::new(),
            dense_wheel: TimingWheel::new(now_ms),
            side_wheel: TimingWheel::new(now_ms),
            online_count: 0,
            dense_tracked_count: 0,
            expired_count: 0,
            lag: LagHistogram::default(),
        })
    }

    pub(super) fn slot(&self, key: ShardKey<'_>) -> Slot {
        match key {
            ShardKey::Dense(index) => self.dense.get(index),
            ShardKey::Side(id) => self.side.get(id).copied().unwrap_or(Slot::NEVER_SEEN),
        }
    }

    pub(super) fn set_slot(&mut self, key: ShardKey<'_>, slot: Slot) {
        match key {
            ShardKey::Dense(index) => {
                if self.dense.get(index).is_never_seen() && !slot.is_never_seen() {
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

    /// The side table's shared copy of `id` (a new one if the user is not stored yet).
    fn side_id(&self, id: &[u8]) -> Arc<[u8]> {
        match self.side.get_key_value(id) {
            Some((arc, _)) => Arc::clone(arc),
            None => Arc::from(id),
        }
    }

    fn owned(&self, key: ShardKey<'_>) -> OwnedKey {
        match key {
            ShardKey::Dense(index) => OwnedKey::Dense(index),
            ShardKey::Side(id) => OwnedKey::Side(self.side_id(id)),
        }
    }

    fn user_ref(&self, key: ShardKey<'_>) -> UserRef {
        match key {
            ShardKey::Dense(index) => {
                UserRef::Dense(index as u64 * self.shard_count + self.shard_index)
            }
            ShardKey::Side(id) => UserRef::Side(self.side_id(id)),
        }
    }

    pub(super) fn arm(&mut self, key: ShardKey<'_>, at_ms: u64) -> u64 {
        match key {
            ShardKey::Dense(index) => self.dense_wheel.insert(at_ms, index),
            ShardKey::Side(id) => {
                let id = self.side_id(id);
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

    /// What a reader sees now.
    pub fn view(&self, key: ShardKey<'_>, now_ms: u64) -> View {
        let slot = self.slot(key);
        if slot.has_extra()
            && let Some(extra) = self.extras.get(&key)
        {
            let truth = extra.truth(slot.last_seen_ms(), now_ms);
            return View {
                state: truth.state,
                last_seen_ms: truth.shown_last_seen_ms,
            };
        }
        View {
            state: if slot.is_online(now_ms) {
                slot.app_status().state()
            } else {
                State::Offline
            },
            last_seen_ms: slot.last_seen_ms(),
        }
    }

    /// Applies what time alone has changed for this user.
    fn settle(&mut self, key: ShardKey<'_>, now_ms: u64, events: &mut Vec<Transition>) {
        let slot = self.slot(key);
        if slot.is_never_seen() {
            return;
        }
        if slot.has_extra() {
            return self.settle_extra(key, now_ms, events, Cause::Timeout);
        }
        if slot.ttl_s() > 0 && !slot.is_online(now_ms) {
            let deadline_ms = slot.deadline_ms().unwrap_or(now_ms);
            self.set_slot(key, slot.offline());
            self.online_count -= 1;
            self.expired_count += 1;
            self.lag.record(now_ms.saturating_sub(deadline_ms));
            events.push(Transition {
                user: self.user_ref(key),
                state: State::Offline,
                last_seen_ms: slot.last_seen_ms(),
                cause: Cause::Timeout,
            });
        }
    }

    /// Settles a user with extras: prunes expired devices and lapsed overrides, publishes a
    /// change of visible state, re-arms the wheel if the next change is earlier than the entry
    /// it has, refreshes the slot's aggregate, and drops the extras once nothing is left in them.
    pub(super) fn settle_extra(
        &mut self,
        key: ShardKey<'_>,
        now_ms: u64,
        events: &mut Vec<Transition>,
        cause: Cause,
    ) {
        let slot = self.slot(key);
        let Some(extra) = self.extras.get_mut(&key) else {
            // The flag without an entry cannot happen; repair rather than fail a client.
            debug_assert!(false, "EXTRA flag without an extras entry");
            self.set_slot(key, slot.with_extra(false));
            return;
        };
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
        let truth = extra.truth(slot.last_seen_ms(), now_ms);
        if !truth.connected {
            extra.value = None;
        }
        let publish = truth.state != extra.published;
        extra.published = truth.state;
        let wake_ms = truth.next_wake_ms;
        let current_tick = extra.wheel_tick;
        let mut entries = extra.wheel_entries;
        let drop_extra = extra.devices.is_empty() && extra.manual.is_none();

        if publish {
            let cause = if truth.state == State::Offline && expired_deadline_ms.is_some() {
                Cause::Timeout
            } else {
                cause
            };
            events.push(Transition {
                user: self.user_ref(key),
                state: truth.state,
                last_seen_ms: truth.shown_last_seen_ms,
                cause,
            });
        }
        if let Some(wake_ms) = wake_ms
            && current_tick.is_none_or(|t| self.tick_for(key, wake_ms) < t)
        {
            let tick = self.arm(key, wake_ms);
            entries += 1;
            if let Some(extra) = self.extras.get_mut(&key) {
                extra.wheel_entries = entries;
                extra.wheel_tick = Some(tick);
            }
        }
        let was_connected = slot.ttl_s() > 0;
        match (was_connected, truth.connected) {
            (true, false) => {
                self.online_count -= 1;
                if let Some(deadline_ms) = expired_deadline_ms {
                    self.expired_count += 1;
                    self.lag.record(now_ms.saturating_sub(deadline_ms));
                }
            }
            (false, true) => self.online_count += 1,
            _ => {}
        }
        let ttl_s = match (truth.connected, truth.deadline_ms, truth.last_seen_ms) {
            (true, Some(deadline_ms), Some(seen_ms)) => deadline_ms
                .saturating_sub(seen_ms)
                .div_ceil(1000)
                .clamp(1, SLOT_TTL_S_MAX),
            (true, _, _) => 1,
            (false, _, _) => 0,
        };
        let mut new_slot = slot
            .with_times(truth.last_seen_ms, ttl_s)
            .with_app_status(if truth.connected {
                truth.app
            } else {
                AppStatus::Online
            })
            .with_armed(entries > 0);
        if drop_extra && entries == 0 {
            self.extras.remove(&key);
            new_slot = new_slot.with_extra(false);
        }
        self.set_slot(key, new_slot);
    }

    /// Moves a user to the extras table (devices, override or a shortened deadline). A live
    /// plain heartbeat becomes the user's unnamed device.
    fn ensure_extra(&mut self, key: ShardKey<'_>) {
        let slot = self.slot(key);
        if slot.has_extra() && self.extras.contains_key(&key) {
            return;
        }
        let devices = match (slot.last_seen_ms(), slot.deadline_ms()) {
            (Some(last_seen_ms), Some(deadline_ms)) => vec![Device {
                id: Box::default(),
                last_seen_ms,
                deadline_ms,
                status: slot.app_status(),
            }],
            _ => Vec::new(),
        };
        let extra = Extra {
            devices,
            manual: None,
            value: None,
            published: plain_state(slot),
            wheel_entries: u32::from(slot.armed()),
            wheel_tick: None,
        };
        let owned = self.owned(key);
        self.extras.insert(owned, extra);
        self.set_slot(key, slot.with_extra(true));
    }

    /// A heartbeat: the user (or one of their devices) is live now for `ttl_s` seconds.
    /// Returns true if this brought the user online.
    pub fn heartbeat(
        &mut self,
        key: ShardKey<'_>,
        ttl_s: u64,
        app: Option<AppStatus>,
        device: Option<&[u8]>,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) -> Result<bool, StoreError> {
        debug_assert!(ttl_s > 0);
        self.settle(key, now_ms, events);
        let slot = self.slot(key);
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
            let before = plain_state(slot);
            let app = app.unwrap_or(if was_connected {
                slot.app_status()
            } else {
                AppStatus::Online
            });
            let new_slot = slot
                .with_times(Some(now_ms), ttl_s)
                .with_app_status(app)
                .with_armed(true);
            self.set_slot(key, new_slot);
            if !slot.armed() {
                self.arm(key, deadline_ms);
            }
            if !was_connected {
                self.online_count += 1;
            }
            if before != app.state() {
                events.push(Transition {
                    user: self.user_ref(key),
                    state: app.state(),
                    last_seen_ms: Some(now_ms),
                    cause: Cause::Change,
                });
            }
            return Ok(!was_connected);
        }
        let id = device.unwrap_or_default();
        if let Some(extra) = self.extras.get(&key)
            && extra.devices.len() >= DEVICES_PER_USER_MAX
            && !extra.devices.iter().any(|d| &*d.id == id)
        {
            return Err(StoreError::TooManyDevices);
        }
        self.ensure_extra(key);
        if let Some(extra) = self.extras.get_mut(&key) {
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
        }
        self.settle_extra(key, now_ms, events, Cause::Change);
        Ok(!was_connected)
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
        let slot = self.slot(key);
        if slot.is_never_seen() {
            return false;
        }
        if !slot.has_extra() {
            if device.is_some() || slot.ttl_s() == 0 {
                return false;
            }
            let before = plain_state(slot);
            self.set_slot(key, slot.offline());
            self.online_count -= 1;
            if before != State::Offline {
                events.push(Transition {
                    user: self.user_ref(key),
                    state: State::Offline,
                    last_seen_ms: slot.last_seen_ms(),
                    cause: Cause::Logout,
                });
            }
            return true;
        }
        let Some(extra) = self.extras.get_mut(&key) else {
            return false;
        };
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
        self.settle_extra(key, now_ms, events, Cause::Logout);
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
        if self.slot(key).ttl_s() == 0 {
            return false;
        }
        self.ensure_extra(key);
        let mut hit = false;
        if let Some(extra) = self.extras.get_mut(&key) {
            for d in extra
                .devices
                .iter_mut()
                .filter(|d| device.is_none_or(|id| &*d.id == id))
            {
                d.deadline_ms = now_ms + grace_ms;
                hit = true;
            }
        }
        self.settle_extra(key, now_ms, events, Cause::Change);
        hit
    }

    /// Sets (`Some`) or clears (`None`) the user's manual override, for `ttl_s` or until
    /// cleared.
    pub fn set_status(
        &mut self,
        key: ShardKey<'_>,
        manual: Option<ManualStatus>,
        ttl_s: Option<u64>,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) {
        self.settle(key, now_ms, events);
        if manual.is_none() && !self.slot(key).has_extra() {
            // Clearing an override nobody set changes nothing and must not create a user.
            return;
        }
        self.ensure_extra(key);
        let slot = self.slot(key);
        if let Some(extra) = self.extras.get_mut(&key) {
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
        }
        self.settle_extra(key, now_ms, events, Cause::Change);
    }

    /// Declares offline every user whose deadline has passed, looking only at wheel entries
    /// that are due, never at the whole slot array. At most about `due_max` entries per call.
    pub fn expire_due(
        &mut self,
        now_ms: u64,
        due_max: usize,
        events: &mut Vec<Transition>,
    ) -> ExpiryPass {
        let expired_before = self.expired_count;
        let mut pass = ExpiryPass::default();
        let mut due = Vec::new();
        self.dense_wheel.advance(now_ms, &mut due, due_max);
        for (tick, index) in due {
            self.fire(ShardKey::Dense(index), tick, now_ms, events, &mut pass);
        }
        let mut due = Vec::new();
        self.side_wheel.advance(now_ms, &mut due, due_max);
        for (tick, id) in due {
            self.fire(ShardKey::Side(&id), tick, now_ms, events, &mut pass);
        }
        pass.expired_count = self.expired_count - expired_before;
        pass
    }

    fn fire(
        &mut self,
        key: ShardKey<'_>,
        tick: u64,
        now_ms: u64,
        events: &mut Vec<Transition>,
        pass: &mut ExpiryPass,
    ) {
        let slot = self.slot(key);
        if slot.has_extra() {
            if let Some(extra) = self.extras.get_mut(&key) {
                extra.wheel_entries = extra.wheel_entries.saturating_sub(1);
                if extra.wheel_tick == Some(tick) {
                    extra.wheel_tick = None;
                }
            }
            return self.settle_extra(key, now_ms, events, Cause::Timeout);
        }
        // A plain user has exactly one entry: this one.
        match slot.deadline_ms() {
            Some(deadline_ms) if now_ms < deadline_ms => {
                pass.rearmed_count += 1;
                self.arm(key, deadline_ms);
            }
            _ => {
                self.settle(key, now_ms, events);
                let settled = self.slot(key);
                self.set_slot(key, settled.with_armed(false));
            }
        }
    }

    /// A drop-in key's value: the custom value if one was set, else the visible state's word.
    /// `None` while the key does not exist (the user reads as offline).
    pub fn key_value(&self, key: ShardKey<'_>, now_ms: u64) -> Option<Vec<u8>> {
        let view = self.view(key, now_ms);
        if !view.state.is_online() {
            return None;
        }
        let custom = self
            .extras
            .get(&key)
            .filter(|_| self.slot(key).has_extra())
            .and_then(|e| e.value.as_deref());
        Some(match custom {
            Some(value) => value.to_vec(),
            None => view.state.as_str().as_bytes().to_vec(),
        })
    }

    /// A drop-in key's time to live.
    pub fn key_ttl(&self, key: ShardKey<'_>, now_ms: u64) -> KeyTtl {
        if !self.view(key, now_ms).state.is_online() {
            return KeyTtl::Missing;
        }
        let slot = self.slot(key);
        let deadline_ms = match self.extras.get(&key).filter(|_| slot.has_extra()) {
            Some(extra) => extra.truth(slot.last_seen_ms(), now_ms).deadline_ms,
            None => slot.deadline_ms(),
        };
        match deadline_ms {
            None | Some(NO_DEADLINE_MS) => KeyTtl::Persistent,
            Some(deadline_ms) => KeyTtl::RemainingMs(deadline_ms.saturating_sub(now_ms)),
        }
    }

    /// `SET`: the user is online now with `value`, until `expiry`. Returns whether the value
    /// was set (NX/XX may refuse) and, if asked, the value before.
    pub fn set_key(
        &mut self,
        key: ShardKey<'_>,
        value: KeyValue<'_>,
        expiry: KeyExpiry,
        condition: SetCondition,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) -> (bool, Option<Vec<u8>>) {
        self.settle(key, now_ms, events);
        let old = self.key_value(key, now_ms);
        let exists = old.is_some();
        match condition {
            SetCondition::IfMissing if exists => return (false, old),
            SetCondition::IfExists if !exists => return (false, old),
            _ => {}
        }
        let deadline_ms = match (expiry, self.key_ttl(key, now_ms)) {
            (KeyExpiry::At(at_ms), _) => at_ms,
            (KeyExpiry::Never, _) | (KeyExpiry::Keep, KeyTtl::Missing | KeyTtl::Persistent) => {
                NO_DEADLINE_MS
            }
            (KeyExpiry::Keep, KeyTtl::RemainingMs(ms)) => now_ms + ms,
        };
        if deadline_ms <= now_ms {
            // Redis sets and at once deletes a key whose absolute expiry is in the past.
            self.offline(key, None, now_ms, events);
            return (true, old);
        }
        let slot = self.slot(key);
        let ttl_ms = deadline_ms - now_ms;
        if let KeyValue::Status(status) = value
            && !slot.has_extra()
            && ttl_ms.is_multiple_of(1000)
            && ttl_ms / 1000 <= SLOT_TTL_S_MAX
            && deadline_ms != NO_DEADLINE_MS
        {
            // A whole-second TTL and a status word: exactly a heartbeat.
            let came = self.heartbeat(key, ttl_ms / 1000, Some(status), None, now_ms, events);
            return (came.is_ok(), old);
        }
        self.ensure_extra(key);
        if let Some(extra) = self.extras.get_mut(&key) {
            let status = match value {
                KeyValue::Status(status) => status,
                KeyValue::Custom(_) => AppStatus::Online,
            };
            extra.devices.retain(|d| !d.id.is_empty());
            extra.devices.push(Device {
                id: Box::default(),
                last_seen_ms: now_ms,
                deadline_ms,
                status,
            });
            extra.value = match value {
                KeyValue::Custom(bytes) => Some(bytes.into()),
                KeyValue::Status(_) => None,
            };
        }
        self.settle_extra(key, now_ms, events, Cause::Change);
        (true, old)
    }

    /// `EXPIRE`/`PERSIST` of an existing key: `Some(at_ms)` sets when it expires, `None`
    /// removes its TTL. Returns whether anything changed (Redis's 1 or 0).
    pub fn expire_key(
        &mut self,
        key: ShardKey<'_>,
        at_ms: Option<u64>,
        condition: ExpireCondition,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) -> bool {
        self.settle(key, now_ms, events);
        let current = self.key_ttl(key, now_ms);
        let current_at_ms = match current {
            KeyTtl::Missing => return false,
            KeyTtl::Persistent => None,
            KeyTtl::RemainingMs(ms) => Some(now_ms + ms),
        };
        let allowed = match (condition, current_at_ms, at_ms) {
            (_, None, None) => false,
            (ExpireCondition::Always, _, _) => true,
            (ExpireCondition::IfNoTtl, current, _) => current.is_none(),
            (ExpireCondition::IfTtl, current, _) => current.is_some(),
            (ExpireCondition::IfGreater, Some(current), Some(new)) => new > current,
            (ExpireCondition::IfGreater, _, _) => false,
            (ExpireCondition::IfLess, None, Some(_)) => true,
            (ExpireCondition::IfLess, Some(current), Some(new)) => new < current,
            (ExpireCondition::IfLess, _, None) => false,
            (ExpireCondition::IfTtlAndLess, Some(current), Some(new)) => new < current,
            (ExpireCondition::IfTtlAndLess, _, _) => false,
        };
        if !allowed {
            return false;
        }
        if let Some(at_ms) = at_ms
            && at_ms <= now_ms
        {
            self.offline(key, None, now_ms, events);
            return true;
        }
        self.ensure_extra(key);
        if let Some(extra) = self.extras.get_mut(&key) {
            for device in extra.devices.iter_mut().filter(|d| now_ms < d.deadline_ms) {
                device.deadline_ms = at_ms.unwrap_or(NO_DEADLINE_MS);
            }
        }
        self.settle_extra(key, now_ms, events, Cause::Change);
        true
    }

    /// Visits users in position order from `position`, examining at most `budget` positions
    /// (untouched pages of the slot array cost nothing), and appends those whose key exists.
    /// Returns the position to resume from, or `None` once every user was visited.
    pub fn scan(
        &self,
        position: u64,
        budget: usize,
        now_ms: u64,
        out: &mut Vec<UserRef>,
    ) -> Option<u64> {
        let dense_len = self.dense.len() as u64;
        let mut position = position;
        let mut examined = 0;
        while examined < budget {
            if position < dense_len {
                let Some(index) = self.dense.next_touched(position as usize) else {
                    position = dense_len;
                    continue;
                };
                let key = ShardKey::Dense(index);
                if self.view(key, now_ms).state.is_online() {
                    out.push(self.user_ref(key));
                }
                position = index as u64 + 1;
            } else {
                let side_index = (position - dense_len) as usize;
                let id = self.side_order.get(side_index)?;
                let key = ShardKey::Side(id);
                if self.view(key, now_ms).state.is_online() {
                    out.push(UserRef::Side(Arc::clone(id)));
                }
                position += 1;
            }
            examined += 1;
        }
        Some(position)
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

    pub fn extras_count(&self) -> u64 {
        self.extras.len() as u64
    }

    pub fn wheel_len(&self) -> usize {
        self.dense_wheel.len() + self.side_wheel.len()
    }

    pub fn dense_len(&self) -> usize {
        self.dense.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0_MS: u64 = 1_764_000_000_000;

    fn shard() -> Shard {
        Shard::new(1024, 0, 1, T0_MS).expect("map")
    }

    /// Runs the wheel at `now_ms` and returns the transitions it produced.
    fn tick(shard: &mut Shard, now_ms: u64) -> Vec<(State, Option<u64>)> {
        let mut events = Vec::new();
        shard.expire_due(now_ms, usize::MAX, &mut events);
        events.iter().map(|e| (e.state, e.last_seen_ms)).collect()
    }

    fn states(events: &[Transition]) -> Vec<State> {
        events.iter().map(|e| e.state).collect()
    }

    /// Heartbeat, expiry by the wheel and logout, driven by a hand-held clock.
    #[test]
    fn lifecycle_with_controlled_clock() {
        let mut shard = shard();
        let user = ShardKey::Dense(7);
        let mut events = Vec::new();
        assert_eq!(
            shard.heartbeat(user, 1, None, None, T0_MS, &mut events),
            Ok(true)
        );
        assert_eq!(
            shard.heartbeat(user, 1, None, None, T0_MS + 500, &mut events),
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
        assert_eq!(shard.lag.count(), 1);
        events.clear();
        assert_eq!(
            shard.heartbeat(user, 30, None, None, T0_MS + 2_000, &mut events),
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
            shard.heartbeat(user, 30, None, None, T0_MS + 4_000, &mut events),
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
            shard.heartbeat(user, 1, None, None, T0_MS, &mut events),
            Ok(true)
        );
        assert_eq!(shard.tracked_count(), 1);
        assert_eq!(
            tick(&mut shard, T0_MS + 1_000),
            vec![(State::Offline, Some(T0_MS))]
        );
        assert_eq!(shard.online_count(), 0);
    }

    /// A heartbeat with a shorter TTL than the one pending is still detected on time.
    #[test]
    fn shortened_ttl_expires_on_time() {
        let mut shard = shard();
        let user = ShardKey::Dense(3);
        let mut events = Vec::new();
        shard
            .heartbeat(user, 3600, None, None, T0_MS, &mut events)
            .unwrap();
        shard
            .heartbeat(user, 1, None, None, T0_MS + 100, &mut events)
            .unwrap();
        assert_eq!(
            tick(&mut shard, T0_MS + 1_100),
            vec![(State::Offline, Some(T0_MS + 100))]
        );
        // The superseded entry fires an hour later and changes nothing.
        assert!(tick(&mut shard, T0_MS + 3_700_000).is_empty());
        assert_eq!(shard.wheel_len(), 0);
        assert_eq!(shard.extras_count(), 0, "the user is plain again");
    }

    /// DISCONNECT then a heartbeat inside the grace: no events; left alone: offline at its end.
    #[test]
    fn grace_period() {
        let mut shard = shard();
        let user = ShardKey::Dense(5);
        let mut events = Vec::new();
        shard
            .heartbeat(user, 30, None, None, T0_MS, &mut events)
            .unwrap();
        events.clear();
        assert!(shard.disconnect(user, None, 10_000, T0_MS + 1_000, &mut events));
        assert_eq!(
            shard.heartbeat(user, 30, None, None, T0_MS + 5_000, &mut events),
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
            shard.heartbeat(user, 30, None, phone, T0_MS, &mut events),
            Ok(true)
        );
        assert_eq!(
            shard.heartbeat(user, 30, None, laptop, T0_MS + 10, &mut events),
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
            .heartbeat(user, 1, None, phone, T0_MS + 100, &mut events)
            .unwrap();
        shard
            .heartbeat(user, 5, None, laptop, T0_MS + 100, &mut events)
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
            .heartbeat(user, 30, None, None, T0_MS, &mut events)
            .unwrap();
        shard
            .heartbeat(
                user,
                30,
                Some(AppStatus::Away),
                None,
                T0_MS + 1,
                &mut events,
            )
            .unwrap();
        shard.set_status(user, Some(ManualStatus::Dnd), None, T0_MS + 2, &mut events);
        shard
            .heartbeat(
                user,
                30,
                Some(AppStatus::Busy),
                None,
                T0_MS + 3,
                &mut events,
            )
            .unwrap();
        assert_eq!(shard.view(user, T0_MS + 3).state, State::Dnd);
        shard.set_status(user, None, None, T0_MS + 4, &mut events);
        assert_eq!(
            states(&events),
            vec![State::Online, State::Away, State::Dnd, State::Busy]
        );
        // An override with a TTL lapses by itself, and the wheel publishes that.
        events.clear();
        shard.set_status(
            user,
            Some(ManualStatus::Away),
            Some(2),
            T0_MS + 10,
            &mut events,
        );
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
        shard.set_status(
            user,
            Some(ManualStatus::Invisible),
            None,
            T0_MS,
            &mut events,
        );
        shard
            .heartbeat(user, 1, None, None, T0_MS + 1, &mut events)
            .unwrap();
        shard
            .heartbeat(user, 1, Some(AppStatus::Busy), None, T0_MS + 2, &mut events)
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
        shard.set_status(user, None, None, T0_MS + 4_000, &mut events);
        shard
            .heartbeat(user, 30, None, None, T0_MS + 4_000, &mut events)
            .unwrap();
        shard.set_status(
            user,
            Some(ManualStatus::Invisible),
            None,
            T0_MS + 5_000,
            &mut events,
        );
        assert_eq!(states(&events), vec![State::Online, State::Offline]);
        assert_eq!(events[1].last_seen_ms, Some(T0_MS + 4_000));
        shard
            .heartbeat(user, 30, None, None, T0_MS + 6_000, &mut events)
            .unwrap();
        assert_eq!(
            shard.view(user, T0_MS + 6_000).last_seen_ms,
            Some(T0_MS + 4_000)
        );
        assert_eq!(events.len(), 2);
    }

    /// Logging out and back in with a shorter TTL than the pending entry is still detected on
    /// time, and the superseded entry changes nothing when it fires.
    #[test]
    fn relogin_with_shorter_ttl_expires_on_time() {
        let mut shard = shard();
        let user = ShardKey::Dense(500);
        let mut events = Vec::new();
        shard
            .heartbeat(user, 3600, None, None, T0_MS, &mut events)
            .unwrap();
        assert!(shard.offline(user, None, T0_MS + 10, &mut events));
        assert_eq!(
            shard.heartbeat(user, 1, None, None, T0_MS + 20, &mut events),
            Ok(true)
        );
        assert_eq!(
            tick(&mut shard, T0_MS + 1_100),
            vec![(State::Offline, Some(T0_MS + 20))]
        );
        assert_eq!(shard.online_count(), 0);
        assert!(tick(&mut shard, T0_MS + 3_700_000).is_empty());
        assert_eq!(shard.wheel_len(), 0);
    }

    /// Heartbeats in the same millisecond: the status of the one heard last is shown.
    #[test]
    fn latest_device_wins_a_tie() {
        let mut shard = shard();
        let user = ShardKey::Dense(20);
        let mut events = Vec::new();
        shard
            .heartbeat(user, 30, None, None, T0_MS, &mut events)
            .unwrap();
        shard
            .heartbeat(user, 30, None, Some(b"phone"), T0_MS, &mut events)
            .unwrap();
        shard
            .heartbeat(user, 30, Some(AppStatus::Away), None, T0_MS, &mut events)
            .unwrap();
        assert_eq!(shard.view(user, T0_MS).state, State::Away);
        assert_eq!(states(&events), vec![State::Online, State::Away]);
    }

    /// Drop-in keys: SET with a custom value and no TTL, KEEPTTL, EXPIRE conditions, DEL.
    #[test]
    fn drop_in_keys() {
        let mut shard = shard();
        let user = ShardKey::Side(b"u-1");
        let mut events = Vec::new();
        let json = br#"{"status":"online"}"#;
        let (set, old) = shard.set_key(
            user,
            KeyValue::Custom(json),
            KeyExpiry::Never,
            SetCondition::Always,
            T0_MS,
            &mut events,
        );
        assert!(set && old.is_none());
        assert_eq!(shard.key_value(user, T0_MS + 1).as_deref(), Some(&json[..]));
        assert_eq!(shard.key_ttl(user, T0_MS + 1), KeyTtl::Persistent);
        assert_eq!(shard.wheel_len(), 0, "no TTL: nothing to wake for");
        let (set, _) = shard.set_key(
            user,
            KeyValue::Status(AppStatus::Away),
            KeyExpiry::Keep,
            SetCondition::IfMissing,
            T0_MS + 2,
            &mut events,
        );
        assert!(!set, "NX refuses an existing key");
        assert!(
            !shard.expire_key(
                user,
                Some(T0_MS + 5_000),
                ExpireCondition::IfGreater,
                T0_MS + 3,
                &mut events
            ),
            "GT: no TTL is infinite"
        );
        assert!(shard.expire_key(
            user,
            Some(T0_MS + 5_000),
            ExpireCondition::IfLess,
            T0_MS + 3,
            &mut events
        ));
        assert_eq!(
            shard.key_ttl(user, T0_MS + 1_000),
            KeyTtl::RemainingMs(4_000)
        );
        let (_, old) = shard.set_key(
            user,
            KeyValue::Status(AppStatus::Away),
            KeyExpiry::Keep,
            SetCondition::IfExists,
            T0_MS + 1_000,
            &mut events,
        );
        assert_eq!(old.as_deref(), Some(&json[..]));
        assert_eq!(
            shard.key_value(user, T0_MS + 1_001).as_deref(),
            Some(&b"away"[..])
        );
        assert_eq!(
            shard.key_ttl(user, T0_MS + 1_000),
            KeyTtl::RemainingMs(4_000),
            "KEEPTTL"
        );
        events.clear();
        assert_eq!(
            tick(&mut shard, T0_MS + 5_100),
            vec![(State::Offline, Some(T0_MS + 1_000))]
        );
        assert_eq!(shard.key_value(user, T0_MS + 5_100), None);
        assert_eq!(shard.key_ttl(user, T0_MS + 5_100), KeyTtl::Missing);
    }

    /// 100,000 users expiring in the same second are all declared offline in one pass.
    #[test]
    fn mass_expiry() {
        let mut shard = Shard::new(200_000, 0, 1, T0_MS).expect("map");
        let mut events = Vec::new();
        for i in 0..100_000 {
            shard
                .heartbeat(
                    ShardKey::Dense(i),
                    1,
                    None,
                    None,
                    T0_MS + (i as u64 % 1000),
                    &mut events,
                )
                .unwrap();
        }
        events.clear();
        shard.expire_due(T0_MS + 2_100, usize::MAX, &mut events);
        assert_eq!(events.len(), 100_000);
        assert_eq!(shard.online_count(), 0);
        assert!(shard.lag.quantile_ms(1.0) <= 1_100);
    }
}
