//! What the store tells the rest of the server about a change: `Transition` (a user's visible
//! state is now this), `Cause` (why) and `UserRef` (who).
//!
//! These are plain values handed to the event sink; they hold no reference into a shard, and
//! this module must never depend on the shard's internals. Transitions are derived from change
//! records in `shard::door` and nowhere else.

use std::sync::Arc;

use super::status::State;

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
