//! What a few users have beyond their slot: several devices, and a manual status override.
//! Kept in a per-shard table, consulted only for slots whose `EXTRA` flag is set, so the dense
//! slot stays 8 bytes and users without devices or overrides never pay for this.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::status::{AppStatus, ManualStatus, State};

/// Most devices one user may have live at once. A gateway opening more sessions than this for
/// one user is misbehaving; 32 x ~80 bytes bounds one user's device table at ~2.5 KiB.
pub const DEVICES_PER_USER_MAX: usize = 32;

/// Longest device ID.
pub const DEVICE_ID_LEN_MAX: usize = 128;

/// A user inside one shard, owned (for tables and the wheel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedKey {
    Dense(usize),
    Side(Arc<[u8]>),
}

/// A user inside one shard, borrowed from the request.
#[derive(Clone, Copy, Debug)]
pub enum ShardKey<'a> {
    /// Index into this shard's slot array (the user ID divided by the shard count).
    Dense(usize),
    Side(&'a [u8]),
}

impl Hash for OwnedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            OwnedKey::Dense(i) => ShardKey::Dense(*i).hash(state),
            OwnedKey::Side(b) => ShardKey::Side(b).hash(state),
        }
    }
}

impl Hash for ShardKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            ShardKey::Dense(i) => {
                state.write_u8(0);
                state.write_usize(*i);
            }
            ShardKey::Side(b) => {
                state.write_u8(1);
                b.hash(state);
            }
        }
    }
}

impl hashbrown::Equivalent<OwnedKey> for ShardKey<'_> {
    fn equivalent(&self, key: &OwnedKey) -> bool {
        match (self, key) {
            (ShardKey::Dense(a), OwnedKey::Dense(b)) => a == b,
            (ShardKey::Side(a), OwnedKey::Side(b)) => *a == &b[..],
            _ => false,
        }
    }
}

/// A deadline that never comes: a drop-in key set without a TTL.
pub const NO_DEADLINE_MS: u64 = u64::MAX;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Empty for heartbeats that named no device.
    pub id: Box<[u8]>,
    pub last_seen_ms: u64,
    /// The device is live while `now_ms` is before this (`NO_DEADLINE_MS`: until removed).
    pub deadline_ms: u64,
    pub status: AppStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Override {
    pub status: ManualStatus,
    /// When the override lapses; `None`: until cleared.
    pub until_ms: Option<u64>,
    /// For `invisible`: the last-seen others keep seeing while the user is invisible.
    pub frozen_last_seen_ms: Option<u64>,
}

impl Override {
    pub fn active(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|until| now_ms < until)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extra {
    /// Live devices (expired ones are pruned when the user is next settled).
    pub devices: Vec<Device>,
    pub manual: Option<Override>,
    /// The state subscribers were last told.
    pub published: State,
    /// A drop-in value that is not a status word (`SET user:42:presence '{"x":1}'`), kept
    /// byte for byte while the user is online and dropped when they go offline (as a Redis key
    /// and its value vanish together).
    pub value: Option<Box<[u8]>>,
    /// Wheel entries that point at this user, and the tick of the one that is current.
    /// A shortened deadline adds an entry; the superseded one is dropped when it fires.
    pub wheel_entries: u32,
    pub wheel_tick: Option<u64>,
}

/// The truth about a user with extras at some instant.
#[derive(Clone, Copy, Debug)]
pub struct Truth {
    pub connected: bool,
    pub state: State,
    pub app: AppStatus,
    /// The real last-seen (the newest of the slot's and the devices').
    pub last_seen_ms: Option<u64>,
    /// The last-seen others see (frozen while invisible).
    pub shown_last_seen_ms: Option<u64>,
    /// The latest device deadline, while connected.
    pub deadline_ms: Option<u64>,
    /// The next instant at which the truth changes by itself.
    pub next_wake_ms: Option<u64>,
}

impl Extra {
    pub fn truth(&self, slot_last_seen_ms: Option<u64>, now_ms: u64) -> Truth {
        let live = || self.devices.iter().filter(|d| now_ms < d.deadline_ms);
        let connected = live().next().is_some();
        // `max_by_key` keeps the last of equal keys, and devices are kept in the order they
        // were heard from, so a tie goes to the latest heartbeat.
        let app = live()
            .max_by_key(|d| d.last_seen_ms)
            .map_or(AppStatus::Online, |d| d.status);
        let last_seen_ms = self
            .devices
            .iter()
            .map(|d| d.last_seen_ms)
            .chain(slot_last_seen_ms)
            .max();
        let manual = self.manual.filter(|m| m.active(now_ms));
        let state = match (connected, manual) {
            (false, _) => State::Offline,
            (true, Some(m)) => m.status.state(),
            (true, None) => app.state(),
        };
        let shown_last_seen_ms = match manual {
            Some(m) if m.status == ManualStatus::Invisible => m.frozen_last_seen_ms,
            _ => last_seen_ms,
        };
        let next_wake_ms = live()
            .map(|d| d.deadline_ms)
            .filter(|&d| d != NO_DEADLINE_MS)
            .chain(manual.and_then(|m| m.until_ms))
            .min();
        Truth {
            connected,
            state,
            app,
            last_seen_ms,
            shown_last_seen_ms,
            deadline_ms: live().map(|d| d.deadline_ms).max(),
            next_wake_ms,
        }
    }
}
