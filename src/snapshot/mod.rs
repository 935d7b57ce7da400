//! Snapshots: the store written to an mmap'd file with a CRC32 per chunk, and read back on
//! start. `docs/design/snapshot-format.md` describes the format and the crash-safety rules.
//!
//! Writing never stops the server: each shard's lock is held only to list its touched chunks
//! and copy its side tables, then once per 64 KiB chunk copied. A new file is written under a
//! temporary name, flushed, fsynced, renamed into place and the directory fsynced; older
//! snapshots are removed only after that, and the newest `SNAPSHOTS_KEPT` are always kept, so a
//! crash at any moment leaves the previous good snapshot in place.

mod format;
mod persistence;

pub use format::{Header, RecordHeader, ReplicationMark};
pub use persistence::{Persistence, PersistenceStatus, SaveError, run_blocking};

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

use memmap2::{Mmap, MmapMut};

use crate::store::{CHUNK_SLOTS, Store};
use format::{RECORD_HEADER_LEN, TAG_DENSE, TAG_EXTRAS, TAG_SIDE, TRAILER_LEN};

/// Snapshots kept on disk: the newest and the one before it, so a damaged newest file still
/// leaves a good one to fall back to.
pub const SNAPSHOTS_KEPT: usize = 2;

const FILE_PREFIX: &str = "presenced-";
const FILE_SUFFIX: &str = ".snap";

/// A file that could not be used, and which part of it is wrong.
#[derive(Debug)]
pub struct SnapshotError {
    pub file: PathBuf,
    pub region: String,
    pub problem: String,
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.region,
            self.problem
        )
    }
}

fn error(file: &Path, region: &str, problem: impl Into<String>) -> SnapshotError {
    SnapshotError {
        file: file.to_path_buf(),
        region: region.to_string(),
        problem: problem.into(),
    }
}

/// What a completed save did.
#[derive(Clone, Debug)]
pub struct SaveReport {
    pub file: PathBuf,
    /// When the save started: every write acknowledged before this is in the file.
    pub started_ms: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    pub records: u64,
}

/// What a load did.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub file: PathBuf,
    pub created_ms: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    /// Files newer than the one loaded that were found damaged, with why.
    pub rejected: Vec<String>,
    /// The replication stream the file's state is at, if the saving process had one.
    pub replication: Option<format::ReplicationMark>,
}

/// Snapshot files in `dir`, newest first.
pub fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(FILE_PREFIX) && n.ends_with(FILE_SUFFIX))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    // Names carry a zero-padded creation time: name order is age order.
    files.sort();
    files.reverse();
    Ok(files)
}

/// One shard's part of a snapshot, listed under its lock: the chunks to copy (index and slot
/// count) and its side and extras tables, already encoded.
struct ShardPlan {
    chunks: Vec<(u64, usize)>,
    side: Vec<u8>,
    extras: Vec<u8>,
}

/// Writes a snapshot of `store` into `dir`: plan, size the file, write it through a map under
/// a temporary name, then make it durable and visible.
pub fn save(
    store: &Store,
    key_pattern: &str,
    dir: &Path,
    started_ms: u64,
) -> Result<SaveReport, SnapshotError> {
    save_marked(store, key_pattern, dir, started_ms, None)
}

