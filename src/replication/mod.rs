//! Replication: a leader ships its users' state to followers; Redis Sentinel decides who leads.
//!
//! The stream is not the clients' commands but the shards' changes: every tick the leader
//! drains each shard's dirty users (`Store::encode_changes`) into `STATE` frames, appended to a
//! backlog of `--repl-backlog-size` bytes, and each follower connection (`leader`) writes the
//! backlog out from its offset. A follower (`follower`) connects with Redis's handshake,
//! loads the full-sync snapshot, then applies frames through the same door every change goes
//! through, so its subscribers see the leader's transitions. Offsets count stream bytes, as
//! Redis's do, so Sentinel's view of who is most up to date holds. docs/design/replication.md
//! has the stream's format (version 2) and what survives a failover.

mod backlog;
pub mod follower;
pub mod leader;
mod safety;
pub mod stream;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

pub use backlog::Backlog;

/// What this process is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower { host: String, port: u16 },
}

/// The state of a follower's link to its leader (`INFO replication` on a follower).
#[derive(Clone, Debug, Default)]
pub struct Link {
    pub up: bool,
    pub sync_in_progress: bool,
    pub last_io_ms: u64,
    pub down_since_ms: u64,
}

/// A follower as its leader sees it (`INFO replication` on a leader: `slaveN:`).
#[derive(Clone, Debug)]
pub struct FollowerInfo {
    pub client_id: u64,
    pub ip: String,
    pub listening_port: u16,
    /// `wait_bgsave`, `send_bulk` or `online`.
    pub state: &'static str,
    pub ack_offset: u64,
    pub last_ack_ms: u64,
}

struct State {
    role: Role,
    /// Bumped at every role change: a follower link whose epoch is stale ends.
    epoch: u64,
    replid: String,
    replid2: String,
    /// The offset up to which `replid2` is valid, -1 without one (Redis's fields).
    second_offset: i64,
    link: Link,
    /// Whether this process holds a stream it can continue: it synced from a leader, or led
    /// with followers. A fresh follower asks for a full sync (`PSYNC ? -1`).
    has_stream: bool,
    followers: Vec<FollowerInfo>,
    full_syncs: u64,
    partial_syncs_ok: u64,
    partial_syncs_err: u64,
}

pub struct Replication {
    state: Mutex<State>,
    /// The stream: held while frames are appended, so that frames keep the order of the
    /// changes they carry (a FLUSHALL is a barrier between the changes before and after it).
    backlog: Mutex<Backlog>,
    /// The stream's end offset, watched by the connections feeding followers.
    end_offset: watch::Sender<u64>,
    /// Whether the shards track changes (turned on by the first follower; it stays on).
    tracking: AtomicBool,
    /// Mirrors `Role::Follower`, for the write check on every command (no lock).
    following: AtomicBool,
    /// Rung by connections after a batch of commands: the stream is produced right away
    /// rather than at the next tick, so a follower trails by the time it takes to ship, not
    /// by a tick (fewer acknowledged heartbeats lost when a leader dies).
    produce_wanted: tokio::sync::Notify,
    /// Bumped with `State::epoch` at every role change, for the task that starts and stops
    /// the follower link and rebuilds the wheels at a promotion.
    role_changes: watch::Sender<u64>,
    /// `--min-replicas-to-write`, `--min-replicas-max-lag` (CONFIG SET changes them) and the
    /// followers that meet them now (`safety`).
    min_to_write: AtomicU64,
    max_lag_s: AtomicU64,
    good_followers: AtomicU64,
    /// Bumped at every acknowledgement and follower change: what `WAIT` waits on.
    acks: watch::Sender<u64>,
    pub replica_priority: u64,
    pub promotion_grace_s: u64,
    pub masterauth: Option<String>,
}

/// A fresh 40-hex replication ID.
pub fn new_replid() -> String {
    crate::identity::random_hex_40()
}

