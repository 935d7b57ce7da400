//! Snapshot verification and import (`presenced::snapshot::{verify_bytes, load_bytes}`) on
//! mutated snapshot files, in two variants:
//! - `check`: the bytes as they are. Almost every mutation is caught by a CRC; this exercises
//!   the header, trailer and record-bounds checks that run before and around the CRCs;
//! - `check_fixed_crcs`: the header CRC, each record's CRC, the record count and the body CRC
//!   recomputed after mutating (`fix_crcs`), so mutations get past every checksum and reach
//!   import's range checks: chunk indexes, side-table IDs, extras entries, device counts,
//!   value lengths — what a buggy or hostile writer could produce.
//!
//! Invariants:
//! - verify and load return `Ok` or an error naming a region, never panic, and allocate
//!   within a small multiple of the file's size (a declared length is not trusted);
//! - load refuses exactly what verify refuses, with the same error, and a verified file's
//!   records tile it exactly (header, records, trailer);
//! - after a refused import, flushing leaves the store empty;
//! - an accepted file round-trips: the imported store, saved through the real code path and
//!   loaded into a fresh store, gives the same view, value and TTL of every user of the file,
//!   the same counts, and the same transitions at later expiry passes (so the store did not
//!   accept a state it cannot write back or that behaves differently once reloaded).
//!
//! The store is the one the seeds were written from: `CAPACITY` slots over `SHARDS` shards
//! (one short dense chunk of 4 KiB per shard), loaded `NOW_MS - T0_MS` after the save.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use presenced::snapshot::{self, Header, RecordHeader};
use presenced::store::{
    AppStatus, CHUNK_SLOTS, KeyExpiry, KeyValue, ManualStatus, Room, SetCondition, Store,
    Transition, UserKey,
};

pub const CAPACITY: u64 = 1024;
pub const SHARDS: usize = 2;
/// When the seeds were saved.
pub const T0_MS: u64 = 1_764_000_000_000;
/// When inputs are loaded: some seed users have expired by then, most have not.
pub const NOW_MS: u64 = T0_MS + 5_000;
const KEY_PATTERN: &str = "user:{id}:presence";

/// Fixed sizes of the format (docs/design/snapshot-format.md).
const RECORD_HEADER_LEN: usize = 25;
const TRAILER_LEN: usize = 21;
const HEADER_FIXED_LEN: usize = 46;
const END_MAGIC: &[u8; 8] = b"PRESNAPE";

/// Allocation allowed for loading `len` bytes: the store's per-user structures (side table,
/// wheel entries, devices, values) are a few dozen bytes for every ~10 bytes of file.
fn memory_bound(len: usize) -> usize {
    (16 << 20) + 64 * len
}

/// The target on the bytes as they are.
pub fn check(data: &[u8]) -> String {
    check_bytes(data)
}

/// The target with every checksum made valid after mutating.
pub fn check_fixed_crcs(data: &[u8]) -> String {
    check_bytes(&fix_crcs(data))
}

