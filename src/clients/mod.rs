//! The registry of connected clients, for `CLIENT LIST`, `CLIENT KILL`, `INFO clients` and the
//! `--maxclients` limit. A connection owns its session; the registry holds only what other
//! connections and the pub/sub fan-out may touch: the `ClientMeta`, the client's `Outbox` of
//! published messages, and a handle to ask the connection to close (with a `CloseReason`).
//!
//! This module never imports `pubsub`: pub/sub delivers into a client's outbox, so it depends
//! on the client registry, not the other way round.

mod close_reason;
mod outbox;

pub use close_reason::CloseReason;
pub use outbox::{Kind, Outbox, PushOutcome, Pushed};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hashbrown::HashMap;
use tokio::sync::Notify;

use crate::resp::Protocol;

/// What `CLIENT LIST` shows of a client; updated by its connection as it changes.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub name: String,
    pub lib_name: String,
    pub lib_ver: String,
    pub resp: i64,
    pub last_command: String,
    pub last_interaction_ms: u64,
    pub query_buffer_bytes: usize,
    pub channel_subscriptions: usize,
    pub pattern_subscriptions: usize,
    pub shard_subscriptions: usize,
    /// This connection is a follower's replication link (after `PSYNC`): `CLIENT LIST` flag
    /// `S`, `CLIENT KILL TYPE replica`, never `TYPE normal`.
    pub replica: bool,
    /// Commands queued in an open transaction, -1 outside one (`CLIENT LIST`'s `multi=`).
    pub multi: i64,
    /// The socket's file descriptor.
    pub fd: i32,
    /// Room left in the query buffer before it must grow (`qbuf-free`).
    pub query_buffer_free_bytes: usize,
    /// Replies written but not yet taken by the socket, as of the last batch (part of `omem`).
    pub output_pending_bytes: usize,
    /// What the connection's input and output buffers have allocated (part of `tot-mem`).
    pub buffers_bytes: usize,
}

impl ClientMeta {
    /// Whether the client holds any subscription (`CLIENT LIST`'s `P` flag, `TYPE pubsub`).
    pub fn subscribed(&self) -> bool {
        self.channel_subscriptions + self.pattern_subscriptions + self.shard_subscriptions > 0
    }
}

#[derive(Debug)]
pub struct ClientEntry {
    pub id: u64,
    pub addr: SocketAddr,
    pub local_addr: SocketAddr,
    pub connected_ms: u64,
    pub meta: Mutex<ClientMeta>,
    /// Notified to make the connection close itself (CLIENT KILL, pub/sub output limit).
    pub kill: Notify,
    /// Set once the client was asked to close: it no longer counts or lists, even in the
    /// moment before its task has unregistered it (as a killed Redis client vanishes at once).
    killed: AtomicBool,
    /// Why it was asked to close (`CloseReason::index`), read by its connection on the way out.
    kill_reason: AtomicUsize,
    /// Messages published to this client, waiting to be written.
    pub outbox: Outbox,
    /// The protocol the connection speaks, for encoding what is pushed to it.
    protocol: AtomicU8,
}

impl ClientEntry {
    /// Asks the connection to close, saying why.
    pub fn kill(&self, reason: CloseReason) {
        self.kill_reason.store(reason.index(), Ordering::Relaxed);
        self.killed.store(true, Ordering::Release);
        self.kill.notify_one();
    }

    /// Why the client was asked to close (`Killed` if it was not asked at all).
    pub fn kill_reason(&self) -> CloseReason {
        if !self.killed.load(Ordering::Acquire) {
            return CloseReason::Killed;
        }
        CloseReason::from_index(self.kill_reason.load(Ordering::Relaxed))
            .unwrap_or(CloseReason::Killed)
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    pub fn protocol(&self) -> Protocol {
        match self.protocol.load(Ordering::Relaxed) {
            3 => Protocol::Resp3,
            _ => Protocol::Resp2,
        }
    }

    pub fn set_protocol(&self, protocol: Protocol) {
        self.protocol
            .store(protocol.version() as u8, Ordering::Relaxed);
        self.meta().resp = protocol.version();
    }

    pub fn meta(&self) -> MutexGuard<'_, ClientMeta> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One `CLIENT LIST` line (without the trailing newline), in Redis's field order.
    pub fn list_line(&self, now_ms: u64) -> String {
        let output_bytes = self.outbox.pending_bytes();
        let meta = self.meta();
        // `omem`: replies not yet written plus published messages waiting in the outbox.
        let output_bytes = output_bytes + meta.output_pending_bytes;
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db=0 sub={} psub={} ssub={} \
             multi={} qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem={} \
             tot-mem={} events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.local_addr,
            meta.fd,
            meta.name,
            now_ms.saturating_sub(self.connected_ms) / 1000,
            now_ms.saturating_sub(meta.last_interaction_ms) / 1000,
            if meta.replica {
                "S"
            } else if meta.subscribed() {
                "P"
            } else {
                "N"
            },
            meta.channel_subscriptions,
            meta.pattern_subscriptions,
            meta.shard_subscriptions,
            meta.multi,
            meta.query_buffer_bytes,
            meta.query_buffer_free_bytes,
            output_bytes,
            meta.buffers_bytes + output_bytes + std::mem::size_of::<ClientEntry>(),
            if meta.last_command.is_empty() {
                "NULL"
            } else {
                &meta.last_command
            },
            meta.resp,
            meta.lib_name,
            meta.lib_ver,
        )
    }
}

