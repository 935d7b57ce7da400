//! Every protocol and resource limit in one place, with the arithmetic that justifies it.
//!
//! Defaults follow Redis where Redis has the same knob, so that tools which read them with
//! `CONFIG GET` see familiar values; presenced-only limits say why they are what they are.

/// Longest inline command line (Redis's PROTO_INLINE_MAX_SIZE). Also bounds how far the decoder
/// scans for the CRLF of a `*N` or `$N` header before declaring it too big.
pub const INLINE_LINE_MAX: usize = 64 * 1024;

/// Default largest bulk string a client may send (Redis's `proto-max-bulk-len`, 512 MB). A
/// declared length above it is rejected before a single byte of the body is buffered.
pub const BULK_LEN_MAX_DEFAULT: usize = 512 * 1024 * 1024;

/// Default largest argument count of one command. 1,048,576 arguments leaves room for one
/// `MSTATUS` of a million users (10x the 100,000 that gateways are expected to send) while a
/// declared count above it is refused before any argument is buffered.
pub const ARGS_MAX_DEFAULT: usize = 1024 * 1024;

/// Default cap on a client's unprocessed input (Redis's `client-query-buffer-limit`, 1 GB).
/// A client whose pending request grows past it is disconnected.
pub const QUERY_BUFFER_MAX_DEFAULT: usize = 1024 * 1024 * 1024;

/// Before authentication a client may declare at most this many arguments (Redis's rule):
/// an unauthenticated peer cannot make the server buffer large requests.
pub const UNAUTHENTICATED_ARGS_MAX: usize = 10;

/// Before authentication a client may declare bulk strings of at most this many bytes.
pub const UNAUTHENTICATED_BULK_LEN_MAX: usize = 16 * 1024;

/// Default `--maxclients` (Redis's default).
pub const CLIENTS_MAX_DEFAULT: usize = 10_000;

/// Longest non-numeric user ID. 256 bytes holds any UUID, ULID or e-mail-like handle.
pub const USER_ID_LEN_MAX: usize = 256;

/// Heartbeat TTL bounds in seconds: at least one second, at most one day.
pub const TTL_S_MIN: u64 = 1;
pub const TTL_S_MAX: u64 = 86_400;

/// Default dense capacity: every 32-bit user ID. 2^32 slots x 8 bytes = 32 GiB of address
/// space, reserved with MAP_NORESERVE so only touched 4 KiB pages cost resident memory.
pub const CAPACITY_DEFAULT: u64 = 1 << 32;

/// Largest `--capacity`: 2^36 slots x 8 bytes = 512 GiB of address space, far below the
/// 128 TiB user address space of x86-64 and aarch64 Linux.
pub const CAPACITY_MAX: u64 = 1 << 36;

/// Replies one client may have waiting to be written before its input stops being read. Redis
/// keeps reading without limit for normal clients; 64 MiB lets a client send a pipeline of a
/// million commands before reading a reply, and bounds what one client can make us hold.
pub const OUTPUT_PENDING_MAX: usize = 64 * 1024 * 1024;

/// An output buffer that grew past this during a burst is given back once written.
pub const OUTPUT_KEEP_CAPACITY: usize = 1024 * 1024;

/// Published messages are coalesced into socket writes of about this size.
pub const PUSH_WRITE_BYTES: usize = 256 * 1024;

/// Size of one socket read.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Longest channel or pattern name. Presence channels are `presence:` plus a user ID of at
/// most 256 bytes; 1 KiB leaves room for application channels while bounding what one
/// subscription can pin in memory.
pub const CHANNEL_NAME_LEN_MAX: usize = 1024;

/// Most subscriptions one client may hold: 1,048,576 x ~100 bytes bounds one client's
/// subscription memory at ~100 MB, and one SUBSCRIBE with the maximum argument count fits.
pub const SUBSCRIPTIONS_PER_CLIENT_MAX: usize = 1024 * 1024;

/// Default cap on what may be queued for one subscriber, in bytes (Redis's hard
/// `client-output-buffer-limit pubsub`, 32 MB). A subscriber over it is disconnected.
pub const PUBSUB_OUTPUT_MAX_DEFAULT: usize = 32 * 1024 * 1024;

/// Largest drop-in value that is not a status word: Redis's largest string, 512 MB (its
/// default `proto-max-bulk-len`, which bounds a request's value before this does). Values are
/// kept byte for byte in the user's extras entry while they are online, counted in
/// `INFO memory` (`presence_values_bytes`), and a snapshot stores each with a 32-bit length.
pub const PRESENCE_VALUE_LEN_MAX: usize = 512 * 1024 * 1024;

/// Most keys one `KEYS` call may return; past it the call is refused in favour of `SCAN`.
pub const KEYS_RESULTS_MAX: usize = 1_000_000;

/// Most distinct patterns one client may subscribe to. Every published event is matched
/// against every pattern (as in Redis), so patterns cost O(events x patterns) of fan-out CPU;
/// 10,000 per client is far beyond what presence use needs and keeps that bounded.
pub const PATTERNS_PER_CLIENT_MAX: usize = 10_000;