/// Recomputes what a writer would have: the header's pattern length from its declared length
/// and its CRC; walking records from the header, each record's CRC for as long as records fit;
/// then a fresh trailer with that record count and the body CRC. If the last bytes do not look
/// like a trailer, all of them are body and a trailer is appended.
pub fn fix_crcs(data: &[u8]) -> Vec<u8> {
    let mut bytes = data.to_vec();
    if bytes.len() < 16 {
        return bytes;
    }
    let header_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    if !(HEADER_FIXED_LEN..=bytes.len()).contains(&header_len) || header_len > 64 * 1024 {
        return bytes;
    }
    // Version 2 puts a replication mark after the pattern: a flag byte, then (flag 1) a
    // 40-character ID and an 8-byte offset. Where the pattern ends follows from which it is.
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let mark_len = match version {
        0 | 1 => 0,
        _ if header_len >= HEADER_FIXED_LEN + 49 && bytes[header_len - 4 - 49] == 1 => 49,
        _ if header_len > HEADER_FIXED_LEN => 1,
        _ => 0,
    };
    let pattern_len = (header_len - HEADER_FIXED_LEN - mark_len) as u16;
    bytes[40..42].copy_from_slice(&pattern_len.to_le_bytes());
    let crc = crc32(&bytes[..header_len - 4]);
    bytes[header_len - 4..header_len].copy_from_slice(&crc.to_le_bytes());

    let has_trailer = bytes.len() >= header_len + TRAILER_LEN
        && bytes[bytes.len() - TRAILER_LEN] == b'T'
        && &bytes[bytes.len() - 8..] == END_MAGIC;
    let body_end = if has_trailer {
        bytes.len() - TRAILER_LEN
    } else {
        bytes.len()
    };
    bytes.truncate(body_end);
    let mut at = header_len;
    let mut count = 0u64;
    while body_end - at >= RECORD_HEADER_LEN {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[at + 13..at + 21]);
        let payload_len = u64::from_le_bytes(raw);
        let start = at + RECORD_HEADER_LEN;
        let Some(end) = usize::try_from(payload_len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&end| end <= body_end)
        else {
            break;
        };
        let crc = crc32(&bytes[start..end]);
        bytes[at + 21..at + 25].copy_from_slice(&crc.to_le_bytes());
        count += 1;
        at = end;
    }
    let body_crc = crc32(&bytes);
    bytes.push(b'T');
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes.extend_from_slice(&body_crc.to_le_bytes());
    bytes.extend_from_slice(END_MAGIC);
    bytes
}

/// A snapshot taken apart: the header's bytes, then each record's tag, shard, index and
/// payload (lengths and CRCs are recomputed when it is put back together).
struct Parts {
    header: Vec<u8>,
    records: Vec<(u8, u32, u64, Vec<u8>)>,
}

impl Parts {
    /// Walks a file the way `fix_crcs` does; `None` unless every byte up to the trailer
    /// belongs to the header or a record.
    fn parse(bytes: &[u8]) -> Option<Parts> {
        if bytes.len() < 16 + TRAILER_LEN {
            return None;
        }
        let header_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        let body_end = bytes.len() - TRAILER_LEN;
        if !(HEADER_FIXED_LEN..=body_end).contains(&header_len) {
            return None;
        }
        let field = |at: usize, n: usize| {
            let mut raw = [0u8; 8];
            raw[..n].copy_from_slice(&bytes[at..at + n]);
            u64::from_le_bytes(raw)
        };
        let mut records = Vec::new();
        let mut at = header_len;
        while at < body_end {
            if body_end - at < RECORD_HEADER_LEN {
                return None;
            }
            let start = at + RECORD_HEADER_LEN;
            let end = usize::try_from(field(at + 13, 8))
                .ok()
                .and_then(|l| start.checked_add(l))
                .filter(|&end| end <= body_end)?;
            records.push((
                bytes[at],
                field(at + 1, 4) as u32,
                field(at + 5, 8),
                bytes[start..end].to_vec(),
            ));
            at = end;
        }
        Some(Parts {
            header: bytes[..header_len].to_vec(),
            records,
        })
    }

    /// The file these parts make, with every length and CRC right.
    fn assemble(&self) -> Vec<u8> {
        let mut out = self.header.clone();
        for (tag, shard, index, payload) in &self.records {
            out.push(*tag);
            out.extend_from_slice(&shard.to_le_bytes());
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            out.extend_from_slice(&crc32(payload).to_le_bytes());
            out.extend_from_slice(payload);
        }
        // A placeholder trailer: `fix_crcs` counts the records and checksums the body.
        out.push(b'T');
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(END_MAGIC);
        fix_crcs(&out)
    }
}

