//! A shard's state as bytes and back, for snapshots. No I/O here: `snapshot` owns files; this
//! module only knows the shard's layout. Import never trusts its input: every length is
//! checked and a malformed record is an error, never a panic.
//!
//! Encodings (all integers little-endian):
//! - dense chunk: `CHUNK_SLOTS` slots (fewer in a shard's last chunk) as raw `u64`s;
//! - side table: repeated `id_len: u16, id, slot: u64`;
//! - extras: repeated `key, published: u8, devices, manual, value` where
//!   `key = 0u8, index: u64 | 1u8, id_len: u16, id`,
//!   `devices = count: u16, (id_len: u16, id, last_seen_ms: u64, deadline_ms: u64, status: u8)*`,
//!   `manual = 0u8 | 1u8, status: u8, until_ms: u64 (MAX = none), frozen_ms: u64 (MAX = none)`,
//!   `value = len: u32 (MAX = none), bytes`;
//! - replication batch (docs/design/replication.md): the plain dense users packed
//!   (`store::packed`), then whole records;
//! - replication record (one changed user):
//!   `key, slot: u64, 0u8 | 1u8 extras-body` where `key = 0u8, user_id: u64 | 1u8, id_len: u16,
//!   id` (the user's ID as clients name it; the receiving shard checks it routes there) and
//!   `extras-body` is an extras entry after its key.

use std::sync::Arc;

use super::event::{Transition, UserRef};
use super::extra::{Device, Extra, Override, OwnedKey, ShardKey};
use super::packed::{self, PackedUser};
use super::shard::Shard;
use super::side_shard;
use super::slot::Slot;
use super::status::{AppStatus, ManualStatus, State};
use super::user_id::{UserKey, parse_user_id};
use crate::limits::USER_ID_LEN_MAX;

/// Slots per dense chunk: 8,192 x 8 bytes = 64 KiB, each with its own CRC in a snapshot.
/// Small enough that copying one under the shard's lock takes microseconds, large enough that
/// per-chunk overhead is negligible.
pub const CHUNK_SLOTS: usize = 8192;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportError(pub String);

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ImportError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| ImportError(format!("record ends early at byte {}", self.at)))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, ImportError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ImportError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().map_err(|_| bad("u16"))?,
        ))
    }
    fn u32(&mut self) -> Result<u32, ImportError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| bad("u32"))?,
        ))
    }
    fn u64(&mut self) -> Result<u64, ImportError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| bad("u64"))?,
        ))
    }
    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

fn bad(what: &str) -> ImportError {
    ImportError(format!("malformed {what}"))
}

fn status_byte(status: AppStatus) -> u8 {
    status.bits() as u8
}

fn manual_byte(status: ManualStatus) -> u8 {
    match status {
        ManualStatus::Away => 0,
        ManualStatus::Busy => 1,
        ManualStatus::Dnd => 2,
        ManualStatus::Invisible => 3,
    }
}

fn manual_from(byte: u8) -> Result<ManualStatus, ImportError> {
    Ok(match byte {
        0 => ManualStatus::Away,
        1 => ManualStatus::Busy,
        2 => ManualStatus::Dnd,
        3 => ManualStatus::Invisible,
        _ => return Err(bad("override status")),
    })
}

fn state_byte(state: State) -> u8 {
    match state {
        State::Offline => 0,
        State::Online => 1,
        State::Away => 2,
        State::Busy => 3,
        State::Dnd => 4,
    }
}

fn put_id(out: &mut Vec<u8>, id: &[u8]) {
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id);
}

fn read_id<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], ImportError> {
    let len = r.u16()? as usize;
    if len > USER_ID_LEN_MAX.max(super::extra::DEVICE_ID_LEN_MAX) {
        return Err(bad("id length"));
    }
    r.take(len)
}

