//! The Redis drop-in surface on presence keys: a key's value and TTL, `SET`, `EXPIRE`/`PERSIST`,
//! and the `SCAN` walk over users whose key exists.
//!
//! A key is a view of a user: these operations read the same slot and extras `STATUS` reads,
//! and change them only by settling and handing the new state to the door, never in place.

use std::sync::Arc;

use super::presence::StoreError;
use super::{Room, Shard};
use crate::store::event::{Cause, Transition, UserRef};
use crate::store::extra::{Device, Extra, NO_DEADLINE_MS, ShardKey};
use crate::store::slot::{SLOT_TTL_S_MAX, Slot};
use crate::store::status::AppStatus;

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

impl Shard {
    /// A drop-in key's value: the custom value if one was set, else the visible state's word.
    /// `None` while the key does not exist (the user reads as offline).
    pub fn key_value(&self, key: ShardKey<'_>, now_ms: u64) -> Option<Vec<u8>> {
        let view = self.view(key, now_ms);
        if !view.state.is_online() {
            return None;
        }
        let custom = self
            .tables
            .extra(key)
            .filter(|_| self.tables.slot(key).has_extra())
            .and_then(|e| e.value.as_deref());
        Some(match custom {
            Some(value) => value.to_vec(),
            None => view.state.as_str().as_bytes().to_vec(),
        })
    }

    /// What `MEMORY USAGE` reports for a key, in bytes: its 8-byte slot (with a side-table
    /// user's ID and table entry), and for a user with devices, an override or a value, the
    /// extras entry with them. `None` while the key does not exist. An estimate from sizes,
    /// as Redis's is: allocator overhead is not counted.
    pub fn key_memory_bytes(&self, key: ShardKey<'_>, now_ms: u64) -> Option<u64> {
        /// A hash-table entry's bookkeeping beyond its key and value (control byte, slack).
        const TABLE_ENTRY_BYTES: usize = 16;
        if !self.view(key, now_ms).state.is_online() {
            return None;
        }
        let slot = self.tables.slot(key);
        let mut bytes = std::mem::size_of::<Slot>();
        if let ShardKey::Side(id) = key {
            // The same estimate `maxmemory`'s growth count and `INFO memory` use.
            bytes += id.len() + super::door::SIDE_ENTRY_OVERHEAD_BYTES as usize;
        }
        if let Some(extra) = self.tables.extra(key).filter(|_| slot.has_extra()) {
            bytes += std::mem::size_of::<Extra>() + TABLE_ENTRY_BYTES;
            bytes += extra.devices.capacity() * std::mem::size_of::<Device>();
            bytes += extra.devices.iter().map(|d| d.id.len()).sum::<usize>();
            bytes += extra.value.as_ref().map_or(0, |v| v.len());
        }
        Some(bytes as u64)
    }

    /// A drop-in key's time to live.
    pub fn key_ttl(&self, key: ShardKey<'_>, now_ms: u64) -> KeyTtl {
        if !self.view(key, now_ms).state.is_online() {
            return KeyTtl::Missing;
        }
        let slot = self.tables.slot(key);
        let deadline_ms = match self.tables.extra(key).filter(|_| slot.has_extra()) {
            Some(extra) => extra.truth(slot.last_seen_ms(), now_ms).deadline_ms,
            None => slot.deadline_ms(),
        };
        match deadline_ms {
            None | Some(NO_DEADLINE_MS) => KeyTtl::Persistent,
            Some(deadline_ms) => KeyTtl::RemainingMs(deadline_ms.saturating_sub(now_ms)),
        }
    }

    /// Whether `SET` of `value` would make the store hold more: the user is not tracked yet,
    /// or the value is not a status word (its bytes are kept). Past `maxmemory` such a `SET`
    /// is refused; one that stores a status word for a tracked user is a heartbeat and is not.
    pub fn set_adds(&self, key: ShardKey<'_>, value: KeyValue<'_>) -> bool {
        matches!(value, KeyValue::Custom(_)) || self.tables.slot(key).is_never_seen()
    }

