//! The leader's side: producing the stream from the shards' dirty users, and feeding one
//! follower connection (full sync, then the backlog from its offset, reading its ACKs).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{info, warn};

use super::stream::{self, USERS_PER_FRAME};
use super::{FollowerInfo, Replication};
use crate::clients::{ClientEntry, CloseReason};
use crate::clock;
use crate::resp::{DecodeLimits, Protocol, ReplyBuf, RequestDecoder};
use crate::services::Services;
use crate::store::Store;

/// A stream idle this long gets a `PING` frame (Redis's repl-ping-replica-period).
const PING_PERIOD_MS: u64 = 10_000;

/// Stream bytes written to a follower per socket write.
const FEED_CHUNK_BYTES: usize = 256 * 1024;

impl Replication {
    /// One tick of the stream: every shard's changed users since the last tick, as `STATE`
    /// frames (nothing while no follower ever connected: shards track nothing then). Holds the
    /// backlog for the tick, each shard's lock for one frame's worth of users at a time.
    pub fn produce(&self, store: &Store, now_ms: u64, last_frame_ms: &mut u64) {
        if !self.tracking() || self.is_follower() {
            return;
        }
        self.drain_into_stream(store, now_ms, last_frame_ms);
    }

    /// Every change made so far into the stream, now: for `WAIT`, and for a leader stepping
    /// down (REPLICAOF, with every other client held off), though it is a follower already.
    pub fn drain_all(&self, store: &Store, now_ms: u64) {
        if self.tracking() {
            let mut last_frame_ms = now_ms;
            self.drain_into_stream(store, now_ms, &mut last_frame_ms);
        }
    }

    fn drain_into_stream(&self, store: &Store, now_ms: u64, last_frame_ms: &mut u64) {
        let mut backlog = self.backlog();
        let mut packed = Vec::new();
        let mut records = Vec::new();
        let mut frame = Vec::new();
        let mut produced = false;
        let now = now_ms.to_string();
        for shard in 0..store.shard_count() {
            loop {
                packed.clear();
                records.clear();
                if store.encode_changes(shard, USERS_PER_FRAME, &mut packed, &mut records) == 0 {
                    break;
                }
                frame.clear();
                stream::frame(
                    &mut frame,
                    &[
                        b"STATE",
                        shard.to_string().as_bytes(),
                        now.as_bytes(),
                        &packed,
                        &records,
                    ],
                );
                backlog.push(&frame);
                produced = true;
            }
        }
        if !produced && now_ms.saturating_sub(*last_frame_ms) >= PING_PERIOD_MS {
            frame.clear();
            stream::frame(&mut frame, &[b"PING"]);
            backlog.push(&frame);
            produced = true;
        }
        if produced {
            *last_frame_ms = now_ms;
            self.appended(&backlog);
        }
    }

    /// Appends one command frame (FLUSHALL, PUBLISH) after everything drained so far, running
    /// `apply` with the backlog held: a FLUSHALL's changes before and after stay on their side
    /// of it on every follower. Without followers it only runs `apply`.
    pub fn with_frame<R>(&self, parts: &[&[u8]], apply: impl FnOnce() -> R) -> R {
        if !self.tracking() || self.is_follower() {
            return apply();
        }
        let mut backlog = self.backlog();
        let result = apply();
        let mut frame = Vec::new();
        stream::frame(&mut frame, parts);
        backlog.push(&frame);
        self.appended(&backlog);
        result
    }
}

/// What a follower asked for with `PSYNC <replid> <offset>`.
pub struct SyncRequest {
    pub replid: String,
    /// The first stream byte it lacks (-1: it has nothing).
    pub offset: i64,
    pub listening_port: u16,
    pub announced_ip: Option<String>,
}

