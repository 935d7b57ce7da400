//! Why a connection ended. Every way a connection can end is one variant, so that each is
//! logged at its own level and counted (`INFO stats`, and later the metrics endpoint) in one
//! place, the connection's exit, rather than at the many sites that decide to close.

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its side (end of stream).
    ClientClosed,
    /// The client sent `QUIT`.
    Quit,
    /// `CLIENT KILL` (by another client, or by itself with `SKIPME no`).
    Killed,
    /// The client broke the protocol; it got the protocol error as its last reply.
    ProtocolError,
    /// Unparsed input passed `--client-query-buffer-limit`; closed without a reply, as Redis does.
    QueryBufferLimit,
    /// Published messages waiting for the client passed `--pubsub-output-limit`.
    PubsubOutputLimit,
    /// The server is shutting down (`SHUTDOWN` from another client, SIGINT, SIGTERM).
    ServerShutdown,
    /// This client sent a successful `SHUTDOWN`.
    ShutdownCommand,
    /// Reading or writing the socket failed.
    IoError,
}

impl CloseReason {
    /// Every reason, in the order `INFO` lists them; `index` is the position here.
    pub const ALL: [CloseReason; 9] = [
        CloseReason::ClientClosed,
        CloseReason::Quit,
        CloseReason::Killed,
        CloseReason::ProtocolError,
        CloseReason::QueryBufferLimit,
        CloseReason::PubsubOutputLimit,
        CloseReason::ServerShutdown,
        CloseReason::ShutdownCommand,
        CloseReason::IoError,
    ];

    pub const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason's name in `INFO` fields and log lines (`connections_closed_<name>`).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::Quit => "quit",
            CloseReason::Killed => "killed",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::QueryBufferLimit => "query_buffer_limit",
            CloseReason::PubsubOutputLimit => "pubsub_output_limit",
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::ShutdownCommand => "shutdown_command",
            CloseReason::IoError => "io_error",
        }
    }

    /// The log level a close deserves: what a client did to itself is not the server's
    /// problem (debug); what an operator may want to hear of is info; a limit that protects
    /// the server from one client is a warning.
    pub fn level(self) -> tracing::Level {
        match self {
            CloseReason::ClientClosed
            | CloseReason::Quit
            | CloseReason::ProtocolError
            | CloseReason::ServerShutdown
            | CloseReason::IoError => tracing::Level::DEBUG,
            CloseReason::Killed | CloseReason::PubsubOutputLimit | CloseReason::ShutdownCommand => {
                tracing::Level::INFO
            }
            CloseReason::QueryBufferLimit => tracing::Level::WARN,
        }
    }

    /// What the log line at the close says.
    pub fn describe(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "the client closed the connection",
            CloseReason::Quit => "the client sent QUIT",
            CloseReason::Killed => "closed by CLIENT KILL",
            CloseReason::ProtocolError => "closed after a protocol error",
            CloseReason::QueryBufferLimit => "closing a client that reached the query buffer limit",
            CloseReason::PubsubOutputLimit => {
                "disconnecting a subscriber over the pub/sub output limit"
            }
            CloseReason::ServerShutdown => "closed for the server's shutdown",
            CloseReason::ShutdownCommand => "the client sent SHUTDOWN",
            CloseReason::IoError => "closed after a socket error",
        }
    }

    /// The inverse of `index`, for a reason kept in an atomic.
    pub fn from_index(index: usize) -> Option<CloseReason> {
        Self::ALL.get(index).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `index` and `from_index` agree for every reason, and names are distinct.
    #[test]
    fn index_round_trips() {
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
            assert_eq!(CloseReason::from_index(i), Some(*reason));
        }
        let mut names: Vec<_> = CloseReason::ALL.iter().map(|r| r.as_str()).collect();
        names.dedup();
        assert_eq!(names.len(), CloseReason::COUNT);
    }
}