/// `save`, with where this process stands in a replication stream (taken before the copy
/// starts: the state saved is at that offset or later, and records are whole states, so a
/// follower continuing from it converges).
pub fn save_marked(
    store: &Store,
    key_pattern: &str,
    dir: &Path,
    started_ms: u64,
    replication: Option<format::ReplicationMark>,
) -> Result<SaveReport, SnapshotError> {
    let clock = Instant::now();
    fs::create_dir_all(dir).map_err(|e| error(dir, "directory", e.to_string()))?;
    let plans = plan(store);
    let header = Header {
        created_ms: started_ms,
        capacity: store.capacity(),
        shard_count: plans.len() as u32,
        chunk_slots: CHUNK_SLOTS as u32,
        key_pattern: key_pattern.to_string(),
        replication,
    };
    let mut total = header.encoded_len() + TRAILER_LEN;
    let mut records = 0u64;
    for plan in &plans {
        for (_, slots) in &plan.chunks {
            total += RECORD_HEADER_LEN + slots * 8;
        }
        total += 2 * RECORD_HEADER_LEN + plan.side.len() + plan.extras.len();
        records += plan.chunks.len() as u64 + 2;
    }

    // A save a crash interrupted left its temporary behind: at most one save runs at a time,
    // so any temporary found now is such a leftover, and would otherwise stay forever.
    remove_temporaries(dir);
    let final_path = next_file_name(dir, started_ms);
    let tmp_path = dir.join(format!(
        ".{}.tmp",
        final_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("snapshot")
    ));
    let io = |region: &str| {
        let tmp = tmp_path.clone();
        let region = region.to_string();
        move |e: std::io::Error| error(&tmp, &region, e.to_string())
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp_path)
        .map_err(io("create"))?;
    file.set_len(total as u64).map_err(io("size"))?;
    // SAFETY: the file was just created by this process under a temporary name no one else
    // uses, and is not truncated while mapped.
    let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(io("map"))?;
    let written = write_body(&mut map, &header, &plans, store, records);
    debug_assert_eq!(written, total);
    map.flush().map_err(io("flush"))?;
    drop(map);
    file.sync_all().map_err(io("fsync"))?;
    drop(file);
    fs::rename(&tmp_path, &final_path).map_err(io("rename"))?;
    publish(dir)?;
    Ok(SaveReport {
        file: final_path,
        started_ms,
        bytes: total as u64,
        duration_ms: clock.elapsed().as_millis() as u64,
        records,
    })
}

/// Lists each shard's chunks and copies its side tables, holding each shard's lock once.
fn plan(store: &Store) -> Vec<ShardPlan> {
    (0..store.shard_count())
        .map(|shard_index| {
            let shard = store.lock(shard_index);
            let chunks = shard
                .touched_chunks()
                .into_iter()
                .map(|c| (c, shard.chunk_slot_count(c)))
                .collect();
            let mut side = Vec::new();
            shard.export_side(&mut side);
            let mut extras = Vec::new();
            shard.export_extras(&mut extras);
            ShardPlan {
                chunks,
                side,
                extras,
            }
        })
        .collect()
}

/// Writes the header, every record (each chunk copied under its shard's lock) and the
/// trailer into `map`; returns the bytes written.
fn write_body(
    map: &mut MmapMut,
    header: &Header,
    plans: &[ShardPlan],
    store: &Store,
    records: u64,
) -> usize {
    let mut body_crc = crc32fast::Hasher::new();
    let header_len = header.encoded_len();
    header.encode(&mut map[..header_len]);
    body_crc.update(&map[..header_len]);
    let mut at = header_len;
    let mut put_record =
        |tag: u8, shard: u32, index: u64, len: usize, fill: &mut dyn FnMut(&mut [u8])| {
            let payload_start = at + RECORD_HEADER_LEN;
            let payload = &mut map[payload_start..payload_start + len];
            fill(payload);
            let payload_crc = crc32fast::hash(payload);
            let record = RecordHeader {
                tag,
                shard,
                index,
                payload_len: len as u64,
                payload_crc,
            };
            map[at..payload_start].copy_from_slice(&record.encode());
            body_crc.update(&map[at..payload_start + len]);
            at = payload_start + len;
        };
    for (shard_index, plan) in plans.iter().enumerate() {
        let shard = shard_index as u32;
        for &(chunk, slots) in &plan.chunks {
            put_record(TAG_DENSE, shard, chunk, slots * 8, &mut |out| {
                store.lock(shard_index).export_chunk(chunk, out);
            });
        }
        put_record(TAG_SIDE, shard, 0, plan.side.len(), &mut |out| {
            out.copy_from_slice(&plan.side)
        });
        put_record(TAG_EXTRAS, shard, 0, plan.extras.len(), &mut |out| {
            out.copy_from_slice(&plan.extras)
        });
    }
    let trailer = format::encode_trailer(records, body_crc.finalize());
    map[at..at + TRAILER_LEN].copy_from_slice(&trailer);
    at + TRAILER_LEN
}

