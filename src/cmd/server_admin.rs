//! Server commands: DBSIZE, CONFIG, TIME, FLUSHALL, SHUTDOWN, SAVE, BGSAVE, LASTSAVE (and
//! INFO's table entry; `info.rs` renders it).

use super::{Args, CmdError, CmdResult, CommandSpec, Ctx, printable, reply_help};
use crate::clients::CloseReason;
use crate::clock;
use crate::dropin::NotifyFlags;
use crate::limits::SLOWLOG_LEN_MAX;
use crate::snapshot::run_blocking;

const fn admin(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    summary: &'static str,
    complexity: &'static str,
    handler: super::Handler,
) -> CommandSpec {
    CommandSpec::new(name, arity, flags, "server", summary, handler)
        .with_acl(&["@slow", "@admin", "@dangerous"])
        .with_complexity(complexity)
}

pub const INFO: CommandSpec = admin(
    "info",
    -1,
    &["loading", "stale"],
    "Returns information and statistics about the server.",
    "O(1)",
    super::info::info,
);
pub const DBSIZE: CommandSpec = admin(
    "dbsize",
    1,
    &["readonly", "fast"],
    "Returns the number of users online now.",
    "O(S) where S is the number of shards",
    dbsize,
);
pub const TIME: CommandSpec = admin(
    "time",
    1,
    &["loading", "stale", "fast"],
    "Returns the server time: Unix seconds and microseconds.",
    "O(1)",
    time,
);
pub const FLUSHALL: CommandSpec = admin(
    "flushall",
    -1,
    &["write"],
    "Forgets every user: presence and last-seen.",
    "O(S) where S is the number of shards",
    flushall,
);
pub const FLUSHDB: CommandSpec = admin(
    "flushdb",
    -1,
    &["write"],
    "Forgets every user: presenced has one database, so this is FLUSHALL.",
    "O(S) where S is the number of shards",
    flushall,
);
pub const SHUTDOWN: CommandSpec = admin(
    "shutdown",
    -1,
    &[
        "admin",
        "noscript",
        "loading",
        "stale",
        "no_multi",
        "allow_busy",
    ],
    "Stops the server.",
    "O(1)",
    shutdown,
);

pub const SAVE: CommandSpec = admin(
    "save",
    1,
    &["admin", "noscript", "no_async_loading", "no_multi"],
    "Writes a snapshot now and replies when it is durable.",
    "O(N) where N is the number of users ever seen",
    save,
);
pub const BGSAVE: CommandSpec = admin(
    "bgsave",
    -1,
    &["admin", "noscript", "no_async_loading"],
    "Starts writing a snapshot in the background.",
    "O(1) to start",
    bgsave,
);
pub const LASTSAVE: CommandSpec = admin(
    "lastsave",
    1,
    &["loading", "stale", "fast"],
    "Returns when the last successful snapshot started, in Unix seconds.",
    "O(1)",
    lastsave,
);

pub const CONFIG: CommandSpec = CommandSpec::container(
    "config",
    "server",
    "2.0.0",
    "A container for server configuration commands.",
    &[
        admin(
            "config|get",
            -3,
            &["admin", "noscript", "loading", "stale"],
            "Returns the effective values of configuration parameters.",
            "O(N) where N is the number of parameters",
            config_get,
        ),
        admin(
            "config|set",
            -4,
            &["admin", "noscript", "loading", "stale"],
            "Sets configuration parameters at runtime.",
            "O(N) where N is the number of parameters",
            config_set,
        ),
        admin(
            "config|resetstat",
            2,
            &["admin", "noscript", "loading", "stale"],
            "Resets the server's statistics.",
            "O(1)",
            config_resetstat,
        ),
        admin(
            "config|rewrite",
            2,
            &["admin", "noscript", "loading", "stale"],
            "Persists the effective configuration to file.",
            "O(1)",
            config_rewrite,
        ),
        admin(
            "config|help",
            2,
            &["loading", "stale"],
            "Returns helpful text about the subcommands.",
            "O(1)",
            config_help,
        ),
    ],
);

pub const MEMORY: CommandSpec = CommandSpec::container(
    "memory",
    "server",
    "4.0.0",
    "A container for memory diagnostics commands.",
    &[
        CommandSpec::new(
            "memory|usage",
            -3,
            &["readonly"],
            "server",
            "Estimates the bytes a presence key holds (nil if it does not exist).",
            memory_usage,
        )
        .with_keys(2, 2, 1)
        .with_acl(&["@read", "@slow"])
        .with_since("4.0.0"),
        CommandSpec::new(
            "memory|help",
            2,
            &["loading", "stale"],
            "server",
            "Returns helpful text about the subcommands.",
            memory_help,
        )
        .with_acl(&["@slow"])
        .with_since("4.0.0"),
    ],
);

