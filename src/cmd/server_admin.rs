//! Server commands: INFO, DBSIZE, CONFIG, TIME, FLUSHALL, SHUTDOWN.

use std::fmt::Write as _;

use bytes::Bytes;

use super::{CommandSpec, Ctx, SYNTAX_ERROR, printable, reply_help};
use crate::clock;
use crate::dropin::NotifyFlags;
use crate::session::Flow;
use crate::stats::Stats;

/// The Redis version presenced reports where tools expect one (`INFO redis_version`): the
/// command surface it implements matches Redis 7.2 for the commands it has.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

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
    info,
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

pub const CONFIG: CommandSpec = CommandSpec {
    name: "config",
    arity: -2,
    flags: &[],
    first_key: 0,
    last_key: 0,
    key_step: 0,
    acl_categories: &["@slow"],
    group: "server",
    since: "2.0.0",
    summary: "A container for server configuration commands.",
    complexity: "Depends on subcommand.",
    handler: |_, _| {},
    subcommands: &[
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
            "config|help",
            2,
            &["loading", "stale"],
            "Returns helpful text about the subcommands.",
            "O(1)",
            config_help,
        ),
    ],
    arguments: &[],
};

fn dbsize(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    ctx.out.integer(ctx.server.store.online_count() as i64);
}

fn time(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    let now_us = clock::now_us();
    ctx.out.array(2);
    ctx.out.bulk((now_us / 1_000_000).to_string().as_bytes());
    ctx.out.bulk((now_us % 1_000_000).to_string().as_bytes());
}

fn flushall(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let mode_ok = match args.len() {
        1 => true,
        2 => args[1].eq_ignore_ascii_case(b"ASYNC") || args[1].eq_ignore_ascii_case(b"SYNC"),
        _ => false,
    };
    if !mode_ok {
        return ctx.out.error(SYNTAX_ERROR);
    }
    match ctx.server.store.flush(ctx.now_ms) {
        Ok(()) => {
            tracing::info!(client = ctx.session.id(), "FLUSHALL: every user forgotten");
            ctx.out.ok();
        }
        Err(err) => {
            tracing::error!(%err, "FLUSHALL could not map fresh slot memory");
            ctx.out.error(&format!("ERR FLUSHALL failed: {err}"));
        }
    }
}

/// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE]`: saves a snapshot first when snapshots are on (or
/// `SAVE` asks), unless `NOSAVE`; a failed save refuses the shutdown unless `FORCE`, as in
/// Redis, so the last state is not lost by accident.
fn shutdown(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let (mut save, mut nosave, mut force) = (false, false, false);
    for arg in &args[1..] {
        if arg.eq_ignore_ascii_case(b"ABORT") {
            return ctx.out.error("ERR No shutdown in progress.");
        } else if arg.eq_ignore_ascii_case(b"SAVE") {
            save = true;
        } else if arg.eq_ignore_ascii_case(b"NOSAVE") {
            nosave = true;
        } else if arg.eq_ignore_ascii_case(b"FORCE") {
            force = true;
        } else if !arg.eq_ignore_ascii_case(b"NOW") {
            return ctx.out.error(SYNTAX_ERROR);
        }
    }
    if save && nosave {
        return ctx.out.error(SYNTAX_ERROR);
    }
    tracing::info!(client = ctx.session.id(), "SHUTDOWN requested");
    if (save || ctx.server.persistence.enabled()) && !nosave {
        let saved = crate::server::run_blocking(|| ctx.server.save_for_shutdown());
        if saved.is_err() && !force {
            return ctx.out.error("ERR Errors trying to SHUTDOWN. Check logs.");
        }
    }
    // As in Redis, a successful SHUTDOWN sends no reply: the connection just closes.
    ctx.flow = Flow::Shutdown;
}

/// `SAVE`: a snapshot now, on this connection (the server keeps serving everyone else).
fn save(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    if !ctx.server.persistence.try_begin() {
        return ctx.out.error("ERR Background save already in progress");
    }
    let saved = crate::server::run_blocking(|| {
        ctx.server
            .persistence
            .save_claimed(&ctx.server.store, clock::now_ms())
    });
    match saved {
        Ok(_) => ctx.out.ok(),
        Err(err) => ctx.out.error(&format!("ERR snapshot failed: {err}")),
    }
}