impl Replication {
    pub fn new(config: &crate::config::Config) -> Self {
        let role = match &config.replicaof {
            Some((host, port)) => Role::Follower {
                host: host.clone(),
                port: *port,
            },
            None => Role::Leader,
        };
        let following = matches!(role, Role::Follower { .. });
        Self {
            following: AtomicBool::new(following),
            produce_wanted: tokio::sync::Notify::new(),
            role_changes: watch::channel(0).0,
            state: Mutex::new(State {
                role,
                epoch: 0,
                replid: new_replid(),
                replid2: "0".repeat(40),
                second_offset: -1,
                link: Link::default(),
                has_stream: false,
                followers: Vec::new(),
                full_syncs: 0,
                partial_syncs_ok: 0,
                partial_syncs_err: 0,
            }),
            backlog: Mutex::new(Backlog::new(config.repl_backlog_bytes)),
            end_offset: watch::channel(0).0,
            tracking: AtomicBool::new(false),
            min_to_write: AtomicU64::new(config.min_replicas_to_write),
            max_lag_s: AtomicU64::new(config.min_replicas_max_lag_s),
            good_followers: AtomicU64::new(0),
            acks: watch::channel(0).0,
            replica_priority: config.replica_priority,
            promotion_grace_s: config.promotion_grace_s,
            masterauth: config.masterauth.clone(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn backlog(&self) -> MutexGuard<'_, Backlog> {
        self.backlog.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn role(&self) -> Role {
        self.state().role.clone()
    }

    /// One relaxed load: what every write command checks.
    pub fn is_follower(&self) -> bool {
        self.following.load(Ordering::Relaxed)
    }

    pub fn watch_role(&self) -> watch::Receiver<u64> {
        self.role_changes.subscribe()
    }

    pub fn epoch(&self) -> u64 {
        self.state().epoch
    }

    pub fn replid(&self) -> String {
        self.state().replid.clone()
    }

    /// `(replid, replid2, second_offset)`.
    pub fn ids(&self) -> (String, String, i64) {
        let state = self.state();
        (
            state.replid.clone(),
            state.replid2.clone(),
            state.second_offset,
        )
    }

    pub fn link(&self) -> Link {
        self.state().link.clone()
    }

    pub fn update_link(&self, update: impl FnOnce(&mut Link)) {
        update(&mut self.state().link);
    }

    pub fn followers(&self) -> Vec<FollowerInfo> {
        self.state().followers.clone()
    }

    pub fn sync_counts(&self) -> (u64, u64, u64) {
        let state = self.state();
        (
            state.full_syncs,
            state.partial_syncs_ok,
            state.partial_syncs_err,
        )
    }

    /// Becomes a follower of `host:port` (REPLICAOF). Returns the new epoch, which the link
    /// task started for it carries.
    pub fn follow(&self, host: String, port: u16) -> u64 {
        let mut state = self.state();
        state.role = Role::Follower { host, port };
        state.epoch += 1;
        state.link = Link {
            down_since_ms: crate::clock::now_ms(),
            ..Link::default()
        };
        self.following.store(true, Ordering::Relaxed);
        self.role_changes.send_replace(state.epoch);
        state.epoch
    }

    /// Becomes the leader (REPLICAOF NO ONE): a new replication ID, the old one kept as the
    /// second so followers of the same old leader continue by offset. Returns false if this
    /// was already the leader.
    pub fn lead(&self) -> bool {
        let mut state = self.state();
        if state.role == Role::Leader {
            return false;
        }
        state.role = Role::Leader;
        state.epoch += 1;
        state.replid2 = std::mem::replace(&mut state.replid, new_replid());
        state.second_offset = self.end_offset() as i64 + 1;
        self.following.store(false, Ordering::Relaxed);
        self.role_changes.send_replace(state.epoch);
        true
    }

    /// After a full sync a follower takes its leader's ID and offset.
    pub fn adopt(&self, replid: &str, offset: u64) {
        let mut state = self.state();
        state.replid = replid.to_string();
        state.has_stream = true;
        drop(state);
        self.backlog().reset(offset);
        self.end_offset.send_replace(offset);
    }

    /// A `+CONTINUE <id>` from a leader whose ID changed (it was promoted): the new ID, the
    /// old one kept as the second, the offset going on.
    pub fn adopt_id(&self, replid: &str) {
        let end = self.end_offset();
        let mut state = self.state();
        if state.replid != replid {
            state.replid2 = std::mem::replace(&mut state.replid, replid.to_string());
            state.second_offset = end as i64 + 1;
        }
    }

    /// Where a follower stands in its leader's stream, for a snapshot's header; read before
    /// the snapshot copies anything, so the state saved is at that offset or later. `None` on
    /// a leader: its users may be ahead of its stream by changes not yet drained, which a
    /// restarted leader would never ship, so it starts a new stream (its followers then sync
    /// in full) rather than claim an offset its state does not match.
    pub fn mark(&self) -> Option<crate::snapshot::ReplicationMark> {
        let state = self.state();
        let following = matches!(state.role, Role::Follower { .. });
        (following && state.has_stream).then(|| crate::snapshot::ReplicationMark {
            replid: state.replid.clone(),
            offset: self.end_offset(),
        })
    }

    /// After a snapshot with a mark was loaded at start: this process holds that stream up to
    /// that offset, and a follower asks its leader to continue from there.
    pub fn restore_mark(&self, mark: &crate::snapshot::ReplicationMark) {
        let mut state = self.state();
        state.replid = mark.replid.clone();
        state.has_stream = true;
        drop(state);
        self.backlog().reset(mark.offset);
        self.end_offset.send_replace(mark.offset);
    }

    /// What this process asks its leader for: `PSYNC <our replid> <next offset>` to continue
    /// the stream it holds (the leader decides whether it can), `PSYNC ? -1` if it holds none.
    pub fn psync_request(&self) -> (String, String) {
        let state = self.state();
        if state.has_stream {
            (state.replid.clone(), (self.end_offset() + 1).to_string())
        } else {
            ("?".to_string(), "-1".to_string())
        }
    }

    pub fn end_offset(&self) -> u64 {
        *self.end_offset.borrow()
    }

    pub fn watch_end(&self) -> watch::Receiver<u64> {
        self.end_offset.subscribe()
    }

    /// Appends frames to the stream (their bytes) with the backlog held by the caller, and
    /// wakes the followers' connections.
    pub fn appended(&self, backlog: &Backlog) {
        self.end_offset.send_replace(backlog.end_offset());
    }

    /// Turns change tracking on in every shard (idempotent): from now on every change is
    /// marked for the stream.
    pub fn ensure_tracking(&self, store: &crate::store::Store) {
        self.state().has_stream = true;
        if !self.tracking.swap(true, Ordering::AcqRel) {
            store.track_changes(true);
        }
    }

    pub fn tracking(&self) -> bool {
        self.tracking.load(Ordering::Relaxed)
    }

    /// After a batch of commands: if followers are fed, have the stream produced now. Two
    /// relaxed loads when there are none.
    pub fn nudge(&self) {
        if self.tracking() && !self.is_follower() {
            self.produce_wanted.notify_one();
        }
    }

    pub async fn produce_wanted(&self) {
        self.produce_wanted.notified().await;
    }

    pub fn add_follower(&self, info: FollowerInfo) {
        let mut state = self.state();
        state.followers.retain(|f| f.client_id != info.client_id);
        state.followers.push(info);
        drop(state);
        self.followers_changed(crate::clock::now_ms());
    }

    pub fn update_follower(&self, client_id: u64, update: impl FnOnce(&mut FollowerInfo)) {
        if let Some(f) = self
            .state()
            .followers
            .iter_mut()
            .find(|f| f.client_id == client_id)
        {
            update(f);
        }
    }

    pub fn remove_follower(&self, client_id: u64) {
        self.state().followers.retain(|f| f.client_id != client_id);
        self.followers_changed(crate::clock::now_ms());
    }

    pub fn count_sync(&self, full: bool, partial_ok: bool) {
        let mut state = self.state();
        if full {
            state.full_syncs += 1;
        }
        if partial_ok {
            state.partial_syncs_ok += 1;
        } else if !full {
            state.partial_syncs_err += 1;
        }
    }

    /// Whether a follower asking to continue `replid` from `offset` (the first byte it lacks)
    /// can: the ID is ours (or our previous one, up to where it was valid) and the backlog
    /// still holds that byte.
    pub fn can_continue(&self, replid: &str, offset: u64) -> bool {
        let state = self.state();
        let known = replid == state.replid
            || (replid == state.replid2
                && state.second_offset >= 0
                && offset <= state.second_offset as u64);
        known && self.backlog().holds(offset)
    }
}