/// After the rename: makes the new name durable, then removes snapshots beyond the newest
/// `SNAPSHOTS_KEPT` (only now that the new file is durable may old ones go).
fn publish(dir: &Path) -> Result<(), SnapshotError> {
    if let Ok(dir_handle) = File::open(dir) {
        dir_handle
            .sync_all()
            .map_err(|e| error(dir, "directory fsync", e.to_string()))?;
    }
    if let Ok(files) = list(dir) {
        for old in files.into_iter().skip(SNAPSHOTS_KEPT) {
            let _ = fs::remove_file(old);
        }
    }
    Ok(())
}

/// Removes `.presenced-*.snap.tmp` files: the temporaries of saves that never finished.
fn remove_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&format!(".{FILE_PREFIX}"))
            && name.ends_with(&format!("{FILE_SUFFIX}.tmp"))
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn next_file_name(dir: &Path, started_ms: u64) -> PathBuf {
    let mut ms = started_ms;
    loop {
        let path = dir.join(format!("{FILE_PREFIX}{ms:020}{FILE_SUFFIX}"));
        if !path.exists() {
            return path;
        }
        ms += 1;
    }
}

/// A verified file: its header, each record with its payload's offset, and its length.
pub type Verified = (Header, Vec<(RecordHeader, usize)>, u64);

/// Checks a whole file — header, trailer, body CRC, every record's bounds and CRC — without
/// changing anything. Returns the header and the records' positions.
pub fn verify(path: &Path) -> Result<Verified, SnapshotError> {
    let map = map_file(path)?;
    verify_bytes(path, &map)
}

/// Maps a snapshot file for reading.
fn map_file(path: &Path) -> Result<Mmap, SnapshotError> {
    let file = File::open(path).map_err(|e| error(path, "open", e.to_string()))?;
    let len = file
        .metadata()
        .map_err(|e| error(path, "open", e.to_string()))?
        .len();
    // An empty file cannot be mapped; say what it is rather than what mmap thinks of it.
    if len == 0 {
        return Err(error(path, "file", "empty file"));
    }
    // SAFETY: snapshot files are written once under a temporary name and renamed into place;
    // nothing writes to or truncates a file with a final name while it is mapped here.
    unsafe { Mmap::map(&file) }.map_err(|e| error(path, "map", e.to_string()))
}

