//! Command-line flags, validated into the `Config` the server runs with.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;

use crate::dropin::KeyPattern;
use crate::limits;

/// presenced: an in-memory presence datastore that speaks the Redis protocol.
///
/// Each user is online while their heartbeats keep arriving and offline once the TTL runs
/// out. Any Redis client can talk to it: `redis-cli -p 6379 HEARTBEAT 42`.
#[derive(Parser, Debug, Clone)]
#[command(name = "presenced", version, about, long_about = None, args_override_self = true)]
pub struct Args {
    /// Address to listen on. Loopback by default: expose it to a network deliberately.
    #[arg(long, default_value = "127.0.0.1", env = "PRESENCED_BIND")]
    pub bind: IpAddr,

    /// TCP port to listen on (6379, Redis's, so clients work unchanged; 0 picks a free port).
    #[arg(long, default_value_t = 6379, env = "PRESENCED_PORT")]
    pub port: u16,

    /// Seconds a heartbeat keeps a user online when it names no TTL (1..=86400).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub ttl: u64,

    /// Seconds a user stays online after DISCONNECT (a dropped connection) before being
    /// declared offline; a heartbeat inside it cancels the disconnect (0..=86400).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub offline_grace: u64,

    /// Which keys are presence keys for the Redis string commands (SET/GET/MGET/...): `{id}`
    /// marks the user ID. `{id}` alone makes every key a presence key.
    #[arg(
        long,
        default_value = "user:{id}:presence",
        env = "PRESENCED_KEY_PATTERN"
    )]
    pub key_pattern: String,

    /// Directory for snapshot files (created if missing).
    #[arg(long, default_value = "presenced-data", env = "PRESENCED_DIR")]
    pub dir: std::path::PathBuf,

    /// Seconds between snapshots (fractions allowed); 0 turns periodic snapshots and the
    /// save at shutdown off (SAVE, BGSAVE and SHUTDOWN SAVE still work).
    #[arg(long, default_value_t = 60.0)]
    pub snapshot_interval: f64,

    /// Refuse to start when no good snapshot can be loaded from --dir (instead of starting
    /// empty). Damaged snapshots are always reported and never half-loaded.
    #[arg(long)]
    pub require_snapshot: bool,

    /// Check a snapshot file (every region's bounds and CRC), print what it holds and where,
    /// and exit: 0 if it is good, 1 if not. The server does not start.
    #[arg(long, value_name = "FILE")]
    pub check_snapshot: Option<std::path::PathBuf>,

    /// Dense slots: user IDs that are decimal integers below this live in an 8-byte slot.
    /// Reserved lazily: untouched slots cost no resident memory. Other IDs use a side table.
    #[arg(long, default_value_t = limits::CAPACITY_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=limits::CAPACITY_MAX))]
    pub capacity: u64,

    /// Worker threads serving connections (default: one per CPU core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,

    /// How connections are spread over the threads: `multi` (one work-stealing tokio runtime)
    /// or `per-core` (a single-threaded runtime per thread, each accepting on its own
    /// SO_REUSEPORT listener). docs/design/per-core-engine.md has the measurements.
    #[arg(long, value_enum, default_value_t = RuntimeKind::PerCore)]
    pub runtime: RuntimeKind,

    /// Back the slot arrays with transparent huge pages: fewer TLB misses on random slot
    /// writes when user IDs are dense, at the cost of touching memory 2 MiB at a time.
    #[arg(long)]
    pub huge_pages: bool,

    /// Shards the user space is split into (default: one per CPU core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub shards: Option<u64>,

    /// Require clients to AUTH with this password before any other command.
    #[arg(long, env = "PRESENCED_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,

    /// Most simultaneous client connections; one more is refused with an error.
    #[arg(long, default_value_t = limits::CLIENTS_MAX_DEFAULT)]
    pub maxclients: usize,

    /// Log level: error, warn, info, debug or trace (or a tracing filter directive).
    #[arg(long, default_value = "info", env = "PRESENCED_LOG")]
    pub log_level: String,

    /// Largest bulk string a client may send, in bytes (Redis's proto-max-bulk-len).
    #[arg(long, default_value_t = limits::BULK_LEN_MAX_DEFAULT)]
    pub proto_max_bulk_len: usize,

    /// Most arguments in one command (an MSTATUS of N users has N+1).
    #[arg(long, default_value_t = limits::ARGS_MAX_DEFAULT)]
    pub proto_max_args: usize,

    /// Most bytes of published messages queued for one subscriber (Redis's
    /// client-output-buffer-limit for pubsub clients); a subscriber over it is disconnected.
    /// 0: no limit.
    #[arg(long, default_value_t = limits::PUBSUB_OUTPUT_MAX_DEFAULT)]
    pub pubsub_output_limit: usize,

    /// Most unprocessed input buffered for one client, in bytes (Redis's
    /// client-query-buffer-limit); a client over it is disconnected.
    #[arg(long, default_value_t = limits::QUERY_BUFFER_MAX_DEFAULT)]
    pub client_query_buffer_limit: usize,

    /// Memory limit, in bytes or with Redis's units (`100mb`, `1gb`; `k`/`m`/`g` are powers of
    /// 1000, `kb`/`mb`/`gb` of 1024). Past it, commands that would add a user or a value are
    /// refused with Redis's OOM error; heartbeats of known users, reads and deletes go on.
    /// Used memory is the resident size. 0: no limit.
    #[arg(long, default_value = "0", value_parser = parse_memory_flag)]
    pub maxmemory: u64,
    /// Start as a follower of this leader, `HOST PORT` (Redis's `replicaof`); `REPLICAOF NO
    /// ONE` promotes it at run time. The leader must run the same --shards and --capacity
    #[arg(long, num_args = 2, value_names = ["HOST", "PORT"])]
    pub replicaof: Option<Vec<String>>,
    /// Password a follower sends its leader (`AUTH`), for a leader with --requirepass
    #[arg(long, env = "PRESENCED_MASTERAUTH")]
    pub masterauth: Option<String>,
    /// The address and port a follower asks its leader to show for it (INFO's `slaveN:`,
    /// ROLE), which Sentinel and clients then use: for a follower behind NAT or a proxy
    /// (Redis's replica-announce-ip / replica-announce-port)
    #[arg(long)]
    pub replica_announce_ip: Option<String>,
    #[arg(long)]
    pub replica_announce_port: Option<u16>,
    /// Source address of a follower's link to its leader (Redis's bind-source-addr)
    #[arg(long)]
    pub bind_source_addr: Option<IpAddr>,
    /// Bytes of the replication stream a leader keeps, so that a follower that reconnects
    /// within them resumes by offset instead of a full sync (Redis's repl-backlog-size)
    #[arg(long, default_value = "1mb", value_parser = parse_memory_flag)]
    pub repl_backlog_size: u64,
    /// Sentinel promotes the follower with the lowest priority first; 0 never (Redis's
    /// replica-priority)
    #[arg(long, default_value_t = 100)]
    pub replica_priority: u64,
    /// Seconds a promoted follower keeps every online user online at least, so heartbeats in
    /// flight to the failed leader can reach it: a failover declares nobody offline at once
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub promotion_grace: u64,
    /// Milliseconds a leader gathers changes before shipping them to followers again after a
    /// drain (0..=50). Heartbeats acknowledged within that window are what a clean SIGKILL of
    /// the leader can lose; 0 ships after every batch of commands (none older than a task
    /// switch is lost), at the cost of CPU and stream bytes while clients send one request at
    /// a time (docs/design/replication.md has the measured trade-off)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=50))]
    pub repl_coalesce_ms: u64,
    /// Refuse writes (`-NOREPLICAS`) and hold offline detection while fewer than this many
    /// followers acknowledged the stream within --min-replicas-max-lag seconds (Redis's
    /// min-replicas-to-write): an isolated leader then neither takes heartbeats it may lose
    /// nor declares users offline its followers will not hear of. 0: off.
    #[arg(long, default_value_t = 0)]
    pub min_replicas_to_write: u64,
    /// Seconds since a follower's last acknowledgement within which it counts as good for
    /// --min-replicas-to-write (Redis's min-replicas-max-lag). 0: the check is off.
    #[arg(long, default_value_t = 10)]
    pub min_replicas_max_lag: u64,

    /// Microseconds a command must run to be kept in the slow log (SLOWLOG GET): 0 keeps every
    /// command, -1 none. CONFIG SET slowlog-log-slower-than changes it at runtime.
    #[arg(long, default_value_t = limits::SLOWLOG_SLOWER_THAN_US_DEFAULT,
          allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(-1..))]
    pub slowlog_log_slower_than: i64,

    /// Keyspace notifications to publish, in Redis's letters (`Egx`, `KEA`, ...; empty: none).
    /// CONFIG SET notify-keyspace-events changes it at runtime.
    #[arg(long, default_value = "", value_parser = parse_notify_flag)]
    pub notify_keyspace_events: crate::dropin::NotifyFlags,

    /// Most entries the slow log keeps, newest first (0..=100000). CONFIG SET slowlog-max-len
    /// changes it at runtime.
    #[arg(long, default_value_t = limits::SLOWLOG_LEN_DEFAULT,
          value_parser = clap::value_parser!(u64).range(0..=limits::SLOWLOG_LEN_MAX))]
    pub slowlog_max_len: u64,
}