/// Most commands one transaction may queue between `MULTI` and `EXEC`. Queued requests are
/// kept as their argument lists (shared `Bytes`, ~80 bytes of overhead each beyond their
/// contents): 1,000,000 of them pin ~80 MB besides the bytes the query buffer limit already
/// bounded, and no application batches more than that in one transaction.
pub const TRANSACTION_QUEUED_MAX: usize = 1_000_000;

/// Most keys one connection may `WATCH` at once: each costs an entry in its shard's watch
/// table (~64 bytes) and a lock of that shard at `EXEC`; 100,000 bounds one client's share.
pub const WATCHED_KEYS_MAX: usize = 100_000;

/// Deliveries (one message to one subscription) that may wait for the fan-out before writes
/// wait for it to catch up. A job's deliveries share one message and one subscriber list, so
/// a million pending deliveries cost little memory; the bound is of time: the fan-out makes
/// several million deliveries a second, so writes wait a fraction of a second at most. Redis
/// delivers inside PUBLISH itself; presenced's publishers are slowed to the fan-out's pace
/// instead of growing its queue.
pub const DELIVERIES_PENDING_MAX: u64 = 1_000_000;

/// Events handed over by the shards (presence transitions, keyspace notifications) that may
/// wait to be resolved before writes wait for the fan-out. One event holds its channel
/// (`presence:` + an ID of at most 256 bytes) and its JSON payload (~70 bytes plus the ID)
/// in two shared buffers, ~200 bytes for a typical ID: 262,144 events are ~50 MB.
///
/// The check runs before each write command, so what may be queued at once is bounded by
/// EVENTS_PENDING_MAX + threads x (events of one command) + one offline pass: a command
/// already past the check runs to its end, and one command publishes at most one event per
/// argument (`ARGS_MAX_DEFAULT`, 1,048,576: an MHEARTBEAT of a million new users); the
/// offline timer skips its tick while the fan-out is backlogged, and one pass declares at
/// most `store::EXPIRY_DUE_MAX` users per wheel and shard. With the defaults on 2 cores and 2
/// shards: 262,144 + 2 x 1,048,576 + 2 x 2 x 65,536 = 2.6M events, ~520 MB at the very worst
/// (two clients sending million-user MHEARTBEATs at the same instant), ~50 MB in practice.
pub const EVENTS_PENDING_MAX: u64 = 262_144;

/// How often the resident size `maxmemory` is judged by is read again, in milliseconds. A read
/// of `/proc/self/statm` costs about 10 µs, so ten a second cost 0.01% of a core. Between two
/// reads the store adds what it grew by (new 4 KiB slot pages, side-table entries, values) to
/// the last one, so what can pass the limit unseen is only other allocations of one period
/// (connection buffers, queued messages), and the next read corrects the figure.
pub const MEMORY_REFRESH_MS: u64 = 100;

/// Default `slowlog-log-slower-than` (Redis's): a command that runs 10 ms or longer is logged.
pub const SLOWLOG_SLOWER_THAN_US_DEFAULT: i64 = 10_000;

/// Default `slowlog-max-len` (Redis's): the slow log keeps its 128 newest entries.
pub const SLOWLOG_LEN_DEFAULT: u64 = 128;

/// Largest `slowlog-max-len`. Redis accepts any `long`; an entry here is at most 32 arguments of
/// at most 128 bytes plus the truncation notes (~5 KB) and typically a few short arguments, an
/// address and a name (~150 bytes): 100,000 entries hold ~15 MB typically and ~500 MB at worst,
/// where Redis's bound leaves the memory to the operator's care.
pub const SLOWLOG_LEN_MAX: u64 = 100_000;

/// A slow log entry keeps at most this many arguments; past it the last one kept says how many
/// more there were (Redis's `SLOWLOG_ENTRY_MAX_ARGC`).
pub const SLOWLOG_ARGS_MAX: usize = 32;

/// A slow log entry keeps at most this many bytes of an argument, then says how many more there
/// were (Redis's `SLOWLOG_ENTRY_MAX_STRING`).
pub const SLOWLOG_ARG_BYTES_MAX: usize = 128;

/// Rows of the per-command statistics (`INFO commandstats`): one per command and subcommand of
/// the table. presenced has about 120; the table asserts it fits. A row is 32 bytes, so a
/// thread's table is 8 KiB.
pub const COMMAND_ROWS_MAX: usize = 256;

/// Threads that may each keep a private table of per-command counters. A thread claims a table
/// the first time it runs a command and keeps it for its life (its counts outlive it): per-core
/// runtimes have `--threads` (at most 1,024) threads; the work-stealing runtime may bring in a
/// replacement worker each time a SAVE blocks one. Threads past this share one more table whose
/// counters are updated with atomic additions: slower, still exact. 4,096 tables reserve 32 KiB
/// of pointers; only claimed ones are allocated.
pub const COMMAND_TABLES_MAX: usize = 4096;