/// `verify` on a snapshot's bytes (`path` only names it in errors). Public so that the fuzz
/// targets (`fuzz/`) reach the same checks without a file per input.
pub fn verify_bytes(path: &Path, map: &[u8]) -> Result<Verified, SnapshotError> {
    let len = map.len();
    if len == 0 {
        return Err(error(path, "file", "empty file"));
    }
    let (header, header_len) = format::Header::decode(map).map_err(|p| error(path, "header", p))?;
    if len < header_len + TRAILER_LEN {
        return Err(error(path, "trailer", "file truncated before the trailer"));
    }
    let mut trailer = [0u8; TRAILER_LEN];
    trailer.copy_from_slice(&map[len - TRAILER_LEN..]);
    let (record_count, body_crc) =
        format::decode_trailer(&trailer).map_err(|p| error(path, "trailer", p))?;
    let mut records = Vec::new();
    let mut at = header_len;
    let body_end = len - TRAILER_LEN;
    while at < body_end {
        if body_end - at < RECORD_HEADER_LEN {
            return Err(error(path, &format!("record at byte {at}"), "cut short"));
        }
        let mut raw = [0u8; RECORD_HEADER_LEN];
        raw.copy_from_slice(&map[at..at + RECORD_HEADER_LEN]);
        let record = RecordHeader::decode(&raw);
        let payload_start = at + RECORD_HEADER_LEN;
        let payload_end = usize::try_from(record.payload_len)
            .ok()
            .and_then(|l| payload_start.checked_add(l))
            .filter(|&end| end <= body_end)
            .ok_or_else(|| {
                error(
                    path,
                    &record.region(),
                    format!("length {} runs past the end", record.payload_len),
                )
            })?;
        if !matches!(record.tag, TAG_DENSE | TAG_SIDE | TAG_EXTRAS)
            || record.shard >= header.shard_count
        {
            return Err(error(
                path,
                &format!("record at byte {at}"),
                "damaged record header",
            ));
        }
        if crc32fast::hash(&map[payload_start..payload_end]) != record.payload_crc {
            return Err(error(path, &record.region(), "CRC mismatch"));
        }
        records.push((record, payload_start));
        at = payload_end;
    }
    if records.len() as u64 != record_count {
        return Err(error(
            path,
            "trailer",
            format!(
                "{} records found, trailer says {record_count}",
                records.len()
            ),
        ));
    }
    if crc32fast::hash(&map[..body_end]) != body_crc {
        return Err(error(path, "trailer", "body CRC mismatch"));
    }
    check_order(path, &header, &records)?;
    Ok((header, records, len as u64))
}

/// Records must come in the order `save` writes them: shard by shard, each shard's dense
/// chunks by ascending index, then its side table, then its extras. Import relies on it: a
/// user's slot is written once, before the extras entry that sets its `EXTRA` flag. (A second
/// side table after the extras could clear the flag and leave an entry no read consults but
/// the next save writes back; found by the snapshot-crc fuzz target.) Checked after every
/// CRC, so damage is still reported as damage.
fn check_order(
    path: &Path,
    header: &Header,
    records: &[(RecordHeader, usize)],
) -> Result<(), SnapshotError> {
    let mut shard = 0u32;
    let mut side_seen = false;
    let mut last_chunk: Option<u64> = None;
    for (record, _) in records {
        let in_order = record.shard == shard
            && match record.tag {
                TAG_DENSE => !side_seen && last_chunk.is_none_or(|last| record.index > last),
                TAG_SIDE => !side_seen,
                _ => side_seen,
            };
        if !in_order {
            return Err(error(
                path,
                &record.region(),
                "out of order (expected each shard's dense chunks by index, then its side \
                 table, then its extras, shard by shard)",
            ));
        }
        match record.tag {
            TAG_DENSE => last_chunk = Some(record.index),
            TAG_SIDE => side_seen = true,
            _ => {
                shard += 1;
                side_seen = false;
                last_chunk = None;
            }
        }
    }
    if shard != header.shard_count {
        return Err(error(
            path,
            "trailer",
            format!(
                "records of {shard} shards, the header says {}",
                header.shard_count
            ),
        ));
    }
    Ok(())
}

/// Loads the newest good snapshot of `dir` into `store` (which must be empty). Damaged files
/// are named in the report and skipped; `Ok(None)` means no good snapshot exists.
pub fn load_newest(
    store: &Store,
    dir: &Path,
    now_ms: u64,
) -> std::io::Result<(Option<LoadReport>, Vec<String>)> {
    let mut rejected = Vec::new();
    for path in list(dir)? {
        let clock = Instant::now();
        match load_file(store, &path, now_ms) {
            Ok((created_ms, bytes, replication)) => {
                return Ok((
                    Some(LoadReport {
                        file: path,
                        created_ms,
                        bytes,
                        duration_ms: clock.elapsed().as_millis() as u64,
                        rejected: rejected.clone(),
                        replication,
                    }),
                    rejected,
                ));
            }
            Err(err) => {
                rejected.push(err.to_string());
                // Nothing of a rejected file may stay behind.
                store.flush(now_ms)?;
            }
        }
    }
    Ok((None, rejected))
}