/// Redis's memory values (its `memtoull`): decimal digits, then nothing or `b` (bytes), `k`,
/// `m`, `g` (powers of 1000) or `kb`, `mb`, `gb` (powers of 1024), case-insensitive. No sign,
/// no fraction, nothing that overflows 64 bits. `None` for anything else. One difference:
/// Redis reads an empty value as 0; presenced refuses it, so that a lost argument cannot turn
/// a limit off.
pub fn parse_memory_bytes(text: &[u8]) -> Option<u64> {
    let digits_len = text.iter().take_while(|b| b.is_ascii_digit()).count();
    let (digits, unit) = text.split_at(digits_len);
    if digits.is_empty() {
        return None;
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_slice() {
        b"" | b"b" => 1,
        b"k" => 1000,
        b"kb" => 1024,
        b"m" => 1000 * 1000,
        b"mb" => 1024 * 1024,
        b"g" => 1000 * 1000 * 1000,
        b"gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    let value = std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?;
    value.checked_mul(multiplier)
}

fn parse_notify_flag(text: &str) -> Result<crate::dropin::NotifyFlags, String> {
    crate::dropin::NotifyFlags::parse(text.as_bytes())
        .ok_or_else(|| format!("'{text}' is not a set of keyspace notification letters"))
}

fn parse_memory_flag(text: &str) -> Result<u64, String> {
    parse_memory_bytes(text.as_bytes()).ok_or_else(|| {
        format!("'{text}' is not a memory value: bytes, or a number with k, kb, m, mb, g or gb")
    })
}

/// The runtime layout (`--runtime`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    Multi,
    PerCore,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub default_ttl_s: u64,
    pub offline_grace_s: u64,
    pub key_pattern: KeyPattern,
    pub dir: std::path::PathBuf,
    pub snapshot_interval: Option<std::time::Duration>,
    pub require_snapshot: bool,
    pub capacity: u64,
    pub shard_count: usize,
    pub thread_count: usize,
    pub huge_pages: bool,
    pub runtime: RuntimeKind,
    pub requirepass: Option<String>,
    pub clients_max: usize,
    pub log_level: String,
    pub bulk_len_max: usize,
    pub args_max: usize,
    pub query_buffer_max: usize,
    pub pubsub_output_max: usize,
    /// `--maxmemory` at start (0: none); `CONFIG SET maxmemory` changes the gauge's copy.
    pub maxmemory_bytes: u64,
    /// `--replicaof HOST PORT` at start: the leader to follow.
    pub replicaof: Option<(String, u16)>,
    pub masterauth: Option<String>,
    pub replica_announce_ip: Option<String>,
    pub replica_announce_port: Option<u16>,
    pub bind_source_addr: Option<IpAddr>,
    pub repl_backlog_bytes: usize,
    pub replica_priority: u64,
    pub promotion_grace_s: u64,
    pub repl_coalesce_ms: u64,
    /// `--min-replicas-to-write` / `--min-replicas-max-lag` at start (CONFIG SET changes
    /// `Replication`'s copies).
    pub min_replicas_to_write: u64,
    pub min_replicas_max_lag_s: u64,
    /// The slow log's settings at start (`SlowLog` holds them once running: CONFIG SET).
    pub slowlog_slower_than_us: i64,
    pub slowlog_len_max: u64,
    pub notify_keyspace_events: crate::dropin::NotifyFlags,
    /// The config file the server started from (absolute), which CONFIG REWRITE rewrites.
    pub config_file: Option<std::path::PathBuf>,
}

impl Config {
    pub fn from_args(args: Args) -> Result<Config, String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shard_count = args.shards.map_or(cores, |n| n as usize);
        let thread_count = args.threads.map_or(cores, |n| n as usize);
        if args.maxclients == 0 {
            return Err("--maxclients must be at least 1".to_string());
        }
        if args.proto_max_args < 2 {
            return Err("--proto-max-args must be at least 2".to_string());
        }
        let key_pattern = KeyPattern::parse(&args.key_pattern).map_err(|e| e.0)?;
        if !args.snapshot_interval.is_finite() || args.snapshot_interval < 0.0 {
            return Err("--snapshot-interval must be a number of seconds, 0 or more".to_string());
        }
        let snapshot_interval = (args.snapshot_interval > 0.0)
            .then(|| std::time::Duration::from_secs_f64(args.snapshot_interval));
        let replicaof = match args.replicaof.as_deref() {
            None => None,
            Some([host, port]) => Some((
                host.clone(),
                port.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("--replicaof: '{port}' is not a port"))?,
            )),
            Some(_) => return Err("--replicaof takes HOST PORT".to_string()),
        };
        let repl_backlog_bytes = usize::try_from(args.repl_backlog_size)
            .ok()
            .filter(|&b| b >= 16 * 1024)
            .ok_or_else(|| "--repl-backlog-size must be at least 16kb".to_string())?;
        if args.requirepass.as_deref() == Some("") {
            return Err("--requirepass must not be empty".to_string());
        }
        Ok(Config {
            listen_addr: SocketAddr::new(args.bind, args.port),
            default_ttl_s: args.ttl,
            offline_grace_s: args.offline_grace,
            key_pattern,
            dir: args.dir,
            snapshot_interval,
            require_snapshot: args.require_snapshot,
            capacity: args.capacity,
            shard_count,
            thread_count,
            huge_pages: args.huge_pages,
            runtime: args.runtime,
            requirepass: args.requirepass,
            clients_max: args.maxclients,
            log_level: args.log_level,
            bulk_len_max: args.proto_max_bulk_len,
            args_max: args.proto_max_args,
            query_buffer_max: args.client_query_buffer_limit,
            pubsub_output_max: args.pubsub_output_limit,
            maxmemory_bytes: args.maxmemory,
            replicaof,
            masterauth: args.masterauth,
            replica_announce_ip: args.replica_announce_ip,
            replica_announce_port: args.replica_announce_port,
            bind_source_addr: args.bind_source_addr,
            repl_backlog_bytes,
            replica_priority: args.replica_priority,
            promotion_grace_s: args.promotion_grace,
            repl_coalesce_ms: args.repl_coalesce_ms,
            min_replicas_to_write: args.min_replicas_to_write,
            min_replicas_max_lag_s: args.min_replicas_max_lag,
            slowlog_slower_than_us: args.slowlog_log_slower_than,
            slowlog_len_max: args.slowlog_max_len,
            notify_keyspace_events: args.notify_keyspace_events,
            config_file: None,
        })
    }

    /// Settings for tests: an ephemeral loopback port and a small store.
    #[cfg(test)]
    pub fn for_tests() -> Config {
        Config::from_args(Args::parse_from([
            "presenced",
            "--port",
            "0",
            "--capacity",
            "1048576",
        ]))
        .expect("test defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_are_safe() {
        let config = Config::from_args(Args::parse_from(["presenced"])).expect("defaults");
        assert!(config.listen_addr.ip().is_loopback());
        assert_eq!(config.listen_addr.port(), 6379);
        assert_eq!(config.default_ttl_s, 30);
        assert_eq!(config.capacity, 1 << 32);
        assert!(Args::try_parse_from(["presenced", "--ttl", "0"]).is_err());
        assert!(Args::try_parse_from(["presenced", "--ttl", "86401"]).is_err());
        assert_eq!(config.maxmemory_bytes, 0, "no memory limit by default");
        assert_eq!(config.slowlog_slower_than_us, 10_000);
        assert_eq!(config.slowlog_len_max, 128);
    }

    /// Memory values as Redis's config reads them (checked against redis-server 7.0.15's
    /// `CONFIG SET maxmemory`), and the flag taking them.
    #[test]
    fn memory_values_take_redis_units() {
        let cases: [(&str, Option<u64>); 16] = [
            ("0", Some(0)),
            ("1", Some(1)),
            ("100b", Some(100)),
            ("10k", Some(10_000)),
            ("10kb", Some(10_240)),
            ("100m", Some(100_000_000)),
            ("100mb", Some(104_857_600)),
            ("1g", Some(1_000_000_000)),
            ("1GB", Some(1_073_741_824)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("17179869184gb", None),
            ("-1", None),
            ("1.5mb", None),
            ("abc", None),
            ("", None),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_memory_bytes(text.as_bytes()), bytes, "{text:?}");
        }
        let args = Args::try_parse_from(["presenced", "--maxmemory", "64mb"]).expect("flag");
        assert_eq!(args.maxmemory, 64 << 20);
        assert!(Args::try_parse_from(["presenced", "--maxmemory", "64 MB"]).is_err());
    }

    /// The slow log's flags take Redis's ranges: -1 (off) and up for the threshold, and up to
    /// SLOWLOG_LEN_MAX entries.
    #[test]
    fn slowlog_flags() {
        let parse = |args: &[&str]| Args::try_parse_from([&["presenced"], args].concat());
        let args =
            parse(&["--slowlog-log-slower-than", "-1", "--slowlog-max-len", "0"]).expect("valid");
        assert_eq!(
            (args.slowlog_log_slower_than, args.slowlog_max_len),
            (-1, 0)
        );
        assert!(parse(&["--slowlog-log-slower-than", "-2"]).is_err());
        assert!(parse(&["--slowlog-max-len", "100001"]).is_err());
        assert!(parse(&["--slowlog-max-len", "-1"]).is_err());
    }
}