#[derive(Debug, Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<HashMap<u64, Arc<ClientEntry>>>,
    /// `CLIENT PAUSE`: until when (Unix ms, 0 for not paused), and whether only writes wait.
    paused_until_ms: AtomicU64,
    pause_writes_only: AtomicBool,
}

/// What `CLIENT PAUSE` holds back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pause {
    pub until_ms: u64,
    /// `WRITE`: only commands that change data (and PUBLISH) wait; `ALL`: every command.
    pub writes_only: bool,
}

impl ClientRegistry {
    fn clients(&self) -> MutexGuard<'_, HashMap<u64, Arc<ClientEntry>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new client, or returns `None` when `clients_max` are already connected.
    pub fn register(
        &self,
        addr: SocketAddr,
        local_addr: SocketAddr,
        now_ms: u64,
        clients_max: usize,
    ) -> Option<Arc<ClientEntry>> {
        let mut clients = self.clients();
        if clients.len() >= clients_max {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(ClientEntry {
            id,
            addr,
            local_addr,
            connected_ms: now_ms,
            meta: Mutex::new(ClientMeta {
                resp: 2,
                multi: -1,
                last_interaction_ms: now_ms,
                ..ClientMeta::default()
            }),
            kill: Notify::new(),
            killed: AtomicBool::new(false),
            kill_reason: AtomicUsize::new(CloseReason::Killed.index()),
            outbox: Outbox::default(),
            protocol: AtomicU8::new(2),
        });
        clients.insert(id, Arc::clone(&entry));
        Some(entry)
    }

    pub fn unregister(&self, id: u64) {
        self.clients().remove(&id);
    }

    pub fn count(&self) -> usize {
        self.clients().values().filter(|c| !c.is_killed()).count()
    }

    /// Every client, ordered by ID (as Redis lists them).
    pub fn snapshot(&self) -> Vec<Arc<ClientEntry>> {
        let mut all: Vec<_> = self
            .clients()
            .values()
            .filter(|c| !c.is_killed())
            .cloned()
            .collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// `CLIENT PAUSE`: holds back clients' commands (all, or only writes) until `until_ms`. A
    /// pause in force is only ever extended, and `ALL` wins over `WRITE`, as in Redis.
    pub fn pause(&self, until_ms: u64, writes_only: bool) {
        let current = self.paused_until_ms.load(Ordering::Acquire);
        let was_all = current != 0 && !self.pause_writes_only.load(Ordering::Acquire);
        self.pause_writes_only
            .store(writes_only && !was_all, Ordering::Release);
        self.paused_until_ms.fetch_max(until_ms, Ordering::AcqRel);
    }

    /// `CLIENT UNPAUSE`.
    pub fn unpause(&self) {
        self.paused_until_ms.store(0, Ordering::Release);
    }

    /// The pause in force at `now_ms`, if any.
    pub fn pause_at(&self, now_ms: u64) -> Option<Pause> {
        let until_ms = self.paused_until_ms.load(Ordering::Acquire);
        (now_ms < until_ms).then(|| Pause {
            until_ms,
            writes_only: self.pause_writes_only.load(Ordering::Acquire),
        })
    }

    /// Asks the clients matching `pred` to close (`CLIENT KILL`); returns how many were asked.
    pub fn kill_where(&self, pred: impl Fn(&ClientEntry) -> bool) -> usize {
        let clients = self.clients();
        let mut killed = 0;
        for entry in clients.values().filter(|c| !c.is_killed() && pred(c)) {
            entry.kill(CloseReason::Killed);
            killed += 1;
        }
        killed
    }
}