/// An extras entry after its key: `published: u8, devices, manual, value` (see the module
/// comment). Shared by snapshots and the replication stream.
fn put_extra_body(out: &mut Vec<u8>, extra: &Extra) {
    out.push(state_byte(extra.published));
    out.extend_from_slice(&(extra.devices.len() as u16).to_le_bytes());
    for d in &extra.devices {
        put_id(out, &d.id);
        out.extend_from_slice(&d.last_seen_ms.to_le_bytes());
        out.extend_from_slice(&d.deadline_ms.to_le_bytes());
        out.push(status_byte(d.status));
    }
    match extra.manual {
        None => out.push(0),
        Some(m) => {
            out.push(1);
            out.push(manual_byte(m.status));
            out.extend_from_slice(&m.until_ms.unwrap_or(u64::MAX).to_le_bytes());
            out.extend_from_slice(&m.frozen_last_seen_ms.unwrap_or(u64::MAX).to_le_bytes());
        }
    }
    match &extra.value {
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        Some(v) => {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
    }
}

/// Reads what `put_extra_body` wrote, checking every count and length; the entry has no wheel
/// entries (they are this process's own).
fn read_extra_body(r: &mut Reader<'_>) -> Result<Extra, ImportError> {
    let published = state_from(r.u8()?)?;
    let device_count = r.u16()? as usize;
    if device_count > super::extra::DEVICES_PER_USER_MAX {
        return Err(bad("device count"));
    }
    let mut devices = Vec::with_capacity(device_count);
    for _ in 0..device_count {
        let id = read_id(r)?;
        if id.len() > super::extra::DEVICE_ID_LEN_MAX {
            return Err(bad("device id length"));
        }
        let id: Box<[u8]> = id.into();
        let last_seen_ms = r.u64()?;
        let deadline_ms = r.u64()?;
        let status = AppStatus::from_bits(u64::from(r.u8()?));
        devices.push(Device {
            id,
            last_seen_ms,
            deadline_ms,
            status,
        });
    }
    let manual = match r.u8()? {
        0 => None,
        1 => {
            let status = manual_from(r.u8()?)?;
            let until = r.u64()?;
            let frozen = r.u64()?;
            Some(Override {
                status,
                until_ms: (until != u64::MAX).then_some(until),
                frozen_last_seen_ms: (frozen != u64::MAX).then_some(frozen),
            })
        }
        _ => return Err(bad("override flag")),
    };
    let value = match r.u32()? {
        u32::MAX => None,
        len if len as usize > crate::limits::PRESENCE_VALUE_LEN_MAX => {
            return Err(bad("value length"));
        }
        len => Some(r.take(len as usize)?.into()),
    };
    Ok(Extra {
        devices,
        manual,
        published,
        value,
        wheel_entries: 0,
        wheel_tick: None,
    })
}

fn state_from(byte: u8) -> Result<State, ImportError> {
    Ok(match byte {
        0 => State::Offline,
        1 => State::Online,
        2 => State::Away,
        3 => State::Busy,
        4 => State::Dnd,
        _ => return Err(bad("published state")),
    })
}

impl Shard {
    /// Chunks of the dense array that hold at least one touched page, in order.
    pub fn touched_chunks(&self) -> Vec<u64> {
        // Jump from touched page to touched page: the cost follows the users present, not
        // the capacity (a 2^31-slot shard has 262,144 chunks, almost all untouched).
        let mut chunks = Vec::new();
        let mut from = 0;
        while let Some(index) = self.next_touched(from) {
            let chunk = index / CHUNK_SLOTS;
            chunks.push(chunk as u64);
            from = (chunk + 1) * CHUNK_SLOTS;
        }
        chunks
    }

    /// Slots in chunk `chunk` (the last chunk of a shard may be short; 0 for a chunk past the
    /// end, whatever its index: a snapshot's index is not trusted to fit in a multiplication).
    pub fn chunk_slot_count(&self, chunk: u64) -> usize {
        let Some(start) = usize::try_from(chunk)
            .ok()
            .and_then(|c| c.checked_mul(CHUNK_SLOTS))
        else {
            return 0;
        };
        self.dense_len().saturating_sub(start).min(CHUNK_SLOTS)
    }

    /// Copies chunk `chunk` into `out` (8 bytes per slot).
    pub fn export_chunk(&self, chunk: u64, out: &mut [u8]) {
        let start = chunk as usize * CHUNK_SLOTS;
        let end = start + self.chunk_slot_count(chunk);
        self.copy_dense(start, end, out);
    }

    /// Side-table users in position order, holes left out: a loaded table's positions are
    /// dense (0 to n-1), which is all a restart needs (no `SCAN` walk survives one).
    pub fn export_side(&self, out: &mut Vec<u8>) {
        for (id, slot) in self.side_users() {
            put_id(out, id);
            out.extend_from_slice(&slot.0.to_le_bytes());
        }
    }

    pub fn export_extras(&self, out: &mut Vec<u8>) {
        for (key, extra) in self.extras() {
            match key {
                OwnedKey::Dense(index) => {
                    out.push(0);
                    out.extend_from_slice(&(*index as u64).to_le_bytes());
                }
                OwnedKey::Side(id) => {
                    out.push(1);
                    put_id(out, id);
                }
            }
            put_extra_body(out, extra);
        }
    }

    /// Restores chunk `chunk` from its byte image.
    pub fn import_chunk(&mut self, chunk: u64, bytes: &[u8]) -> Result<(), ImportError> {
        let count = self.chunk_slot_count(chunk);
        if count == 0 {
            return Err(ImportError(format!(
                "chunk {chunk} is outside this shard, which has {} chunks",
                self.dense_len().div_ceil(CHUNK_SLOTS)
            )));
        }
        if bytes.len() != count * 8 {
            return Err(ImportError(format!(
                "chunk {chunk} has {} bytes, this shard expects {}",
                bytes.len(),
                count * 8
            )));
        }
        let start = chunk as usize * CHUNK_SLOTS;
        for (i, raw) in bytes.chunks_exact(8).enumerate() {
            let value = u64::from_le_bytes(raw.try_into().map_err(|_| bad("slot"))?);
            if value != 0 {
                self.restore_slot(ShardKey::Dense(start + i), Slot(value));
            }
        }
        Ok(())
    }

    /// A side-table ID from a snapshot must be one this shard would have stored itself: a
    /// valid ID that is not a dense one (that user lives in a slot) and routes to this shard
    /// (elsewhere, no lookup would ever find it).
    fn check_side_id(&self, id: &[u8], capacity: u64) -> Result<(), ImportError> {
        let shown = String::from_utf8_lossy(&id[..id.len().min(64)]).into_owned();
        match parse_user_id(id, capacity) {
            Ok(UserKey::Side(_)) => {}
            Ok(UserKey::Dense(_)) => {
                return Err(ImportError(format!(
                    "side-table id '{shown}' is a dense user id"
                )));
            }
            Err(_) => return Err(bad("side-table id")),
        }
        let (shard_index, shard_count) = self.placement();
        let owner = side_shard(id, shard_count);
        if owner != shard_index {
            return Err(ImportError(format!(
                "side-table id '{shown}' belongs to shard {owner}, not {shard_index}"
            )));
        }
        Ok(())
    }

    pub fn import_side(&mut self, bytes: &[u8], capacity: u64) -> Result<(), ImportError> {
        let mut r = Reader { bytes, at: 0 };
        while !r.done() {
            let id = read_id(&mut r)?;
            self.check_side_id(id, capacity)?;
            let slot = Slot(r.u64()?);
            self.restore_slot(ShardKey::Side(id), slot);
        }
        Ok(())
    }

    /// Extras entries from a snapshot. Each must belong to a user the snapshot's dense chunks
    /// or side table (imported first, as `save` writes them) already brought in.
    pub fn import_extras(&mut self, bytes: &[u8], capacity: u64) -> Result<(), ImportError> {
        let mut r = Reader { bytes, at: 0 };
        while !r.done() {
            let key = match r.u8()? {
                0 => {
                    let index = r.u64()? as usize;
                    if index >= self.dense_len() {
                        return Err(bad("extras index"));
                    }
                    OwnedKey::Dense(index)
                }
                1 => {
                    let id = read_id(&mut r)?;
                    self.check_side_id(id, capacity)?;
                    OwnedKey::Side(Arc::from(id))
                }
                _ => return Err(bad("extras key")),
            };
            let seen = match &key {
                OwnedKey::Dense(i) => self.slot_of(ShardKey::Dense(*i)),
                OwnedKey::Side(id) => self.slot_of(ShardKey::Side(id)),
            };
            if seen.is_never_seen() {
                return Err(ImportError(format!(
                    "extras entry of a user the snapshot has no slot for ({key:?})"
                )));
            }
            let extra = read_extra_body(&mut r)?;
            let shard_key = match &key {
                OwnedKey::Dense(i) => ShardKey::Dense(*i),
                OwnedKey::Side(id) => ShardKey::Side(id),
            };
            // What subscribers "were told" is rebuilt in `finish_import`.
            let extra = Extra {
                published: State::Offline,
                ..extra
            };
            self.restore_extra(shard_key, extra);
        }
        Ok(())
    }

    /// After every record is imported: users whose deadline passed while the server was down
    /// are offline; the others are online again with fresh wheel entries. No event is
    /// produced — see docs/design/snapshot-format.md, "After a restart".
    pub fn finish_import(&mut self, now_ms: u64) {
        self.restore_users(now_ms);
    }

    /// Drains at most `max` changed users into a replication batch: the plain dense ones (a
    /// numeric ID, no extras entry: nearly every heartbeat) into `plain`, for the caller to
    /// pack (`store::packed`) once the shard's lock is released, every other one as a whole
    /// record appended to `records` (their state now, extras included). Returns how many were
    /// drained.
    pub fn encode_changes(
        &mut self,
        max: usize,
        plain: &mut Vec<PackedUser>,
        records: &mut Vec<u8>,
    ) -> usize {
        let mut changed = Vec::new();
        let drained = self.drain_changes(max, &mut changed);
        let (shard_index, shard_count) = self.placement();
        for user in changed {
            let (key, id) = match &user.user {
                UserRef::Dense(id) => {
                    let index = *id / shard_count as u64;
                    if user.slot.packed_parts().is_some() {
                        plain.push(PackedUser {
                            index,
                            slot: user.slot,
                        });
                        continue;
                    }
                    records.push(0);
                    records.extend_from_slice(&id.to_le_bytes());
                    (ShardKey::Dense(index as usize), None)
                }
                UserRef::Side(id) => {
                    records.push(1);
                    put_id(records, id);
                    (ShardKey::Side(id), Some(id))
                }
            };
            debug_assert!(id.is_none_or(|id| side_shard(id, shard_count) == shard_index));
            // The ARMED bit is this process's own bookkeeping, never shipped.
            records.extend_from_slice(&user.slot.with_armed(false).0.to_le_bytes());
            match self.extra_of(key).filter(|_| user.slot.has_extra()) {
                None => records.push(0),
                Some(extra) => {
                    records.push(1);
                    put_extra_body(records, extra);
                }
            }
        }
        drained
    }

    /// Applies a replication batch (what `encode_changes` wrote on the leader's shard of the
    /// same index) as changes, appending their transitions to `events`; `leader_now_ms` is the
    /// leader's clock when it drained them (a user who went offline with their deadline behind
    /// it expired there, else logged out: the cause the keyspace events name). Checks every
    /// record as a snapshot's are checked: a user that does not belong to this shard, a
    /// malformed length or count is an error naming what was wrong, and nothing after it is
    /// applied.
    pub fn apply_changes(
        &mut self,
        batch: ReplicatedBatch<'_>,
        capacity: u64,
        now_ms: u64,
        events: &mut Vec<Transition>,
    ) -> Result<usize, ImportError> {
        let (shard_index, shard_count) = self.placement();
        let leader_now_ms = batch.leader_now_ms;
        // The dense indices that hold IDs below `capacity` in this shard.
        let index_limit =
            (capacity.saturating_sub(shard_index as u64)).div_ceil(shard_count as u64);
        let index_limit = index_limit.min(self.dense_len() as u64);
        let mut applied = packed::decode(batch.packed, index_limit, |user| {
            if broken_build_drops_record() {
                return;
            }
            let key = ShardKey::Dense(user.index as usize);
            self.replicate_user(key, user.slot, None, leader_now_ms, now_ms, events);
        })?;
        let mut r = Reader {
            bytes: batch.records,
            at: 0,
        };
        while !r.done() {
            let side_id;
            let key = match r.u8()? {
                0 => {
                    let id = r.u64()?;
                    if id >= capacity || id % shard_count as u64 != shard_index as u64 {
                        return Err(ImportError(format!(
                            "user {id} does not belong to shard {shard_index}"
                        )));
                    }
                    ShardKey::Dense((id / shard_count as u64) as usize)
                }
                1 => {
                    side_id = read_id(&mut r)?;
                    self.check_side_id(side_id, capacity)?;
                    ShardKey::Side(side_id)
                }
                _ => return Err(bad("record key")),
            };
            let slot = Slot(r.u64()?);
            let extra = match r.u8()? {
                0 => None,
                1 => Some(read_extra_body(&mut r)?),
                _ => return Err(bad("extras flag")),
            };
            if broken_build_drops_record() {
                continue;
            }
            self.replicate_user(key, slot, extra, leader_now_ms, now_ms, events);
            applied += 1;
        }
        Ok(applied)
    }
}

/// True for every tenth change record in the deliberately broken build the fault harness must
/// catch (feature `broken-follower-drops-records`, docs/RELIABILITY.md); false otherwise.
#[inline]
fn broken_build_drops_record() -> bool {
    #[cfg(feature = "broken-follower-drops-records")]
    {
        static RECORDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        RECORDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10 == 9
    }
    #[cfg(not(feature = "broken-follower-drops-records"))]
    false
}

/// One `STATE` frame's contents for one shard: the leader's clock at the drain, the packed
/// plain users and the whole records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicatedBatch<'a> {
    pub leader_now_ms: u64,
    pub packed: &'a [u8],
    pub records: &'a [u8],
}
