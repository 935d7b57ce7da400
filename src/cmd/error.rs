//! Why a command was refused, typed by what happened. Handlers return `Err(CmdError)` before
//! writing any reply; the dispatcher renders the variant once, in Redis's exact words where
//! Redis has words for it, and counts it. The connection stays open after any of these (a
//! client's mistake is not a protocol violation).

use std::fmt;

use crate::limits::{
    CHANNEL_NAME_LEN_MAX, KEYS_RESULTS_MAX, PATTERNS_PER_CLIENT_MAX, SUBSCRIPTIONS_PER_CLIENT_MAX,
    TRANSACTION_QUEUED_MAX, TTL_S_MAX, TTL_S_MIN, USER_ID_LEN_MAX, WATCHED_KEYS_MAX,
};
use crate::store::{DEVICE_ID_LEN_MAX, DEVICES_PER_USER_MAX, StoreError, UserIdError};

/// Client bytes as text for an error line, cut at `max_bytes`.
pub fn printable(bytes: &[u8], max_bytes: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max_bytes)]).into_owned()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmdError {
    // Dispatch.
    /// The name and Redis's listing of the first arguments (`'a' 'b' `).
    UnknownCommand {
        name: String,
        listed: String,
    },
    UnknownSubcommand {
        sub: String,
        command: &'static str,
    },
    WrongArity(&'static str),
    NoAuth,
    NotAllowedWhileSubscribed(&'static str),
    /// A write sent to a follower.
    ReadOnly,
    UnrecognizedReplconfOption(String),
    /// `PSYNC` from something that does not read presenced's stream (a Redis replica).
    ReplicaUnsupported,
    /// `REPLICAOF` with a bad port.
    InvalidMasterPort,
    MaxClientsReached,
    // Arguments.
    Syntax,
    NotAnInteger,
    UnsupportedOption(String),
    InvalidExpireTime(&'static str),
    ExpireNxWithOthers,
    ExpireGtWithLt,
    InvalidCursor,
    // Users and presence.
    UserId(UserIdError),
    Store(StoreError),
    InvalidAppStatus(String),
    InvalidManualStatus(String),
    InvalidDeviceId,
    InvalidTtl(String),
    // Presence keys.
    KeyOutsidePattern {
        key: String,
        pattern: String,
    },
    ValueTooLong(usize),
    WrongType,
    NotAStringKey(String),
    KeysTooMany,
    // Connections and clients.
    NoProto,
    ProtocolVersionNotInteger,
    HelloSyntax(String),
    HelloNoAuth,
    WrongPass,
    AuthWithoutPassword,
    DbIndexOutOfRange,
    BadClientName,
    UnrecognizedOption(String),
    BadLibField(&'static str),
    UnknownClientType(String),
    NoSuchUser(String),
    TimeoutNotInteger,
    TimeoutNegative,
    PauseMode,
    GetKeysUnknownCommand,
    GetKeysWrongArity,
    GetKeysNoKeys,
    /// Redis's text for a subcommand given too many arguments, naming the subcommand as typed
    /// and the command in capitals.
    SubcommandArguments {
        sub: String,
        command: String,
    },
    InvalidClientId,
    ClientIdNotPositive,
    NoSuchClient,
    // Pub/sub.
    ChannelNameTooLong(String),
    TooManySubscriptions,
    TooManyPatterns,
    /// `SSUBSCRIBE` run by an `EXEC` (Redis's words for a client that may not block).
    DenyBlocking(&'static str),
    // Transactions.
    MultiNested,
    ExecWithoutMulti,
    DiscardWithoutMulti,
    WatchInsideMulti,
    ExecAbort,
    NotAllowedInTransaction,
    TransactionTooLong,
    TooManyWatchedKeys,
    // Memory.
    /// Past `maxmemory`, a command that would add a user or a value (Redis's `denyoom`).
    OutOfMemory,
    /// Past `maxmemory`, an `EXEC` whose queue holds a `denyoom` command.
    ExecAbortOutOfMemory,
    /// `CONFIG SET maxmemory` with something that is not a memory value.
    MemoryValueInvalid,
    // Replication safety.
    /// A write on a leader with fewer fresh followers than `--min-replicas-to-write`.
    NoReplicas,
    /// Such a leader's `EXEC` whose queue holds a write.
    ExecAbortNoReplicas,
    /// `WAIT` on a follower.
    WaitOnReplica,
    /// `CONFIG SET maxmemory-policy` other than `noeviction`: presenced evicts nothing.
    EvictionPolicyUnsupported,
    // Server and persistence.
    NotifyEventsInvalid,
    ConfigImmutable(String),
    /// `CONFIG REWRITE` with no config file.
    NoConfigFile,
    /// `CONFIG REWRITE` could not write the file (the OS's reason).
    ConfigRewriteFailed(String),
    ConfigUnknown(String),
    /// The same parameter twice in one CONFIG SET (as typed).
    ConfigDuplicate(String),
    /// A CONFIG SET value that is not an integer, for the parameter named.
    ConfigNotInteger(&'static str),
    ConfigOutOfRange {
        name: &'static str,
        min: i64,
        max: i64,
    },
    SlowlogCount,
    FlushFailed(String),
    NoShutdownInProgress,
    ShutdownFailed,
    SaveInProgress,
    SnapshotFailed(String),
}

impl From<UserIdError> for CmdError {
    fn from(err: UserIdError) -> Self {
        CmdError::UserId(err)
    }
}

impl From<StoreError> for CmdError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::OutOfMemory => CmdError::OutOfMemory,
            err => CmdError::Store(err),
        }
    }
}

/// Redis's words for a command refused past `maxmemory` (`shared.oomerr`).
const OOM_TEXT: &str = "OOM command not allowed when used memory > 'maxmemory'.";
const NOREPLICAS_TEXT: &str = "NOREPLICAS Not enough good replicas to write.";

impl CmdError {
    /// Redis's text for an unknown command: the name and the first arguments, each quoted, up
    /// to about 128 bytes.
    pub fn unknown_command(args: &[bytes::Bytes]) -> CmdError {
        let mut listed = String::new();
        for arg in args.iter().skip(1) {
            if listed.len() >= 128 {
                break;
            }
            let room = 128 - listed.len();
            listed.push('\'');
            listed.push_str(&printable(arg, room));
            listed.push_str("' ");
        }
        let name = args.first().map_or(String::new(), |n| printable(n, 128));
        CmdError::UnknownCommand { name, listed }
    }
}

impl fmt::Display for CmdError {
    // One arm per variant, on purpose: every reply text sits in one table, checkable against
    // Redis in one read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CmdError::*;
        match self {
            UnknownCommand { name, listed } => write!(
                f,
                "ERR unknown command '{name}', with args beginning with: {listed}"
            ),
            UnknownSubcommand { sub, command } => write!(
                f,
                "ERR unknown subcommand '{sub}'. Try {} HELP.",
                command.to_ascii_uppercase()
            ),
            WrongArity(name) => write!(f, "ERR wrong number of arguments for '{name}' command"),
            NoAuth => f.write_str("NOAUTH Authentication required."),
            ReadOnly => f.write_str("READONLY You can't write against a read only replica."),
            ReplicaUnsupported => f.write_str(
                "ERR presenced streams only to presenced followers (REPLCONF capa presenced-v2): \
                 a Redis replica cannot load its snapshots",
            ),
            InvalidMasterPort => f.write_str("ERR Invalid master port"),
            UnrecognizedReplconfOption(option) => {
                write!(f, "ERR Unrecognized REPLCONF option: {option}")
            }
            NotAllowedWhileSubscribed(name) => write!(
                f,
                "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            ),
            MaxClientsReached => f.write_str("ERR max number of clients reached"),
            Syntax => f.write_str("ERR syntax error"),
            NotAnInteger => f.write_str("ERR value is not an integer or out of range"),
            UnsupportedOption(option) => write!(f, "ERR Unsupported option {option}"),
            InvalidExpireTime(command) => {
                write!(f, "ERR invalid expire time in '{command}' command")
            }
            ExpireNxWithOthers => f.write_str(
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ),
            ExpireGtWithLt => {
                f.write_str("ERR GT and LT options at the same time are not compatible")
            }
            InvalidCursor => f.write_str("ERR invalid cursor"),
            UserId(UserIdError::Empty) => f.write_str("ERR invalid user id: empty"),
            UserId(UserIdError::TooLong) => write!(
                f,
                "ERR invalid user id: longer than {USER_ID_LEN_MAX} bytes"
            ),
            Store(StoreError::TooManyDevices) => write!(
                f,
                "ERR too many devices for this user (at most {DEVICES_PER_USER_MAX})"
            ),
            OutOfMemory | Store(StoreError::OutOfMemory) => f.write_str(OOM_TEXT),
            ExecAbortOutOfMemory => {
                write!(f, "EXECABORT Transaction discarded because of: {OOM_TEXT}")
            }
            NoReplicas => f.write_str(NOREPLICAS_TEXT),
            ExecAbortNoReplicas => {
                write!(f, "EXECABORT Transaction discarded because of: {NOREPLICAS_TEXT}")
            }
            WaitOnReplica => f.write_str(
                "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.",
            ),
            MemoryValueInvalid => f.write_str(
                "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value",
            ),
            // Redis's text for a value outside the enumeration, which for presenced is one
            // value long.
            EvictionPolicyUnsupported => f.write_str(
                "ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: noeviction",
            ),
            InvalidAppStatus(status) => write!(
                f,
                "ERR invalid status '{status}': must be online, away or busy"
            ),
            InvalidManualStatus(status) => write!(
                f,
                "ERR invalid status '{status}': must be dnd, invisible, away, busy or none"
            ),
            InvalidDeviceId => write!(
                f,
                "ERR invalid device id: must be 1 to {DEVICE_ID_LEN_MAX} bytes"
            ),
            InvalidTtl(ttl) => write!(
                f,
                "ERR invalid TTL '{ttl}': must be an integer from {TTL_S_MIN} to {TTL_S_MAX} seconds"
            ),
            KeyOutsidePattern { key, pattern } => write!(
                f,
                "ERR key '{key}' is not a presence key: keys must match '{pattern}' (--key-pattern)"
            ),
            // Redis's text for a string over its 512 MB limit.
            ValueTooLong(_) => {
                f.write_str("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
            }
            WrongType => {
                f.write_str("WRONGTYPE Operation against a key holding the wrong kind of value")
            }
            NotAStringKey(key) => write!(
                f,
                "ERR presence keys hold strings only: '{key}' cannot be created as another type"
            ),
            KeysTooMany => write!(
                f,
                "ERR KEYS would return more than {KEYS_RESULTS_MAX} keys; use SCAN"
            ),
            NoProto => f.write_str("NOPROTO unsupported protocol version"),
            ProtocolVersionNotInteger => {
                f.write_str("ERR Protocol version is not an integer or out of range")
            }
            HelloSyntax(option) => write!(f, "ERR Syntax error in HELLO option '{option}'"),
            HelloNoAuth => f.write_str(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
                 HELLO AUTH <user> <pass> option can be used to authenticate the client and select \
                 the RESP protocol version at the same time",
            ),
            WrongPass => {
                f.write_str("WRONGPASS invalid username-password pair or user is disabled.")
            }
            AuthWithoutPassword => f.write_str(
                "ERR AUTH <password> called without any password configured for the default user. \
                 Are you sure your configuration is correct?",
            ),
            DbIndexOutOfRange => f.write_str("ERR DB index is out of range"),
            BadClientName => f.write_str(
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ),
            UnrecognizedOption(option) => write!(f, "ERR Unrecognized option '{option}'"),
            BadLibField(field) => write!(
                f,
                "ERR {field} cannot contain spaces, newlines or special characters."
            ),
            UnknownClientType(kind) => write!(f, "ERR Unknown client type '{kind}'"),
            NoSuchUser(user) => write!(f, "ERR No such user '{user}'"),
            TimeoutNotInteger => f.write_str("ERR timeout is not an integer or out of range"),
            TimeoutNegative => f.write_str("ERR timeout is negative"),
            PauseMode => f.write_str("ERR CLIENT PAUSE mode must be WRITE or ALL"),
            GetKeysUnknownCommand => f.write_str("ERR Invalid command specified"),
            GetKeysWrongArity => {
                f.write_str("ERR Invalid number of arguments specified for command")
            }
            GetKeysNoKeys => f.write_str("ERR The command has no key arguments"),
            SubcommandArguments { sub, command } => write!(
                f,
                "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try {command} HELP."
            ),
            InvalidClientId => f.write_str("ERR Invalid client ID"),
            ClientIdNotPositive => f.write_str("ERR client-id should be greater than 0"),
            NoSuchClient => f.write_str("ERR No such client"),
            ChannelNameTooLong(start) => write!(
                f,
                "ERR channel name '{start}...' is longer than {CHANNEL_NAME_LEN_MAX} bytes"
            ),
            TooManySubscriptions => write!(
                f,
                "ERR too many subscriptions for one client (at most {SUBSCRIPTIONS_PER_CLIENT_MAX})"
            ),
            TooManyPatterns => write!(
                f,
                "ERR too many patterns for one client (at most {PATTERNS_PER_CLIENT_MAX})"
            ),
            DenyBlocking(command) => {
                write!(f, "ERR {command} isn't allowed for a DENY BLOCKING client")
            }
            MultiNested => f.write_str("ERR MULTI calls can not be nested"),
            ExecWithoutMulti => f.write_str("ERR EXEC without MULTI"),
            DiscardWithoutMulti => f.write_str("ERR DISCARD without MULTI"),
            WatchInsideMulti => f.write_str("ERR WATCH inside MULTI is not allowed"),
            ExecAbort => {
                f.write_str("EXECABORT Transaction discarded because of previous errors.")
            }
            NotAllowedInTransaction => f.write_str("ERR Command not allowed inside a transaction"),
            TransactionTooLong => write!(
                f,
                "ERR too many commands queued in this transaction (at most {TRANSACTION_QUEUED_MAX})"
            ),
            TooManyWatchedKeys => write!(
                f,
                "ERR too many watched keys for one client (at most {WATCHED_KEYS_MAX})"
            ),
            NotifyEventsInvalid => f.write_str(
                "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'.",
            ),
            ConfigImmutable(name) => write!(
                f,
                "ERR CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config"
            ),
            NoConfigFile => f.write_str("ERR The server is running without a config file"),
            ConfigRewriteFailed(reason) => write!(f, "ERR Rewriting config file: {reason}"),
            ConfigUnknown(name) => write!(
                f,
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            ),
            ConfigDuplicate(name) => write!(
                f,
                "ERR CONFIG SET failed (possibly related to argument '{name}') - duplicate parameter"
            ),
            ConfigNotInteger(name) => write!(
                f,
                "ERR CONFIG SET failed (possibly related to argument '{name}') - argument couldn't be parsed into an integer"
            ),
            ConfigOutOfRange { name, min, max } => write!(
                f,
                "ERR CONFIG SET failed (possibly related to argument '{name}') - argument must be between {min} and {max} inclusive"
            ),
            SlowlogCount => f.write_str("ERR count should be greater than or equal to -1"),
            FlushFailed(err) => write!(f, "ERR FLUSHALL failed: {err}"),
            NoShutdownInProgress => f.write_str("ERR No shutdown in progress."),
            ShutdownFailed => f.write_str("ERR Errors trying to SHUTDOWN. Check logs."),
            SaveInProgress => f.write_str("ERR Background save already in progress"),
            SnapshotFailed(err) => write!(f, "ERR snapshot failed: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few renderings checked against the exact text Redis 7 sends, byte for byte.
    #[test]
    fn renders_redis_text() {
        let cases = [
            (CmdError::Syntax, "ERR syntax error"),
            (
                CmdError::NotAnInteger,
                "ERR value is not an integer or out of range",
            ),
            (
                CmdError::WrongArity("get"),
                "ERR wrong number of arguments for 'get' command",
            ),
            (
                CmdError::UnknownSubcommand {
                    sub: "foo".into(),
                    command: "client",
                },
                "ERR unknown subcommand 'foo'. Try CLIENT HELP.",
            ),
            (
                CmdError::unknown_command(&[
                    bytes::Bytes::from_static(b"nope"),
                    bytes::Bytes::from_static(b"a"),
                ]),
                "ERR unknown command 'nope', with args beginning with: 'a' ",
            ),
            (
                CmdError::InvalidExpireTime("set"),
                "ERR invalid expire time in 'set' command",
            ),
            (
                CmdError::from(StoreError::OutOfMemory),
                "OOM command not allowed when used memory > 'maxmemory'.",
            ),
            (
                CmdError::ExecAbortOutOfMemory,
                "EXECABORT Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'.",
            ),
            (
                CmdError::NoReplicas,
                "NOREPLICAS Not enough good replicas to write.",
            ),
            (
                CmdError::ExecAbortNoReplicas,
                "EXECABORT Transaction discarded because of: NOREPLICAS Not enough good replicas to write.",
            ),
            (
                CmdError::MemoryValueInvalid,
                "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value",
            ),
            (
                CmdError::ConfigDuplicate("maxmemory".into()),
                "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - duplicate parameter",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
    }
}