fn load_file(
    store: &Store,
    path: &Path,
    now_ms: u64,
) -> Result<(u64, u64, Option<format::ReplicationMark>), SnapshotError> {
    // The file is verified and imported from one map: it is not modified while mapped.
    let map = map_file(path)?;
    let (created_ms, bytes) = load_bytes(store, path, &map, now_ms)?;
    // Verified by the load: the header decodes.
    let replication = format::Header::decode(&map)
        .ok()
        .and_then(|(header, _)| header.replication);
    Ok((created_ms, bytes, replication))
}

/// Verifies a snapshot's bytes, then imports them into `store`, which must be empty (`path`
/// only names the file in errors). Returns the file's `created_ms` and length. After an error
/// the store may hold part of the file: the caller flushes it, as `load_newest` does. Public
/// for the fuzz targets (`fuzz/`), like `verify_bytes`.
pub fn load_bytes(
    store: &Store,
    path: &Path,
    map: &[u8],
    now_ms: u64,
) -> Result<(u64, u64), SnapshotError> {
    let (header, records, len) = verify_bytes(path, map)?;
    if header.shard_count as usize != store.shard_count() {
        return Err(error(
            path,
            "header",
            format!(
                "written with {} shards, this server runs {}: start it with --shards {}",
                header.shard_count,
                store.shard_count(),
                header.shard_count
            ),
        ));
    }
    if header.capacity != store.capacity() || header.chunk_slots as usize != CHUNK_SLOTS {
        return Err(error(
            path,
            "header",
            format!(
                "written with --capacity {}, this server runs {}",
                header.capacity,
                store.capacity()
            ),
        ));
    }
    for (record, payload_start) in &records {
        let payload = &map[*payload_start..*payload_start + record.payload_len as usize];
        let mut shard = store.lock(record.shard as usize);
        let imported = match record.tag {
            TAG_DENSE => shard.import_chunk(record.index, payload),
            TAG_SIDE => shard.import_side(payload, store.capacity()),
            _ => shard.import_extras(payload, store.capacity()),
        };
        imported.map_err(|e| error(path, &record.region(), e.0))?;
    }
    for shard_index in 0..store.shard_count() {
        store.lock(shard_index).finish_import(now_ms);
    }
    Ok((header.created_ms, len))
}