fn bgsave(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    if args.len() == 2 && !args[1].eq_ignore_ascii_case(b"SCHEDULE") {
        return ctx.out.error(SYNTAX_ERROR);
    }
    if !ctx.server.persistence.try_begin() {
        return ctx.out.error("ERR Background save already in progress");
    }
    ctx.server.persistence.background_request.notify_one();
    ctx.out.simple("Background saving started");
}

fn lastsave(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    let last_ms = ctx
        .server
        .persistence
        .status()
        .last_save
        .as_ref()
        .map_or(ctx.server.started_ms, |r| r.started_ms);
    ctx.out.integer((last_ms / 1000) as i64);
}

/// The parameters `CONFIG GET` knows, with their current values.
fn config_params(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let config = &ctx.server.config;
    vec![
        ("bind", config.listen_addr.ip().to_string()),
        ("port", ctx.server.listen_addr.port().to_string()),
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
        ("shards", ctx.server.store.shard_count().to_string()),
        ("databases", "1".to_string()),
        ("save", String::new()),
        ("appendonly", "no".to_string()),
        ("timeout", "0".to_string()),
        ("tcp-keepalive", "0".to_string()),
        ("maxmemory", "0".to_string()),
        ("maxmemory-policy", "noeviction".to_string()),
        (
            "notify-keyspace-events",
            ctx.server.keyspace.flags().to_letters(),
        ),
        (
            "key-pattern",
            ctx.server.keyspace.pattern.as_str().to_string(),
        ),
        ("cluster-enabled", "no".to_string()),
        ("hz", "10".to_string()),
        ("loglevel", config.log_level.clone()),
    ]
}

/// Replies with every parameter matching any of the patterns, each once (a map in RESP3).
fn config_get(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let params = config_params(ctx);
    let matched: Vec<&(&str, String)> = params
        .iter()
        .filter(|(name, _)| {
            args[2..]
                .iter()
                .any(|p| crate::glob::glob_match(p, name.as_bytes(), true))
        })
        .collect();
    ctx.out.map(matched.len());
    for (name, value) in matched {
        ctx.out.bulk(name.as_bytes());
        ctx.out.bulk(value.as_bytes());
    }
}

/// Only `notify-keyspace-events` changes at runtime; every other setting is fixed at start.
/// All pairs are checked before any is applied, as Redis does.
fn config_set(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    if !args.len().is_multiple_of(2) {
        return ctx.out.error(&super::wrong_arity("config|set"));
    }
    let params = config_params(ctx);
    let mut notify = None;
    for pair in args[2..].chunks(2) {
        let (name, value) = (&pair[0], &pair[1]);
        if name.eq_ignore_ascii_case(b"notify-keyspace-events") {
            match NotifyFlags::parse(value) {
                Some(flags) => notify = Some(flags),
                None => {
                    return ctx.out.error(
                        "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'.",
                    );
                }
            }
        } else if params
            .iter()
            .any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        {
            return ctx.out.error(&format!(
                "ERR CONFIG SET failed (possibly related to argument '{}') - can't set immutable config",
                printable(name, 128)
            ));
        } else {
            return ctx.out.error(&format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                printable(name, 128)
            ));
        }
    }
    if let Some(flags) = notify {
        ctx.server.keyspace.set_flags(flags);
    }
    ctx.out.ok();
}

fn config_resetstat(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    let stats = &ctx.server.stats;
    for counter in [
        &stats.connections_received,
        &stats.connections_rejected,
        &stats.commands_processed,
        &stats.protocol_errors,
        &stats.heartbeats,
        &stats.status_lookups,
        &stats.logouts,
        &stats.users_expired,
        &stats.net_input_bytes,
        &stats.net_output_bytes,
    ] {
        counter.store(0, std::sync::atomic::Ordering::Relaxed);
    }
    ctx.out.ok();
}

fn config_help(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    reply_help(
        ctx.out,
        &[
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value> (presenced's are fixed at start).",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
            "HELP",
            "    Print this help.",
        ],
    );
}

const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "presence",
    "keyspace",
];

fn info(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let wanted: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let sections: Vec<&str> = if wanted.is_empty()
        || wanted
            .iter()
            .any(|w| w == "default" || w == "all" || w == "everything")
    {
        DEFAULT_SECTIONS.to_vec()
    } else {
        DEFAULT_SECTIONS
            .iter()
            .copied()
            .filter(|s| wanted.iter().any(|w| w == s))
            .collect()
    };
    let mut text = String::new();
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            text.push_str("\r\n");
        }
        write_section(ctx, section, &mut text);
    }
    ctx.out.verbatim_text(&text);
}