/// `LATENCY`: Redis's latency monitor is off unless configured (`latency-monitor-threshold 0`),
/// and presenced has none, so there are never latency events to report: LATEST and HISTORY are
/// empty and RESET resets none. Monitoring agents call them; presenced's own lag figures are in
/// `INFO presence`.
pub const LATENCY: CommandSpec = CommandSpec::container(
    "latency",
    "server",
    "2.8.13",
    "A container for latency diagnostics commands.",
    &[
        admin(
            "latency|latest",
            2,
            &["admin", "noscript", "loading", "stale"],
            "Returns the latest latency samples for all events (none: no monitor runs).",
            "O(1)",
            latency_empty,
        ),
        admin(
            "latency|history",
            3,
            &["admin", "noscript", "loading", "stale"],
            "Returns timestamp-latency samples for an event (none: no monitor runs).",
            "O(1)",
            latency_empty,
        ),
        admin(
            "latency|reset",
            -2,
            &["admin", "noscript", "loading", "stale"],
            "Resets the latency data of events; replies how many were reset (0).",
            "O(1)",
            latency_reset,
        ),
        admin(
            "latency|help",
            2,
            &["loading", "stale"],
            "Returns helpful text about the subcommands.",
            "O(1)",
            latency_help,
        ),
    ],
);

fn latency_empty(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    ctx.out.array(0);
    Ok(())
}

fn latency_reset(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    ctx.out.integer(0);
    Ok(())
}

fn latency_help(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    reply_help(
        ctx.out,
        &[
            "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "LATEST",
            "    Return the latest latency samples for all events.",
            "HISTORY <event>",
            "    Return timestamp-latency samples for the <event>.",
            "RESET [<event> ...]",
            "    Reset latency data of one or more <event> classes.",
            "HELP",
            "    Print this help.",
        ],
    )
}

/// `MEMORY USAGE key [SAMPLES count]`: SAMPLES is accepted and has nothing to sample (a
/// presence key's parts are few and counted exactly).
fn memory_usage(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let key = args.required()?;
    if args.eat(b"SAMPLES") && args.integer()? < 0 {
        return Err(CmdError::Syntax);
    }
    args.finish()?;
    let bytes = match super::presence_user(ctx, key) {
        Ok(user) => ctx.shared.store.key_memory_bytes(user, ctx.now_ms),
        // A key outside the presence pattern cannot exist here.
        Err(_) => None,
    };
    match bytes {
        Some(bytes) => ctx.out.integer(bytes as i64),
        None => ctx.out.null(),
    }
    Ok(())
}

fn memory_help(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    reply_help(
        ctx.out,
        &[
            "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value.",
            "HELP",
            "    Print this help.",
        ],
    )
}

fn dbsize(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    ctx.out.integer(ctx.shared.store.online_count() as i64);
    Ok(())
}

fn time(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    let now_us = clock::now_us();
    ctx.out.array(2);
    ctx.out.bulk((now_us / 1_000_000).to_string().as_bytes());
    ctx.out.bulk((now_us % 1_000_000).to_string().as_bytes());
    Ok(())
}

fn flushall(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    if let Some(mode) = args.next()
        && !mode.eq_ignore_ascii_case(b"ASYNC")
        && !mode.eq_ignore_ascii_case(b"SYNC")
    {
        return Err(CmdError::Syntax);
    }
    args.finish()?;
    // Followers flush at the same point of the stream: changes before it on one side, after
    // it on the other.
    let (store, now_ms) = (ctx.shared.store, ctx.now_ms);
    match ctx
        .shared
        .replication
        .with_frame(&[b"FLUSHALL"], || store.flush(now_ms))
    {
        Ok(()) => {
            // The slot pages and tables were just given back: the next command past a
            // maxmemory reached before must see the figure they leave.
            ctx.shared.memory.refresh();
            tracing::info!(
                client = ctx.session.id(),
                "FLUSHALL/FLUSHDB: every user forgotten"
            );
            ctx.out.ok();
            Ok(())
        }
        Err(err) => {
            tracing::error!(%err, "FLUSHALL could not map fresh slot memory");
            Err(CmdError::FlushFailed(err.to_string()))
        }
    }
}

/// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE]`: saves a snapshot first when snapshots are on (or
/// `SAVE` asks), unless `NOSAVE`; a failed save refuses the shutdown unless `FORCE`, as in
/// Redis, so the last state is not lost by accident.
fn shutdown(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let (mut save, mut nosave, mut force) = (false, false, false);
    for arg in args.rest() {
        if arg.eq_ignore_ascii_case(b"ABORT") {
            return Err(CmdError::NoShutdownInProgress);
        } else if arg.eq_ignore_ascii_case(b"SAVE") {
            save = true;
        } else if arg.eq_ignore_ascii_case(b"NOSAVE") {
            nosave = true;
        } else if arg.eq_ignore_ascii_case(b"FORCE") {
            force = true;
        } else if !arg.eq_ignore_ascii_case(b"NOW") {
            return Err(CmdError::Syntax);
        }
    }
    if save && nosave {
        return Err(CmdError::Syntax);
    }
    tracing::info!(client = ctx.session.id(), "SHUTDOWN requested");
    if (save || ctx.shared.persistence.enabled()) && !nosave {
        let saved = run_blocking(|| {
            ctx.shared.persistence.save_for_shutdown(
                ctx.shared.store,
                clock::now_ms(),
                ctx.shared.replication.mark(),
            )
        });
        if saved.is_err() && !force {
            return Err(CmdError::ShutdownFailed);
        }
    }
    // As in Redis, a successful SHUTDOWN sends no reply: the connection just closes.
    ctx.close(CloseReason::ShutdownCommand);
    Ok(())
}

/// `SAVE`: a snapshot now, on this connection (the server keeps serving everyone else).
fn save(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    if !ctx.shared.persistence.try_begin() {
        return Err(CmdError::SaveInProgress);
    }
    run_blocking(|| {
        ctx.shared.persistence.save_claimed(
            ctx.shared.store,
            clock::now_ms(),
            ctx.shared.replication.mark(),
        )
    })
    .map_err(|err| CmdError::SnapshotFailed(err.to_string()))?;
    ctx.out.ok();
    Ok(())
}

fn bgsave(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    if let Some(option) = args.next()
        && !option.eq_ignore_ascii_case(b"SCHEDULE")
    {
        return Err(CmdError::Syntax);
    }
    if !ctx.shared.persistence.try_begin() {
        return Err(CmdError::SaveInProgress);
    }
    ctx.shared.persistence.background_request.notify_one();
    ctx.out.simple("Background saving started");
    Ok(())
}

fn lastsave(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    let last_ms = ctx
        .shared
        .persistence
        .status()
        .last_save
        .as_ref()
        .map_or(ctx.shared.identity.started_ms, |r| r.started_ms);
    ctx.out.integer((last_ms / 1000) as i64);
    Ok(())
}

/// The parameters `CONFIG GET` knows, with their current values.
fn config_params(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let config = ctx.shared.config;
    vec![
        ("bind", config.listen_addr.ip().to_string()),
        ("port", ctx.shared.identity.listen_addr.port().to_string()),
        (
            "requirepass",
            config.requirepass.clone().unwrap_or_default(),
        ),
        ("maxclients", config.clients_max.to_string()),
        ("proto-max-bulk-len", config.bulk_len_max.to_string()),
        ("proto-max-args", config.args_max.to_string()),
        (
            "client-query-buffer-limit",
            config.query_buffer_max.to_string(),
        ),
        (
            "client-output-buffer-limit",
            format!(
                "normal 0 0 0 slave 0 0 0 pubsub {} {} 0",
                config.pubsub_output_max, config.pubsub_output_max
            ),
        ),
        ("offline-grace", config.offline_grace_s.to_string()),
        ("ttl", config.default_ttl_s.to_string()),
        ("capacity", config.capacity.to_string()),
        ("shards", ctx.shared.store.shard_count().to_string()),
        ("databases", "1".to_string()),
        ("save", String::new()),
        ("appendonly", "no".to_string()),
        ("timeout", "0".to_string()),
        ("tcp-keepalive", "0".to_string()),
        ("maxmemory", ctx.shared.memory.maxmemory_bytes().to_string()),
        ("maxmemory-policy", "noeviction".to_string()),
        (
            "notify-keyspace-events",
            ctx.shared.keyspace.flags().to_letters(),
        ),
        (
            "key-pattern",
            ctx.shared.keyspace.pattern.as_str().to_string(),
        ),
        ("cluster-enabled", "no".to_string()),
        ("hz", "10".to_string()),
        ("loglevel", config.log_level.clone()),
        (
            "slowlog-log-slower-than",
            ctx.shared.slowlog.slower_than_us().to_string(),
        ),
        ("slowlog-max-len", ctx.shared.slowlog.len_max().to_string()),
        (
            "min-replicas-to-write",
            ctx.shared.replication.min_replicas_to_write().to_string(),
        ),
        (
            "min-replicas-max-lag",
            ctx.shared.replication.min_replicas_max_lag_s().to_string(),
        ),
        // Redis's older names for the same two settings.
        (
            "min-slaves-to-write",
            ctx.shared.replication.min_replicas_to_write().to_string(),
        ),
        (
            "min-slaves-max-lag",
            ctx.shared.replication.min_replicas_max_lag_s().to_string(),
        ),
    ]
}