/// `presenced --check-snapshot FILE`: prints the header and every region with its byte range,
/// one per line, and whether the file is good. Exit status 0 if good, 1 if not.
pub fn check_report(path: &Path) -> std::process::ExitCode {
    match verify(path) {
        Ok((header, records, len)) => {
            // The header ends where its first record starts (a version-1 header is shorter
            // than what this build writes for the same fields).
            let header_end = records
                .first()
                .map_or(len as usize - TRAILER_LEN, |(_, start)| {
                    start - RECORD_HEADER_LEN
                });
            let mark = header.replication.as_ref().map_or(String::new(), |m| {
                format!(" replid={} repl_offset={}", m.replid, m.offset)
            });
            println!(
                "header bytes=0..{header_end} created_ms={} capacity={} shards={} chunk_slots={} key_pattern={}{mark}",
                header.created_ms,
                header.capacity,
                header.shard_count,
                header.chunk_slots,
                header.key_pattern
            );
            for (record, payload_start) in &records {
                let kind = match record.tag {
                    TAG_DENSE => "dense",
                    TAG_SIDE => "side",
                    _ => "extras",
                };
                println!(
                    "{kind} shard={} index={} bytes={}..{} payload={}..{}",
                    record.shard,
                    record.index,
                    payload_start - RECORD_HEADER_LEN,
                    payload_start + record.payload_len as usize,
                    payload_start,
                    payload_start + record.payload_len as usize
                );
            }
            println!("trailer bytes={}..{len}", len - TRAILER_LEN as u64);
            println!("ok {} records", records.len());
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            println!("bad {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        AppStatus, KeyExpiry, KeyValue, ManualStatus, Room, SetCondition, Slot, State, UserKey,
    };

    const T0_MS: u64 = 1_764_000_000_000;

    /// Save then load restores every user exactly; damage anywhere is detected and named.
    #[test]
    fn round_trip_and_damage() {
        let dir = std::env::temp_dir().join(format!("presenced-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = Store::new(1 << 20, 2, T0_MS).expect("store");
        for id in (0..50_000u64).step_by(7) {
            store
                .heartbeat(UserKey::Dense(id), 300, None, None, Room::Available, T0_MS)
                .expect("heartbeat");
        }
        store
            .heartbeat(
                UserKey::Side(b"uuid-1"),
                300,
                Some(AppStatus::Busy),
                Some(b"phone"),
                Room::Available,
                T0_MS,
            )
            .expect("hb");
        store
            .set_status(
                UserKey::Dense(14),
                Some(ManualStatus::Dnd),
                None,
                Room::Available,
                T0_MS,
            )
            .expect("room");
        store
            .set_key(
                UserKey::Side(b"json"),
                KeyValue::Custom(b"{}"),
                KeyExpiry::Never,
                SetCondition::Always,
                Room::Available,
                T0_MS,
            )
            .expect("room");
        store
            .heartbeat(
                UserKey::Dense(900_000),
                1,
                None,
                None,
                Room::Available,
                T0_MS,
            )
            .expect("hb");
        let report = save(&store, "user:{id}:presence", &dir, T0_MS).expect("save");

        let now_ms = T0_MS + 5_000;
        let loaded = Store::new(1 << 20, 2, now_ms).expect("store");
        let (load, rejected) = load_newest(&loaded, &dir, now_ms).expect("load");
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(load.expect("a snapshot").file, report.file);
        for id in (0..50_000u64).chain([900_000]) {
            assert_eq!(
                loaded.view(UserKey::Dense(id), now_ms),
                store.view(UserKey::Dense(id), now_ms),
                "user {id}"
            );
        }
        assert_eq!(loaded.view(UserKey::Dense(14), now_ms).state, State::Dnd);
        assert_eq!(
            loaded.view(UserKey::Side(b"uuid-1"), now_ms).state,
            State::Busy
        );
        assert_eq!(
            loaded.key_value(UserKey::Side(b"json"), now_ms).as_deref(),
            Some(&b"{}"[..])
        );
        assert_eq!(
            loaded.view(UserKey::Dense(900_000), now_ms).state,
            State::Offline,
            "expired while down"
        );
        assert_eq!(loaded.online_count(), store.online_count() - 1);

        let bytes = fs::read(&report.file).expect("read");
        for at in [3, 60, bytes.len() / 2, bytes.len() - 30, bytes.len() - 3] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            fs::write(&report.file, &damaged).expect("write");
            assert!(verify(&report.file).is_err(), "flip at {at} not detected");
        }
        fs::write(&report.file, &bytes[..bytes.len() - 10]).expect("truncate");
        let err = verify(&report.file).expect_err("truncation");
        assert_eq!(err.region, "trailer");

        // The temporary of a save a crash interrupted goes at the next save.
        let leftover = dir.join(".presenced-00000000000000000001.snap.tmp");
        fs::write(&leftover, b"half a snapshot").expect("write");
        save(&store, "user:{id}:presence", &dir, T0_MS + 1).expect("save");
        assert!(!leftover.exists(), "a leftover temporary survived a save");
        let _ = fs::remove_dir_all(&dir);
    }

    /// Rewrites a good snapshot with `edit` applied to each record, then recomputes every CRC,
    /// so that only the range checks of loading stand between the edit and the store.
    fn rewrite(path: &Path, edit: &dyn Fn(&mut RecordHeader, &mut Vec<u8>)) {
        let (header, records, _) = verify(path).expect("a good snapshot");
        let bytes = fs::read(path).expect("read");
        let mut out = bytes[..header.encoded_len()].to_vec();
        for (record, start) in &records {
            let mut record = *record;
            let mut payload = bytes[*start..*start + record.payload_len as usize].to_vec();
            edit(&mut record, &mut payload);
            record.payload_len = payload.len() as u64;
            record.payload_crc = crc32fast::hash(&payload);
            out.extend_from_slice(&record.encode());
            out.extend_from_slice(&payload);
        }
        let trailer = format::encode_trailer(records.len() as u64, crc32fast::hash(&out));
        out.extend_from_slice(&trailer);
        fs::write(path, out).expect("write");
        assert!(
            verify(path).is_ok(),
            "the rewritten file passes every CRC check"
        );
    }

    /// A shard's side table written again after its extras, with a user's `EXTRA` flag
    /// cleared (CRCs all valid), is refused before import and the older snapshot loads.
    /// Imported, it left an extras entry that no read consulted but the next save wrote back
    /// (found by the snapshot-crc fuzz target).
    #[test]
    fn records_out_of_order_are_refused() {
        let dir = std::env::temp_dir().join(format!("presenced-order-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = Store::new(1 << 16, 2, T0_MS).expect("store");
        let _ = store.set_key(
            UserKey::Side(b"bob"),
            KeyValue::Custom(b"hello"),
            KeyExpiry::Never,
            SetCondition::Always,
            Room::Available,
            T0_MS,
        );
        let good = save(&store, "user:{id}:presence", &dir, T0_MS).expect("save");
        let crafted = save(&store, "user:{id}:presence", &dir, T0_MS + 1).expect("save");
        let (header, records, _) = verify(&crafted.file).expect("a good snapshot");
        let bytes = fs::read(&crafted.file).expect("read");
        let bob_shard = crate::store::side_shard(b"bob", 2) as u32;
        let extras = records
            .iter()
            .position(|(r, _)| r.tag == TAG_EXTRAS && r.shard == bob_shard)
            .expect("bob's shard's extras");
        // The shard's side table holds bob alone: `id_len: u16, id, slot: u64`.
        let (side, start) = records
            .iter()
            .find(|(r, _)| r.tag == TAG_SIDE && r.shard == bob_shard)
            .expect("bob's shard's side table");
        let entry = &bytes[*start..*start + side.payload_len as usize];
        assert_eq!(&entry[..5], b"\x03\x00bob");
        let slot = Slot(u64::from_le_bytes(
            entry[5..13].try_into().expect("8 bytes"),
        ));
        assert!(slot.has_extra());
        let payload = side_entry(b"bob", slot.with_extra(false).0);
        let again = RecordHeader {
            tag: TAG_SIDE,
            shard: bob_shard,
            index: 0,
            payload_len: payload.len() as u64,
            payload_crc: crc32fast::hash(&payload),
        };
        let mut out = bytes[..header.encoded_len()].to_vec();
        for (i, (record, start)) in records.iter().enumerate() {
            out.extend_from_slice(
                &bytes[start - RECORD_HEADER_LEN..start + record.payload_len as usize],
            );
            if i == extras {
                out.extend_from_slice(&again.encode());
                out.extend_from_slice(&payload);
            }
        }
        let trailer = format::encode_trailer(records.len() as u64 + 1, crc32fast::hash(&out));
        out.extend_from_slice(&trailer);
        fs::write(&crafted.file, out).expect("write");
        let err = verify(&crafted.file).expect_err("a side table after the extras");
        assert_eq!(err.region, format!("side table of shard {bob_shard}"));
        assert!(err.problem.starts_with("out of order"), "{}", err.problem);

        let loaded = Store::new(1 << 16, 2, T0_MS + 10).expect("store");
        let (load, rejected) = load_newest(&loaded, &dir, T0_MS + 10).expect("load");
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!(load.expect("the older snapshot").file, good.file);
        assert_eq!(
            loaded
                .key_value(UserKey::Side(b"bob"), T0_MS + 10)
                .as_deref(),
            Some(&b"hello"[..])
        );
        let _ = fs::remove_dir_all(&dir);
    }

    /// A side-table entry as `persist` encodes it.
    fn side_entry(id: &[u8], slot: u64) -> Vec<u8> {
        let mut out = (id.len() as u16).to_le_bytes().to_vec();
        out.extend_from_slice(id);
        out.extend_from_slice(&slot.to_le_bytes());
        out
    }

    /// Files whose CRCs are all valid but whose records point outside the store (a chunk index
    /// past the shard, a dense ID or another shard's ID in a side table, extras of a user the
    /// file has no slot for) are refused with the record named, and the older snapshot loads.
    #[test]
    fn out_of_range_records_are_refused() {
        let base = std::env::temp_dir().join(format!("presenced-ranges-{}", std::process::id()));
        let store = Store::new(1 << 16, 2, T0_MS).expect("store");
        for id in [1u64, 2, 3, 10_000] {
            store
                .heartbeat(UserKey::Dense(id), 300, None, None, Room::Available, T0_MS)
                .expect("heartbeat");
        }
        let slot = Slot::NEVER_SEEN.with_times(Some(T0_MS), 300).0;
        let other_shard_id = |shard: u32| {
            (0..)
                .map(|i| format!("uuid-{i}").into_bytes())
                .find(|id| crate::store::side_shard(id, 2) != shard as usize)
                .expect("some id routes elsewhere")
        };
        type Edit = Box<dyn Fn(&mut RecordHeader, &mut Vec<u8>)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "is outside this shard",
                Box::new(|r, _| {
                    if r.tag == TAG_DENSE {
                        r.index = 1 << 60;
                    }
                }),
            ),
            (
                "is a dense user id",
                Box::new(move |r, p| {
                    if r.tag == TAG_SIDE {
                        *p = side_entry(b"42", slot);
                    }
                }),
            ),
            (
                "belongs to shard",
                Box::new(move |r, p| {
                    if r.tag == TAG_SIDE {
                        *p = side_entry(&other_shard_id(r.shard), slot);
                    }
                }),
            ),
            (
                "has no slot for",
                Box::new(|r, p| {
                    if r.tag == TAG_EXTRAS {
                        // A dense user at index 7 (ID 14 or 15), never seen.
                        p.clear();
                        p.push(0);
                        p.extend_from_slice(&7u64.to_le_bytes());
                        p.push(0);
                        p.extend_from_slice(&0u16.to_le_bytes());
                        p.push(0);
                        p.extend_from_slice(&u32::MAX.to_le_bytes());
                    }
                }),
            ),
        ];
        for (i, (expected, edit)) in cases.iter().enumerate() {
            let dir = base.join(i.to_string());
            let _ = fs::remove_dir_all(&dir);
            let good = save(&store, "user:{id}:presence", &dir, T0_MS).expect("save");
            let crafted = save(&store, "user:{id}:presence", &dir, T0_MS + 1).expect("save");
            rewrite(&crafted.file, edit.as_ref());
            let loaded = Store::new(1 << 16, 2, T0_MS + 10).expect("store");
            let (load, rejected) = load_newest(&loaded, &dir, T0_MS + 10).expect("load");
            assert_eq!(rejected.len(), 1, "{expected}: {rejected:?}");
            assert!(
                rejected[0].contains(expected),
                "{expected}: {}",
                rejected[0]
            );
            assert!(
                rejected[0].contains("shard"),
                "the record is named: {}",
                rejected[0]
            );
            assert_eq!(load.expect("the older snapshot").file, good.file);
            assert_eq!(
                loaded.online_count(),
                4,
                "{expected}: the good snapshot's users"
            );
            assert_eq!(
                loaded.side_count(),
                0,
                "{expected}: nothing of the crafted file"
            );
        }
        let _ = fs::remove_dir_all(&base);
    }
}