    /// `SET`: the user is online now with `value`, until `expiry`. Returns whether the value
    /// was set (NX/XX may refuse) and, if asked, the value before. With `Room::Full`, a `SET`
    /// that would add (`set_adds`) is refused, unless NX/XX refuse it first or its expiry is
    /// already past (which deletes: nothing is added).
    #[allow(clippy::too_many_arguments)]
    pub fn set_key(
        &mut self,
        key: ShardKey<'_>,
        value: KeyValue<'_>,
        expiry: KeyExpiry,
        condition: SetCondition,
        room: Room,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) -> Result<(bool, Option<Vec<u8>>), StoreError> {
        self.settle(key, now_ms, events);
        let old = self.key_value(key, now_ms);
        let exists = old.is_some();
        match condition {
            SetCondition::IfMissing if exists => return Ok((false, old)),
            SetCondition::IfExists if !exists => return Ok((false, old)),
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
            self.forget(key, now_ms, events);
            return Ok((true, old));
        }
        if room == Room::Full && self.set_adds(key, value) {
            return Err(StoreError::OutOfMemory);
        }
        if self.tables.slot(key).is_never_seen() {
            self.revive_forgotten(key, now_ms, events);
        }
        let slot = self.tables.slot(key);
        let ttl_ms = deadline_ms - now_ms;
        if let KeyValue::Status(status) = value
            && !slot.has_extra()
            && ttl_ms.is_multiple_of(1000)
            && ttl_ms / 1000 <= SLOT_TTL_S_MAX
            && deadline_ms != NO_DEADLINE_MS
        {
            // A whole-second TTL and a status word: exactly a heartbeat (room was judged above).
            let beat = self.heartbeat(
                key,
                ttl_ms / 1000,
                Some(status),
                None,
                Room::Available,
                now_ms,
                events,
            );
            return Ok((beat.is_ok(), old));
        }
        let mut extra = self.working_extra(key);
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
        self.settle_and_commit(key, extra, now_ms, events, Cause::Change);
        Ok((true, old))
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
            // A time not in the future deletes the key, as `DEL` does.
            self.forget(key, now_ms, events);
            return true;
        }
        let mut extra = self.working_extra(key);
        for device in extra.devices.iter_mut().filter(|d| now_ms < d.deadline_ms) {
            device.deadline_ms = at_ms.unwrap_or(NO_DEADLINE_MS);
        }
        self.settle_and_commit(key, extra, now_ms, events, Cause::Change);
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
        let dense_len = self.tables.dense().len() as u64;
        let mut position = position;
        let mut examined = 0;
        while examined < budget {
            if position < dense_len {
                let Some(index) = self.tables.dense().next_touched(position as usize) else {
                    position = dense_len;
                    continue;
                };
                let key = ShardKey::Dense(index);
                if self.view(key, now_ms).state.is_online() {
                    out.push(self.tables.user_ref(key));
                }
                position = index as u64 + 1;
            } else {
                let side_index = (position - dense_len) as usize;
                // A hole (a forgotten user's position) is examined and passed over.
                if let Some(id) = self.tables.side_at(side_index)? {
                    let key = ShardKey::Side(id);
                    if self.view(key, now_ms).state.is_online() {
                        out.push(UserRef::Side(Arc::clone(id)));
                    }
                }
                position += 1;
            }
            examined += 1;
        }
        Some(position)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    /// Drop-in keys: SET with a custom value and no TTL, KEEPTTL, EXPIRE conditions, DEL.
    #[test]
    fn drop_in_keys() {
        let mut shard = shard();
        let user = ShardKey::Side(b"u-1");
        let mut events = Vec::new();
        let json = br#"{"status":"online"}"#;
        let (set, old) = shard
            .set_key(
                user,
                KeyValue::Custom(json),
                KeyExpiry::Never,
                SetCondition::Always,
                Room::Available,
                T0_MS,
                &mut events,
            )
            .expect("room");
        assert!(set && old.is_none());
        assert_eq!(shard.key_value(user, T0_MS + 1).as_deref(), Some(&json[..]));
        assert_eq!(shard.key_ttl(user, T0_MS + 1), KeyTtl::Persistent);
        assert_eq!(shard.wheel_len(), 0, "no TTL: nothing to wake for");
        let (set, _) = shard
            .set_key(
                user,
                KeyValue::Status(AppStatus::Away),
                KeyExpiry::Keep,
                SetCondition::IfMissing,
                Room::Available,
                T0_MS + 2,
                &mut events,
            )
            .expect("room");
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
        let (_, old) = shard
            .set_key(
                user,
                KeyValue::Status(AppStatus::Away),
                KeyExpiry::Keep,
                SetCondition::IfExists,
                Room::Available,
                T0_MS + 1_000,
                &mut events,
            )
            .expect("room");
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

    /// Past `maxmemory`, `SET` is refused when it would add a user or a value; a status word
    /// for a known user is a heartbeat and is set; NX refusing first, or an expiry already past,
    /// adds nothing and answers as always.
    #[test]
    fn set_past_maxmemory_refuses_only_what_adds() {
        let mut shard = shard();
        let mut events = Vec::new();
        let (known, new) = (ShardKey::Side(b"u-1"), ShardKey::Side(b"u-2"));
        let set = |shard: &mut Shard, key, value, expiry, condition, events: &mut Vec<_>| {
            shard.set_key(key, value, expiry, condition, Room::Full, T0_MS, events)
        };
        shard
            .heartbeat(known, 30, None, None, Room::Available, T0_MS, &mut events)
            .expect("heartbeat");
        let away = KeyValue::Status(AppStatus::Away);
        let custom = KeyValue::Custom(b"{}");
        let ex = KeyExpiry::At(T0_MS + 30_000);
        assert_eq!(
            set(
                &mut shard,
                known,
                away,
                ex,
                SetCondition::Always,
                &mut events
            ),
            Ok((true, Some(b"online".to_vec())))
        );
        assert_eq!(
            set(
                &mut shard,
                known,
                custom,
                ex,
                SetCondition::Always,
                &mut events
            ),
            Err(StoreError::OutOfMemory),
            "a value takes memory"
        );
        assert_eq!(
            set(&mut shard, new, away, ex, SetCondition::Always, &mut events),
            Err(StoreError::OutOfMemory)
        );
        assert_eq!(
            set(
                &mut shard,
                known,
                custom,
                ex,
                SetCondition::IfMissing,
                &mut events
            ),
            Ok((false, Some(b"away".to_vec())))
        );
        assert_eq!(
            set(
                &mut shard,
                new,
                away,
                KeyExpiry::At(T0_MS - 1),
                SetCondition::Always,
                &mut events
            ),
            Ok((true, None))
        );
        assert_eq!(shard.side_count(), 1);
        assert_eq!(shard.value_bytes(), 0);
    }

    /// `SCAN` over the side table while users come and go: every user present for the whole
    /// walk is returned, though forgotten users leave holes that new users fill behind and
    /// ahead of the cursor; the positions are reused (the table does not grow), and once the
    /// table empties they start over.
    #[test]
    fn scan_returns_users_present_throughout_while_others_churn() {
        let mut shard = shard();
        let mut events = Vec::new();
        let beat = |shard: &mut Shard, id: &[u8], events: &mut Vec<Transition>| {
            shard
                .heartbeat(
                    ShardKey::Side(id),
                    300,
                    None,
                    None,
                    Room::Available,
                    T0_MS,
                    events,
                )
                .expect("heartbeat");
        };
        let stable: Vec<String> = (0..200).map(|i| format!("s-{i}")).collect();
        let churn: Vec<String> = (0..200).map(|i| format!("c-{i}")).collect();
        for (s, c) in stable.iter().zip(&churn) {
            beat(&mut shard, s.as_bytes(), &mut events);
            beat(&mut shard, c.as_bytes(), &mut events);
        }
        let positions = shard.tables.side_at(399).is_some();
        assert!(positions && shard.tables.side_at(400).is_none());
        let mut seen = std::collections::HashSet::new();
        let mut live_churn = churn;
        let (mut cursor, mut step, mut fresh) = (0, 0, 0);
        loop {
            let mut out = Vec::new();
            let next = shard.scan(cursor, 7, T0_MS, &mut out);
            seen.extend(out.into_iter().map(|u| u.to_bytes()));
            // Between steps: five churning users forgotten (behind and ahead of the cursor),
            // five new ones filling their holes and churning in turn.
            for i in 0..5 {
                let gone = live_churn.swap_remove((step * 37 + i * 41) % live_churn.len());
                assert!(shard.forget(ShardKey::Side(gone.as_bytes()), T0_MS, &mut events));
                let new = format!("n-{fresh}");
                beat(&mut shard, new.as_bytes(), &mut events);
                live_churn.push(new);
                fresh += 1;
            }
            step += 1;
            match next {
                Some(position) => cursor = position,
                None => break,
            }
        }
        for s in &stable {
            assert!(seen.contains(s.as_bytes()), "{s} was present throughout");
        }
        assert!(
            shard.tables.side_at(400).is_none(),
            "holes were filled, the table did not grow"
        );
        let users: Vec<Vec<u8>> = shard.side_users().map(|(id, _)| id.to_vec()).collect();
        for id in users {
            shard.forget(ShardKey::Side(&id), T0_MS, &mut events);
        }
        assert_eq!(shard.side_count(), 0);
        assert!(shard.tables.side_at(0).is_none(), "positions start over");
        beat(&mut shard, b"again", &mut events);
        assert!(shard.tables.side_at(0).is_some_and(|at| at.is_some()));
    }
}