/// The snapshot-crc target's mutator: most of the time one part of a well-framed file is
/// mutated — a payload's bytes (the side table, extras and chunk encodings), a record's tag,
/// shard or chunk index, the header, or the list of records — and the file is put back
/// together with right lengths and CRCs, so that mutations reach import instead of breaking
/// the framing. Otherwise (or when the input is not well framed) bytes are mutated anywhere.
pub fn mutate_structured(
    mutator: &crate::mutate::Mutator,
    rng: &mut crate::rng::Rng,
    input: &mut Vec<u8>,
    corpus: &[Vec<u8>],
) {
    let parts = Parts::parse(input);
    let Some(mut parts) = parts.filter(|_| !rng.one_in(8)) else {
        return mutator.mutate(rng, input, corpus);
    };
    let payload_mutator = crate::mutate::Mutator {
        max_len: mutator.max_len,
        dictionary: mutator.dictionary,
    };
    let count = parts.records.len();
    match rng.below(10) {
        0..=5 if count > 0 => {
            // Small payloads (side tables, extras) are the interesting ones: favour them.
            let small: Vec<usize> = (0..count)
                .filter(|&i| parts.records[i].3.len() < 1024)
                .collect();
            let i = if !small.is_empty() && !rng.one_in(4) {
                *rng.pick(&small)
            } else {
                rng.below(count)
            };
            payload_mutator.mutate(rng, &mut parts.records[i].3, &[]);
        }
        6 if count > 0 => {
            let i = rng.below(count);
            let record = &mut parts.records[i];
            match rng.below(3) {
                0 => record.0 = *rng.pick(b"DSXT\0"),
                1 => {
                    let any = rng.next_u64() as u32;
                    record.1 = *rng.pick(&[0, 1, 2, u32::MAX, any]);
                }
                _ => {
                    let any = rng.next_u64();
                    // 2^64 / 8192 + 1 overflows `index * CHUNK_SLOTS`.
                    record.2 = *rng.pick(&[0, 1, 2, u64::MAX, 1 << 61, (u64::MAX / 8192) + 1, any]);
                }
            }
        }
        7 if count > 0 => {
            let i = rng.below(count);
            match rng.below(3) {
                0 => {
                    parts.records.remove(i);
                }
                1 => {
                    let copy = parts.records[i].clone();
                    parts.records.insert(rng.below(count + 1), copy);
                }
                _ => parts.records.swap(i, rng.below(count)),
            }
        }
        8 if !corpus.is_empty() => {
            // A record from another file.
            if let Some(other) = Parts::parse(rng.pick(corpus).as_slice())
                && !other.records.is_empty()
            {
                let record = rng.pick(&other.records).clone();
                parts.records.insert(rng.below(count + 1), record);
            }
        }
        _ => {
            let mut header = parts.header.clone();
            payload_mutator.mutate(rng, &mut header, &[]);
            if header.len() >= 16 {
                let len = header.len() as u32;
                header[12..16].copy_from_slice(&len.to_le_bytes());
            }
            parts.header = header;
        }
    }
    *input = parts.assemble();
    input.truncate(mutator.max_len);
}

/// CRC-32 (IEEE) by table: the fuzz crate takes no dependency for the few kilobytes it
/// checksums per input. crc32fast, which presenced uses, computes the same function.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

thread_local! {
    // Leaked once per thread: the store behind every refused file, which must stay empty.
    static UNTOUCHED: &'static Store =
        Box::leak(Box::new(Store::new(CAPACITY, SHARDS, NOW_MS).expect("a store")));
}

fn file_name() -> &'static Path {
    Path::new("fuzz-input.snap")
}

fn check_bytes(bytes: &[u8]) -> String {
    let verified = snapshot::verify_bytes(file_name(), bytes);
    if let Ok((header, records, len)) = &verified {
        check_layout(bytes, header, records, *len);
    }
    // A file verify refuses never reaches a store: those (most raw inputs) share one, and it
    // must stay empty. Only verified files pay for a fresh store.
    let fresh;
    let store = if verified.is_ok() {
        fresh = Store::new(CAPACITY, SHARDS, NOW_MS).expect("a store");
        &fresh
    } else {
        UNTOUCHED.with(|s| *s)
    };
    let (loaded, peak) =
        crate::alloc::peak_during(|| snapshot::load_bytes(store, file_name(), bytes, NOW_MS));
    assert!(
        peak <= memory_bound(bytes.len()),
        "{peak} bytes allocated to load {} bytes",
        bytes.len()
    );
    match (&verified, loaded) {
        (Err(refused), Err(load_error)) => {
            assert_eq!(refused.to_string(), load_error.to_string());
            assert_eq!(
                (
                    store.online_count(),
                    store.side_count(),
                    store.extras_count()
                ),
                (0, 0, 0),
                "a file verify refuses changed the store"
            );
            format!("verify: {}", normalise(&refused.to_string()))
        }
        (Err(refused), Ok(_)) => panic!("load accepted a file verify refuses: {refused}"),
        (Ok(_), Err(refused)) => {
            store.flush(NOW_MS).expect("flush");
            assert_eq!(
                (
                    store.online_count(),
                    store.side_count(),
                    store.extras_count()
                ),
                (0, 0, 0),
                "a refused import left users behind after a flush"
            );
            format!("import: {}", normalise(&refused.to_string()))
        }
        (Ok((header, records, _)), Ok((created_ms, len))) => {
            assert_eq!((created_ms, len), (header.created_ms, bytes.len() as u64));
            round_trip(store, bytes, records);
            "ok".to_string()
        }
    }
}