/// The parameters `CONFIG SET` may change; every other one is fixed at start.
const SETTABLE: &[&str] = &[
    "notify-keyspace-events",
    "maxmemory",
    "maxmemory-policy",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "min-replicas-to-write",
    "min-replicas-max-lag",
    "min-slaves-to-write",
    "min-slaves-max-lag",
];

/// Parameters whose value is a secret: never shown in the slow log, however `CONFIG SET` ends
/// (Redis's sensitive configs).
const SENSITIVE: &[&str] = &["requirepass"];

/// A new value for a parameter `CONFIG SET` may change, checked.
enum Setting {
    Notify(NotifyFlags),
    MaxMemory(u64),
    /// `noeviction`, the only policy: presenced evicts nothing.
    NoEviction,
    SlowerThanUs(i64),
    LenMax(u64),
    MinReplicasToWrite(u64),
    MinReplicasMaxLagS(u64),
}

impl Setting {
    /// Checks `value` for the parameter `name` (one of `SETTABLE`), with Redis's words.
    fn parse(name: &'static str, value: &[u8]) -> Result<Setting, CmdError> {
        let integer = || crate::resp::parse_integer(value).ok_or(CmdError::ConfigNotInteger(name));
        match name {
            "notify-keyspace-events" => NotifyFlags::parse(value)
                .map(Setting::Notify)
                .ok_or(CmdError::NotifyEventsInvalid),
            "maxmemory" => crate::config::parse_memory_bytes(value)
                .map(Setting::MaxMemory)
                .ok_or(CmdError::MemoryValueInvalid),
            "maxmemory-policy" if value.eq_ignore_ascii_case(b"noeviction") => {
                Ok(Setting::NoEviction)
            }
            "maxmemory-policy" => Err(CmdError::EvictionPolicyUnsupported),
            "slowlog-log-slower-than" => match integer()? {
                n if n >= -1 => Ok(Setting::SlowerThanUs(n)),
                _ => Err(CmdError::ConfigOutOfRange {
                    name,
                    min: -1,
                    max: i64::MAX,
                }),
            },
            "min-replicas-to-write"
            | "min-slaves-to-write"
            | "min-replicas-max-lag"
            | "min-slaves-max-lag" => match u64::try_from(integer()?) {
                Ok(n) if n <= i32::MAX as u64 => Ok(if name.ends_with("to-write") {
                    Setting::MinReplicasToWrite(n)
                } else {
                    Setting::MinReplicasMaxLagS(n)
                }),
                _ => Err(CmdError::ConfigOutOfRange {
                    name,
                    min: 0,
                    max: i32::MAX as i64,
                }),
            },
            _ => match u64::try_from(integer()?) {
                Ok(n) if n <= SLOWLOG_LEN_MAX => Ok(Setting::LenMax(n)),
                _ => Err(CmdError::ConfigOutOfRange {
                    name,
                    min: 0,
                    max: SLOWLOG_LEN_MAX as i64,
                }),
            },
        }
    }

    fn apply(self, ctx: &Ctx<'_>) {
        match self {
            Setting::Notify(flags) => ctx.shared.keyspace.set_flags(flags),
            Setting::MaxMemory(bytes) => {
                ctx.shared.memory.set_maxmemory_bytes(bytes);
                tracing::info!(
                    client = ctx.session.id(),
                    maxmemory_bytes = bytes,
                    "CONFIG SET maxmemory"
                );
            }
            Setting::NoEviction => {}
            Setting::SlowerThanUs(us) => ctx.shared.slowlog.set_slower_than_us(us),
            Setting::LenMax(len) => ctx.shared.slowlog.set_len_max(len),
            Setting::MinReplicasToWrite(n) => {
                ctx.shared.replication.set_min_replicas(Some(n), None)
            }
            Setting::MinReplicasMaxLagS(s) => {
                ctx.shared.replication.set_min_replicas(None, Some(s))
            }
        }
    }
}

