//! Per-connection state that commands read and change, and `Flow`: what the connection does
//! after a command. The protocol a connection speaks lives with its output buffer
//! (`ReplyBuf::protocol`), where every reply is encoded.

use std::sync::Arc;

use bytes::Bytes;
use hashbrown::{HashMap, HashSet};

use crate::clients::{ClientEntry, CloseReason};
use crate::store::WatchMark;

#[derive(Debug)]
pub struct Session {
    pub client: Arc<ClientEntry>,
    pub authenticated: bool,
    /// Channels, patterns and shard channels this connection subscribed to (the registry
    /// holds the reverse).
    pub channels: HashSet<Bytes>,
    pub patterns: HashSet<Bytes>,
    pub shard_channels: HashSet<Bytes>,
    /// While an `EXEC` runs its queued commands (what Redis refuses `SSUBSCRIBE` in).
    pub in_exec: bool,
    /// Between `MULTI` and `EXEC`/`DISCARD`: the commands queued so far.
    pub transaction: Option<Transaction>,
    /// Keys this connection `WATCH`es, with what was seen of each.
    pub watched: HashMap<Bytes, WatchedKey>,
    /// `CLIENT REPLY`: whether replies are sent.
    pub reply_mode: ReplyMode,
    /// What a follower said in its handshake (`REPLCONF listening-port`, `capa`), and the
    /// `PSYNC` that turns this connection into its replication link.
    pub replica: ReplicaHandshake,
}

/// A follower's handshake, as the leader's connection collects it.
#[derive(Debug, Default)]
pub struct ReplicaHandshake {
    pub listening_port: u16,
    /// `REPLCONF ip-address`: the address the follower wants to be known by (its
    /// --replica-announce-ip), else its connection's.
    pub announced_ip: Option<String>,
    /// It announced `capa presenced-v2`: it reads presenced's stream.
    pub reads_presenced_stream: bool,
    /// `PSYNC <replid> <offset>`: the connection becomes the follower's link.
    pub psync: Option<(String, i64)>,
}

/// `CLIENT REPLY ON | OFF | SKIP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReplyMode {
    #[default]
    On,
    /// No reply to any command until `CLIENT REPLY ON`.
    Off,
    /// No reply to the next command.
    Skip,
}

/// A transaction being queued.
#[derive(Debug, Default)]
pub struct Transaction {
    /// Each queued request's arguments, in order.
    pub queued: Vec<Vec<Bytes>>,
    /// A queued command was refused (unknown, wrong arity, ...): `EXEC` must abort.
    pub aborted: bool,
}

/// What was seen of one `WATCH`ed key. `mark` is `None` for a key that can never exist here
/// (outside the presence key pattern), which therefore never changes.
#[derive(Debug)]
pub struct WatchedKey {
    pub mark: Option<WatchMark>,
    /// Whether the key existed when watched: a key that expired since then changed, even
    /// before the timer settled it.
    pub existed: bool,
}

impl Session {
    pub fn new(client: Arc<ClientEntry>, requirepass_set: bool) -> Self {
        Self {
            client,
            authenticated: !requirepass_set,
            channels: HashSet::new(),
            patterns: HashSet::new(),
            shard_channels: HashSet::new(),
            in_exec: false,
            transaction: None,
            watched: HashMap::new(),
            reply_mode: ReplyMode::On,
            replica: ReplicaHandshake::default(),
        }
    }

    /// Channel and pattern subscriptions: the count `SUBSCRIBE` and `PSUBSCRIBE` confirm
    /// (shard channels are counted apart, by `SSUBSCRIBE`, as in Redis).
    pub fn subscription_count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Whether any subscription of any kind is held: a RESP2 connection is then in Redis's
    /// subscribed mode.
    pub fn subscribed(&self) -> bool {
        self.subscription_count() + self.shard_channels.len() > 0
    }

    pub fn id(&self) -> u64 {
        self.client.id
    }
}

/// What the connection does after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Write what is pending, then close for this reason (QUIT, CLIENT KILL of itself, a
    /// protocol error). `ShutdownCommand` also stops the server once the output is written.
    Close(CloseReason),
    /// Write what is pending, then serve this connection as a follower's replication link
    /// (`PSYNC`; the request is in `Session::replica`).
    Replicate,
    /// `WAIT`: write what is pending, read nothing more, and answer the number of followers
    /// that acknowledged `offset` once it reaches `count` or the clock reaches `until_ms`.
    WaitReplicas {
        offset: u64,
        count: u64,
        until_ms: Option<u64>,
    },
}