/// A verified file is exactly its header, its records back to back, and the trailer.
fn check_layout(bytes: &[u8], header: &Header, records: &[(RecordHeader, usize)], len: u64) {
    assert_eq!(len, bytes.len() as u64);
    // The length the file's own header has (a version-1 header is one byte shorter than
    // what this build would write for the same fields).
    let mut at = Header::decode(bytes).map_or(header.encoded_len(), |(_, len)| len);
    for (record, start) in records {
        assert_eq!(*start, at + RECORD_HEADER_LEN, "records are contiguous");
        assert!(matches!(record.tag, b'D' | b'S' | b'X'));
        assert!(record.shard < header.shard_count);
        at = start + record.payload_len as usize;
    }
    assert_eq!(
        at + TRAILER_LEN,
        bytes.len(),
        "the trailer follows the last record"
    );
}

/// Error text with the variable parts (numbers, quoted IDs, the file name) taken out, so that
/// errors of one kind count as one outcome.
fn normalise(error: &str) -> String {
    let mut text = error
        .strip_prefix("fuzz-input.snap: ")
        .unwrap_or(error)
        .to_string();
    // A quoted ID may hold quotes itself: everything between the first and the last goes.
    if let (Some(first), Some(last)) = (text.find('\''), text.rfind('\''))
        && last > first
    {
        text.replace_range(first + 1..last, "…");
    }
    if let Some(at) = text.find("(Side(") {
        text.replace_range(at.., "(Side(…))");
    }
    let mut out = String::new();
    let mut in_number = false;
    for c in text.chars() {
        // A number, decimal or `0x..` hex, is one `#`.
        if in_number && (c.is_ascii_hexdigit() || c == 'x') {
            continue;
        }
        in_number = c.is_ascii_digit();
        out.push(if in_number { '#' } else { c });
    }
    out.truncate(out.floor_char_boundary(100));
    out
}

/// Every user a verified file names: dense users with a non-zero slot in a chunk, side-table
/// users. (Extras entries belong to users of those two; import refuses any other.)
fn users_of<'a>(bytes: &'a [u8], records: &[(RecordHeader, usize)]) -> Vec<UserKey<'a>> {
    let mut users = Vec::new();
    for (record, start) in records {
        let payload = &bytes[*start..*start + record.payload_len as usize];
        match record.tag {
            b'D' => {
                for (i, raw) in payload.chunks_exact(8).enumerate() {
                    if raw.iter().all(|&b| b == 0) {
                        continue;
                    }
                    let id = usize::try_from(record.index)
                        .ok()
                        .and_then(|c| c.checked_mul(CHUNK_SLOTS))
                        .and_then(|first| first.checked_add(i))
                        .and_then(|index| (index as u64).checked_mul(SHARDS as u64))
                        .and_then(|id| id.checked_add(u64::from(record.shard)));
                    if let Some(id) = id.filter(|&id| id < CAPACITY) {
                        users.push(UserKey::Dense(id));
                    }
                }
            }
            b'S' => {
                let mut at = 0;
                while at + 2 <= payload.len() {
                    let len = u16::from_le_bytes([payload[at], payload[at + 1]]) as usize;
                    let Some(id) = payload.get(at + 2..at + 2 + len) else {
                        break;
                    };
                    users.push(UserKey::Side(id));
                    at += 2 + len + 8;
                }
            }
            _ => {}
        }
    }
    users
}

