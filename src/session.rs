//! Per-connection state that commands read and change. The protocol a connection speaks lives
//! with its output buffer (`ReplyBuf::protocol`), where every reply is encoded.

use std::sync::Arc;

use crate::clients::ClientEntry;

#[derive(Debug)]
pub struct Session {
    pub client: Arc<ClientEntry>,
    pub authenticated: bool,
}

impl Session {
    pub fn new(client: Arc<ClientEntry>, requirepass_set: bool) -> Self {
        Self {
            client,
            authenticated: !requirepass_set,
        }
    }

    pub fn id(&self) -> u64 {
        self.client.id
    }
}

/// What the connection does after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Write what is pending, then close (QUIT, CLIENT KILL of itself).
    Close,
    /// Write what is pending, close, and stop the server (SHUTDOWN).
    Shutdown,
}