/// Replies with every parameter matching any of the patterns, each once (a map in RESP3).
fn config_get(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let patterns = args.rest();
    let params = config_params(ctx);
    let matched: Vec<&(&str, String)> = params
        .iter()
        .filter(|(name, _)| {
            patterns
                .iter()
                .any(|p| crate::glob::glob_match(p, name.as_bytes(), true))
        })
        .collect();
    ctx.out.map(matched.len());
    for (name, value) in matched {
        ctx.out.bulk(name.as_bytes());
        ctx.out.bulk(value.as_bytes());
    }
    Ok(())
}

/// `SETTABLE` parameters change at runtime; every other setting is fixed at start. As in
/// Redis, every name is looked at first (the first unknown, immutable or repeated one is the
/// error, and every secret value is redacted whatever the error), then every value is checked,
/// and only then are they all applied.
fn config_set(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let first_pair_at = args.position();
    let pairs = args.rest();
    if !pairs.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let params = config_params(ctx);
    let mut first_error = None;
    let mut named: Vec<(&'static str, &[u8])> = Vec::with_capacity(pairs.len() / 2);
    for (i, pair) in pairs.chunks_exact(2).enumerate() {
        let [name, value] = pair else {
            continue;
        };
        let Some(canonical) = params
            .iter()
            .map(|(n, _)| *n)
            .find(|n| n.as_bytes().eq_ignore_ascii_case(name))
        else {
            first_error.get_or_insert(CmdError::ConfigUnknown(printable(name, 128)));
            continue;
        };
        if SENSITIVE.contains(&canonical) {
            ctx.redact(first_pair_at + 2 * i + 1);
        }
        if first_error.is_some() {
            continue;
        }
        if !SETTABLE.contains(&canonical) {
            first_error = Some(CmdError::ConfigImmutable(printable(name, 128)));
        } else if named.iter().any(|(n, _)| *n == canonical) {
            first_error = Some(CmdError::ConfigDuplicate(printable(name, 128)));
        } else {
            named.push((canonical, value));
        }
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    let settings = named
        .into_iter()
        .map(|(name, value)| Setting::parse(name, value))
        .collect::<Result<Vec<_>, _>>()?;
    for setting in settings {
        setting.apply(ctx);
    }
    ctx.out.ok();
    Ok(())
}

/// The settings `CONFIG REWRITE` writes back: the role, and what `CONFIG SET` can change
/// (under their canonical names; `maxmemory-policy` has one value and no flag).
const REWRITTEN: &[&str] = &[
    "notify-keyspace-events",
    "maxmemory",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "min-replicas-to-write",
    "min-replicas-max-lag",
];

/// `CONFIG REWRITE`: writes the role (`replicaof HOST PORT` on a follower, no such line on a
/// leader) and the runtime-settable settings into the config file the server started from,
/// keeping its comments and every other line (`config_file::rewrite`). Sentinel sends it inside
/// the transaction that reconfigures a server after a failover, so a restarted follower stays a
/// follower of the new leader. Settings fixed at start keep the file's lines: a flag given on
/// the command line only is not written into the file. Without a config file it answers as
/// Redis does (a runtime error, which Sentinel's transaction tolerates).
fn config_rewrite(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    let Some(path) = ctx.shared.config.config_file.as_deref() else {
        return Err(CmdError::NoConfigFile);
    };
    let params = config_params(ctx);
    let mut managed: Vec<crate::config_file::Managed> = REWRITTEN
        .iter()
        .filter_map(|&name| {
            let (_, value) = params.iter().find(|(n, _)| *n == name)?;
            Some(crate::config_file::Managed {
                name,
                words: Some(vec![value.clone()]),
                is_default: crate::config_file::is_default(name, value),
            })
        })
        .collect();
    let role = match ctx.shared.replication.role() {
        crate::replication::Role::Leader => None,
        crate::replication::Role::Follower { host, port } => Some(vec![host, port.to_string()]),
    };
    managed.push(crate::config_file::Managed {
        name: "replicaof",
        is_default: role.is_none(),
        words: role,
    });
    crate::config_file::rewrite(path, &managed)
        .map_err(|e| CmdError::ConfigRewriteFailed(e.to_string()))?;
    tracing::info!(file = %path.display(), "CONFIG REWRITE executed with success");
    ctx.out.ok();
    Ok(())
}

fn config_resetstat(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    ctx.shared.stats.reset();
    ctx.out.ok();
    Ok(())
}

fn config_help(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    reply_help(
        ctx.out,
        &[
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value> (notify-keyspace-events, maxmemory,",
            "    maxmemory-policy, the slowlog-* and min-replicas-* ones; the others are fixed",
            "    at start).",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
            "HELP",
            "    Print this help.",
        ],
    )
}