/// A fresh directory for one save: /dev/shm when there is one (a save fsyncs), else the
/// system's temporary directory.
fn scratch_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!(
        "presenced-fuzz-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Saves `store` through `snapshot::save` and returns the file's bytes.
pub fn save_to_bytes(store: &Store, started_ms: u64) -> Vec<u8> {
    let dir = scratch_dir();
    let saved = snapshot::save(store, KEY_PATTERN, &dir, started_ms)
        .map(|report| fs::read(report.file).expect("read the saved snapshot"));
    let _ = fs::remove_dir_all(&dir);
    saved.unwrap_or_else(|e| panic!("an imported store cannot be saved: {e}"))
}

type Recorded = Arc<Mutex<Vec<Transition>>>;

fn record_transitions(store: &Store) -> Recorded {
    let recorded: Recorded = Arc::default();
    let sink = Arc::clone(&recorded);
    store.set_event_sink(Box::new(move |events| {
        sink.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(events)
    }));
    recorded
}

fn take_sorted(recorded: &Recorded) -> Vec<String> {
    let mut events: Vec<String> =
        std::mem::take(&mut *recorded.lock().unwrap_or_else(|p| p.into_inner()))
            .iter()
            .map(|t| format!("{t:?}"))
            .collect();
    events.sort();
    events
}

fn round_trip(store: &Store, bytes: &[u8], records: &[(RecordHeader, usize)]) {
    let users = users_of(bytes, records);
    let saved = save_to_bytes(store, NOW_MS);
    let again = Store::new(CAPACITY, SHARDS, NOW_MS).expect("a store");
    if let Err(e) = snapshot::load_bytes(&again, file_name(), &saved, NOW_MS) {
        panic!("the snapshot of an imported store does not load: {e}");
    }
    let counts = |s: &Store| (s.online_count(), s.side_count(), s.extras_count());
    assert_eq!(counts(store), counts(&again), "counts after the round trip");
    let first = record_transitions(store);
    let second = record_transitions(&again);
    // Up to past the wheel's 27-minute horizon, where far deadlines are parked and re-armed.
    // (Not days: the wheel advances tick by tick, 10 ticks per simulated second.)
    for later_ms in [0, 1_000, 120_000, 1_700_000] {
        let now_ms = NOW_MS + later_ms;
        if later_ms > 0 {
            store.expire_due(now_ms);
            again.expire_due(now_ms);
            assert_eq!(
                take_sorted(&first),
                take_sorted(&second),
                "transitions at +{later_ms} ms"
            );
            assert_eq!(counts(store), counts(&again), "counts at +{later_ms} ms");
        }
        for &user in &users {
            assert_eq!(
                store.view(user, now_ms),
                again.view(user, now_ms),
                "{user:?} at +{later_ms} ms"
            );
            assert_eq!(
                store.key_value(user, now_ms),
                again.key_value(user, now_ms),
                "value of {user:?} at +{later_ms} ms"
            );
            assert_eq!(
                store.key_ttl(user, now_ms),
                again.key_ttl(user, now_ms),
                "TTL of {user:?} at +{later_ms} ms"
            );
        }
    }
}

/// The seed snapshots, written through the real save path from stores built with the real
/// operations: dense users (online, expiring before `NOW_MS`, logged out, disconnected with
/// grace), side-table users (UUIDs, e-mail-like handles, a leading-zero number, a number past
/// the capacity), devices, app statuses, manual overrides (timed, invisible) and drop-in
/// values (custom, status words, with and without expiry). Also a store with only side-table
/// users, and an empty one.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mixed = Store::new(CAPACITY, SHARDS, T0_MS).expect("store");
    let t = T0_MS;
    for id in (0..200u64).step_by(3) {
        let _ = mixed.heartbeat(UserKey::Dense(id), 300, None, None, Room::Available, t);
    }
    let _ = mixed.heartbeat(UserKey::Dense(1000), 1, None, None, Room::Available, t);
    let _ = mixed.heartbeat(
        UserKey::Dense(1023),
        60,
        Some(AppStatus::Away),
        None,
        Room::Available,
        t,
    );
    let _ = mixed.heartbeat(
        UserKey::Dense(5),
        300,
        Some(AppStatus::Busy),
        Some(b"phone"),
        Room::Available,
        t,
    );
    let _ = mixed.heartbeat(
        UserKey::Dense(5),
        30,
        None,
        Some(b"web"),
        Room::Available,
        t,
    );
    let _ = mixed.set_status(
        UserKey::Dense(9),
        Some(ManualStatus::Dnd),
        Some(3600),
        Room::Available,
        t,
    );
    let _ = mixed.set_status(
        UserKey::Dense(10),
        Some(ManualStatus::Invisible),
        None,
        Room::Available,
        t,
    );
    let custom = |store: &Store, key, value: &[u8], expiry| {
        let _ = store.set_key(
            key,
            KeyValue::Custom(value),
            expiry,
            SetCondition::Always,
            Room::Available,
            t,
        );
    };
    custom(
        &mixed,
        UserKey::Dense(12),
        b"{\"json\":1}",
        KeyExpiry::Never,
    );
    custom(&mixed, UserKey::Dense(13), b"v", KeyExpiry::At(t + 2_000));
    let _ = mixed.set_key(
        UserKey::Dense(14),
        KeyValue::Status(AppStatus::Dnd),
        KeyExpiry::At(t + 60_000),
        SetCondition::Always,
        Room::Available,
        t,
    );
    mixed.offline(UserKey::Dense(3), None, t);
    mixed.disconnect(UserKey::Dense(6), None, 5_000, t);
    for id in [
        &b"7f1c2a9e-4b1d-4c55-9e0a-3d2f1b6c8a70"[..],
        b"042",
        b"99999",
    ] {
        let _ = mixed.heartbeat(UserKey::Side(id), 300, None, None, Room::Available, t);
    }
    let _ = mixed.heartbeat(
        UserKey::Side(b"alice@example.com"),
        120,
        Some(AppStatus::Away),
        Some(b"laptop"),
        Room::Available,
        t,
    );
    custom(
        &mixed,
        UserKey::Side(b"bob"),
        b"hello",
        KeyExpiry::At(t + 60_000),
    );
    let _ = mixed.set_status(
        UserKey::Side(b"carol"),
        Some(ManualStatus::Busy),
        Some(60),
        Room::Available,
        t,
    );

    let side_only = Store::new(CAPACITY, SHARDS, T0_MS).expect("store");
    let _ = side_only.heartbeat(
        UserKey::Side(b"u-1"),
        300,
        None,
        Some(b"d1"),
        Room::Available,
        t,
    );
    let _ = side_only.heartbeat(
        UserKey::Side(b"u-1"),
        300,
        None,
        Some(b"d2"),
        Room::Available,
        t,
    );
    let _ = side_only.heartbeat(UserKey::Side(b"u-2"), 2, None, None, Room::Available, t);
    custom(&side_only, UserKey::Side(b"u-3"), b"x", KeyExpiry::Never);
    let _ = side_only.set_status(
        UserKey::Side(b"u-4"),
        Some(ManualStatus::Invisible),
        None,
        Room::Available,
        t,
    );

    let empty = Store::new(CAPACITY, SHARDS, T0_MS).expect("store");
    vec![
        ("mixed.snap", save_to_bytes(&mixed, t)),
        ("side-only.snap", save_to_bytes(&side_only, t)),
        ("empty.snap", save_to_bytes(&empty, t)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds load, and the CRC fixer leaves a good file as it was.
    #[test]
    fn seeds_load_and_fixing_a_good_file_changes_nothing() {
        for (name, bytes) in seeds() {
            assert_eq!(check(&bytes), "ok", "{name}");
            assert_eq!(fix_crcs(&bytes), bytes, "{name}");
        }
    }

    /// A byte changed inside a record's payload fails the CRC; with CRCs fixed it reaches
    /// import (here a side-table ID that is now another string).
    #[test]
    fn fixed_crcs_get_past_every_checksum() {
        let (_, bytes) = seeds().remove(1);
        let needle = b"u-2";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("u-2 is in the file");
        let mut damaged = bytes.clone();
        damaged[at + 2] = b'9';
        assert!(
            check(&damaged).starts_with("verify: "),
            "{}",
            check(&damaged)
        );
        let label = check_fixed_crcs(&damaged);
        assert!(!label.starts_with("verify: "), "{label}");
    }

    #[test]
    fn crc32_is_crc32fast() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