/// Serves a follower on this connection until it goes away or falls out of the backlog.
pub async fn feed(
    services: &Arc<Services>,
    mut socket: TcpStream,
    entry: &Arc<ClientEntry>,
    request: SyncRequest,
) -> CloseReason {
    let replication = &services.replication;
    replication.ensure_tracking(&services.store);
    entry.meta().replica = true;
    let ip = request
        .announced_ip
        .clone()
        .unwrap_or_else(|| entry.addr.ip().to_string());
    let mut info = FollowerInfo {
        client_id: entry.id,
        ip,
        listening_port: request.listening_port,
        state: "wait_bgsave",
        ack_offset: 0,
        last_ack_ms: clock::now_ms(),
    };
    let continues =
        request.offset > 0 && replication.can_continue(&request.replid, request.offset as u64);
    let mut next_offset;
    if continues {
        next_offset = request.offset as u64;
        replication.count_sync(false, true);
        let mut reply = ReplyBuf::new(Protocol::Resp2);
        reply.simple(&format!("CONTINUE {}", replication.replid()));
        if socket.write_all(&reply.buf).await.is_err() {
            return CloseReason::IoError;
        }
        info.state = "online";
        replication.add_follower(info);
        info!(
            client = entry.id,
            offset = next_offset,
            "follower continues by offset"
        );
    } else {
        if request.offset > 0 {
            replication.count_sync(false, false);
        }
        replication.count_sync(true, false);
        replication.add_follower(info);
        // The offset is taken before the snapshot starts: every change committed before it
        // is in the snapshot, every change after it is marked and will be streamed after it
        // (a change in both is harmless: records carry whole states).
        let start_offset = replication.end_offset();
        let (replid, _, _) = replication.ids();
        let payload = match full_sync_payload(services, entry.id).await {
            Ok(payload) => payload,
            Err(err) => {
                warn!(client = entry.id, %err, "full sync failed: no snapshot to send");
                replication.remove_follower(entry.id);
                return CloseReason::IoError;
            }
        };
        replication.update_follower(entry.id, |f| f.state = "send_bulk");
        let mut header = ReplyBuf::new(Protocol::Resp2);
        header.simple(&format!("FULLRESYNC {replid} {start_offset}"));
        header.bulk_header(payload.len());
        if socket.write_all(&header.buf).await.is_err() || socket.write_all(&payload).await.is_err()
        {
            replication.remove_follower(entry.id);
            return CloseReason::IoError;
        }
        info!(
            client = entry.id,
            bytes = payload.len(),
            offset = start_offset,
            "full sync sent"
        );
        replication.update_follower(entry.id, |f| {
            f.state = "online";
            f.last_ack_ms = clock::now_ms();
        });
        replication.followers_changed(clock::now_ms());
        next_offset = start_offset + 1;
    }
    let reason = stream_to(services, &mut socket, entry, &mut next_offset).await;
    replication.remove_follower(entry.id);
    reason
}

/// Writes the backlog from `next_offset` on as it grows, and reads the follower's ACKs.
async fn stream_to(
    services: &Services,
    socket: &mut TcpStream,
    entry: &ClientEntry,
    next_offset: &mut u64,
) -> CloseReason {
    let replication = &services.replication;
    let mut end = replication.watch_end();
    let mut shutdown = services.shutdown_requested();
    let mut chunk = Vec::with_capacity(FEED_CHUNK_BYTES);
    let mut input = BytesMut::with_capacity(4096);
    let mut decoder = RequestDecoder::new();
    let mut args = Vec::new();
    let limits = DecodeLimits {
        bulk_len_max: 1024,
        args_max: 16,
        authenticated: true,
    };
    loop {
        chunk.clear();
        let read = replication
            .backlog()
            .read_from(*next_offset, FEED_CHUNK_BYTES, &mut chunk);
        match read {
            None => {
                warn!(
                    client = entry.id,
                    "follower fell out of the backlog: disconnected"
                );
                return CloseReason::PubsubOutputLimit;
            }
            Some(0) => {}
            Some(n) => {
                if socket.write_all(&chunk).await.is_err() {
                    return CloseReason::IoError;
                }
                *next_offset += n as u64;
                continue;
            }
        }
        tokio::select! {
            changed = end.changed() => if changed.is_err() { return CloseReason::ServerShutdown },
            ready = socket.readable() => {
                if ready.is_err() {
                    return CloseReason::IoError;
                }
                input.reserve(4096);
                match socket.try_read_buf(&mut input) {
                    Ok(0) => return CloseReason::ClientClosed,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return CloseReason::IoError,
                }
                while let Ok(true) = decoder.decode_into(&mut input, &limits, &mut args) {
                    read_ack(replication, entry.id, &args);
                }
                if input.len() > 64 * 1024 {
                    return CloseReason::ProtocolError;
                }
            }
            _ = entry.kill.notified() => return entry.kill_reason(),
            _ = shutdown.changed() => return CloseReason::ServerShutdown,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// `REPLCONF ACK <offset>` from the follower.
fn read_ack(replication: &Replication, client_id: u64, args: &[bytes::Bytes]) {
    if args.len() >= 3
        && args[0].eq_ignore_ascii_case(b"REPLCONF")
        && args[1].eq_ignore_ascii_case(b"ACK")
        && let Some(offset) = std::str::from_utf8(&args[2])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    {
        replication.record_ack(client_id, offset, clock::now_ms());
    }
}

/// A snapshot of the store as bytes, written on a thread of its own (not a runtime worker)
/// into a directory of its own under `--dir`, read back and removed.
async fn full_sync_payload(services: &Arc<Services>, client_id: u64) -> Result<Vec<u8>, String> {
    let (done, result) = tokio::sync::oneshot::channel();
    let services = Arc::clone(services);
    std::thread::Builder::new()
        .name("presenced-fullsync".into())
        .spawn(move || {
            let dir = services
                .config
                .dir
                .join(format!(".replication-{client_id}"));
            let saved = crate::snapshot::save(
                &services.store,
                services.config.key_pattern.as_str(),
                &dir,
                clock::now_ms(),
            )
            .map_err(|e| e.to_string())
            .and_then(|report| std::fs::read(&report.file).map_err(|e| e.to_string()));
            let _ = std::fs::remove_dir_all(&dir);
            let _ = done.send(saved);
        })
        .map_err(|e| e.to_string())?;
    result
        .await
        .map_err(|_| "the snapshot thread ended".to_string())?
}