fn write_section(ctx: &Ctx<'_>, section: &str, text: &mut String) {
    let server = ctx.server;
    let stats = &server.stats;
    let store = &server.store;
    let counter = |c: &std::sync::atomic::AtomicU64| Stats::get(c).to_string();
    let (heading, fields): (&str, Vec<(&str, String)>) = match section {
        "server" => {
            let uptime_s = ctx.now_ms.saturating_sub(server.started_ms) / 1000;
            let executable = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            (
                "Server",
                vec![
                    ("redis_version", REDIS_COMPAT_VERSION.to_string()),
                    ("presenced_version", env!("CARGO_PKG_VERSION").to_string()),
                    ("redis_mode", "standalone".to_string()),
                    ("os", std::env::consts::OS.to_string()),
                    ("arch_bits", usize::BITS.to_string()),
                    ("multiplexing_api", "epoll".to_string()),
                    ("process_id", std::process::id().to_string()),
                    ("run_id", server.run_id.clone()),
                    ("tcp_port", server.listen_addr.port().to_string()),
                    ("server_time_usec", clock::now_us().to_string()),
                    ("uptime_in_seconds", uptime_s.to_string()),
                    ("uptime_in_days", (uptime_s / 86_400).to_string()),
                    ("hz", "10".to_string()),
                    ("executable", executable),
                    ("config_file", String::new()),
                ],
            )
        }
        "clients" => (
            "Clients",
            vec![
                ("connected_clients", server.clients.count().to_string()),
                ("maxclients", server.config.clients_max.to_string()),
                ("blocked_clients", "0".to_string()),
            ],
        ),
        "memory" => {
            let rss = resident_bytes();
            (
                "Memory",
                vec![
                    ("used_memory", rss.to_string()),
                    ("used_memory_human", human_bytes(rss)),
                    ("used_memory_rss", rss.to_string()),
                    ("used_memory_rss_human", human_bytes(rss)),
                    ("maxmemory", "0".to_string()),
                    ("maxmemory_policy", "noeviction".to_string()),
                    (
                        "dense_slots_reserved_bytes",
                        (store.capacity() * 8).to_string(),
                    ),
                ],
            )
        }
        "persistence" => {
            let persistence = &server.persistence;
            let status = persistence.status().clone();
            let last = status.last_save.as_ref();
            let loaded = status.loaded.as_ref();
            (
                "Persistence",
                vec![
                    ("loading", "0".to_string()),
                    ("rdb_changes_since_last_save", "0".to_string()),
                    (
                        "rdb_bgsave_in_progress",
                        u8::from(persistence.in_progress()).to_string(),
                    ),
                    (
                        "rdb_last_save_time",
                        (last.map_or(server.started_ms, |r| r.started_ms) / 1000).to_string(),
                    ),
                    (
                        "rdb_last_bgsave_status",
                        if status.last_save_ok { "ok" } else { "err" }.to_string(),
                    ),
                    (
                        "rdb_last_bgsave_time_sec",
                        last.map_or(-1, |r| (r.duration_ms / 1000) as i64)
                            .to_string(),
                    ),
                    ("rdb_saves", status.saves_total.to_string()),
                    ("aof_enabled", "0".to_string()),
                    ("snapshot_dir", persistence.dir.display().to_string()),
                    (
                        "snapshot_interval_s",
                        persistence
                            .interval
                            .map_or(0.0, |d| d.as_secs_f64())
                            .to_string(),
                    ),
                    (
                        "snapshot_last_file",
                        last.map(|r| r.file.display().to_string())
                            .unwrap_or_default(),
                    ),
                    (
                        "snapshot_last_started_ms",
                        last.map_or(0, |r| r.started_ms).to_string(),
                    ),
                    (
                        "snapshot_last_bytes",
                        last.map_or(0, |r| r.bytes).to_string(),
                    ),
                    (
                        "snapshot_last_duration_ms",
                        last.map_or(0, |r| r.duration_ms).to_string(),
                    ),
                    (
                        "snapshot_last_error",
                        status.last_error.clone().unwrap_or_default(),
                    ),
                    (
                        "snapshot_loaded_file",
                        loaded
                            .map(|r| r.file.display().to_string())
                            .unwrap_or_default(),
                    ),
                    (
                        "snapshot_loaded_created_ms",
                        loaded.map_or(0, |r| r.created_ms).to_string(),
                    ),
                    (
                        "snapshot_loaded_bytes",
                        loaded.map_or(0, |r| r.bytes).to_string(),
                    ),
                    (
                        "snapshot_load_duration_ms",
                        loaded.map_or(0, |r| r.duration_ms).to_string(),
                    ),
                    ("snapshots_rejected", status.rejected.len().to_string()),
                ],
            )
        }
        "stats" => (
            "Stats",
            vec![
                (
                    "total_connections_received",
                    counter(&stats.connections_received),
                ),
                (
                    "total_commands_processed",
                    counter(&stats.commands_processed),
                ),
                ("total_net_input_bytes", counter(&stats.net_input_bytes)),
                ("total_net_output_bytes", counter(&stats.net_output_bytes)),
                ("rejected_connections", counter(&stats.connections_rejected)),
                ("expired_keys", counter(&stats.users_expired)),
                ("evicted_keys", "0".to_string()),
                (
                    "total_error_replies_protocol",
                    counter(&stats.protocol_errors),
                ),
            ],
        ),
        "replication" => (
            "Replication",
            vec![
                ("role", "master".to_string()),
                ("connected_slaves", "0".to_string()),
            ],
        ),
        "presence" => {
            let lag = store.lag();
            let pubsub = &server.pubsub;
            let fanout = &pubsub.fanout;
            (
                "Presence",
                vec![
                    ("online_users", store.online_count().to_string()),
                    (
                        "users_with_devices_or_overrides",
                        store.extras_count().to_string(),
                    ),
                    ("offline_grace_s", server.config.offline_grace_s.to_string()),
                    ("expiry_lag_p50_ms", lag.quantile_ms(0.5).to_string()),
                    ("expiry_lag_p99_ms", lag.quantile_ms(0.99).to_string()),
                    ("expiry_lag_max_ms", lag.max_ms().to_string()),
                    ("expiry_lag_samples", lag.count().to_string()),
                    ("presence_events_total", counter(&pubsub.presence_events)),
                    (
                        "messages_published_total",
                        counter(&pubsub.messages_published),
                    ),
                    (
                        "messages_delivered_total",
                        counter(&fanout.messages_delivered),
                    ),
                    ("fanout_jobs_pending", counter(&fanout.jobs_pending)),
                    (
                        "pubsub_subscriptions",
                        pubsub.subscription_count().to_string(),
                    ),
                    ("pubsub_channels", pubsub.channel_count().to_string()),
                    ("pubsub_patterns", pubsub.numpat().to_string()),
                    ("pubsub_memory_bytes", pubsub.memory_bytes().to_string()),
                    (
                        "pubsub_output_limit_bytes",
                        server.config.pubsub_output_max.to_string(),
                    ),
                    (
                        "slow_subscribers_disconnected_total",
                        counter(&fanout.slow_subscribers_disconnected),
                    ),
                    ("tracked_users", store.tracked_count().to_string()),
                    ("side_table_users", store.side_count().to_string()),
                    ("dense_capacity", store.capacity().to_string()),
                    ("shards", store.shard_count().to_string()),
                    ("default_ttl_s", server.config.default_ttl_s.to_string()),
                    ("expiry_wheel_entries", store.wheel_len().to_string()),
                    ("heartbeats_total", counter(&stats.heartbeats)),
                    ("status_lookups_total", counter(&stats.status_lookups)),
                    ("logouts_total", counter(&stats.logouts)),
                    ("users_expired_total", counter(&stats.users_expired)),
                ],
            )
        }
        "keyspace" => {
            // Redis lists a database only when it holds keys.
            let online = store.online_count();
            let db0 = format!("keys={online},expires={online},avg_ttl=0");
            (
                "Keyspace",
                if online > 0 {
                    vec![("db0", db0)]
                } else {
                    vec![]
                },
            )
        }
        _ => return,
    };
    let _ = write!(text, "# {heading}\r\n");
    for (name, value) in fields {
        let _ = write!(text, "{name}:{value}\r\n");
    }
}

fn resident_bytes() -> u64 {
    // /proc/self/statm: size resident shared ... in pages.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}
