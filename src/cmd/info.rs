//! `INFO`: the metrics snapshot (`metrics::Metrics`) rendered as Redis's `# Section` text, with
//! Redis's field names where Redis has the field and presenced's own (`online_users`,
//! `expiry_lag_p99_ms`, ...) in its `presence` section. Nothing is counted here.

use std::fmt::Write as _;

use super::{Args, CmdResult, Ctx};
use crate::clients::CloseReason;
use crate::clock;
use crate::metrics::Metrics;
use crate::replication::Role;

/// The Redis version presenced reports where tools expect one (`INFO redis_version`): the
/// command surface it implements matches Redis 7.2 for the commands it has.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

/// Every section, in the order Redis lists its own (presenced's `presence` before
/// `keyspace`), and whether `INFO` alone (and `INFO default`) shows it: as in Redis 7,
/// `commandstats` only comes with `all`, `everything` or its own name. presenced has no modules
/// or latency statistics.
const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("commandstats", false),
    ("errorstats", true),
    ("cluster", true),
    ("presence", true),
    ("keyspace", true),
];

type Fields = Vec<(String, String)>;

pub fn info(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let wanted: Vec<String> = args
        .rest()
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let asked = |word: &str| wanted.iter().any(|w| w == word);
    let all = asked("all") || asked("everything");
    let defaults = wanted.is_empty() || asked("default");
    let sections: Vec<&str> = SECTIONS
        .iter()
        .filter(|(name, default)| all || (defaults && *default) || asked(name))
        .map(|(name, _)| *name)
        .collect();
    let metrics = Metrics::collect(&ctx.shared, ctx.now_ms);
    let mut text = String::new();
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            text.push_str("\r\n");
        }
        let (heading, fields) = match *section {
            "server" => ("Server", server_fields(ctx, &metrics)),
            "clients" => ("Clients", client_fields(ctx, &metrics)),
            "memory" => ("Memory", memory_fields(&metrics)),
            "persistence" => ("Persistence", persistence_fields(ctx, &metrics)),
            "stats" => ("Stats", stats_fields(ctx, &metrics)),
            "replication" => ("Replication", replication_fields(ctx)),
            "cpu" => ("CPU", cpu_fields(&metrics)),
            "commandstats" => ("Commandstats", command_fields(&metrics)),
            "errorstats" => ("Errorstats", error_fields(&metrics)),
            "cluster" => ("Cluster", fields([("cluster_enabled", &0)])),
            "presence" => ("Presence", presence_fields(ctx, &metrics)),
            _ => ("Keyspace", keyspace_fields(&metrics)),
        };
        let _ = write!(text, "# {heading}\r\n");
        for (name, value) in fields {
            let _ = write!(text, "{name}:{value}\r\n");
        }
    }
    ctx.out.verbatim_text(&text);
    Ok(())
}

/// Field names and values, from pairs of anything printable.
fn fields<const N: usize>(pairs: [(&str, &dyn std::fmt::Display); N]) -> Fields {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn server_fields(ctx: &Ctx<'_>, metrics: &Metrics) -> Fields {
    let executable = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let config_file = ctx
        .shared
        .config
        .config_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    fields([
        ("redis_version", &REDIS_COMPAT_VERSION),
        ("presenced_version", &env!("CARGO_PKG_VERSION")),
        ("redis_mode", &"standalone"),
        ("os", &std::env::consts::OS),
        ("arch_bits", &usize::BITS),
        ("multiplexing_api", &"epoll"),
        ("process_id", &std::process::id()),
        ("run_id", &ctx.shared.identity.run_id),
        ("tcp_port", &ctx.shared.identity.listen_addr.port()),
        ("server_time_usec", &clock::now_us()),
        ("clock_wall_offset_ms", &clock::wall_offset_ms()),
        ("clock_slew_ppm", &clock::slew_ppm()),
        ("uptime_in_seconds", &metrics.uptime_s),
        ("uptime_in_days", &(metrics.uptime_s / 86_400)),
        ("hz", &10),
        ("executable", &executable),
        ("config_file", &config_file),
    ])
}

fn client_fields(ctx: &Ctx<'_>, metrics: &Metrics) -> Fields {
    let pause = metrics.clients.pause;
    let (reason, actions, left_ms) = match pause {
        None => ("none", "none", 0),
        Some(p) => (
            "client_pause",
            if p.writes_only { "write" } else { "all" },
            p.until_ms.saturating_sub(ctx.now_ms),
        ),
    };
    fields([
        ("connected_clients", &metrics.clients.connected),
        ("maxclients", &metrics.clients.max),
        ("blocked_clients", &0),
        ("paused_reason", &reason),
        ("paused_actions", &actions),
        ("paused_timeout_milliseconds", &left_ms),
    ])
}

/// `used_memory` is what `maxmemory` is compared with: the resident size (docs/COMMANDS.md,
/// "Memory"), not an allocator's count as in Redis, so it equals `used_memory_rss` but for what
/// the store added between the two reads.
fn memory_fields(metrics: &Metrics) -> Fields {
    let memory = &metrics.memory;
    fields([
        ("used_memory", &memory.used_bytes),
        ("used_memory_human", &human_bytes(memory.used_bytes)),
        ("used_memory_rss", &memory.resident_bytes),
        ("used_memory_rss_human", &human_bytes(memory.resident_bytes)),
        ("maxmemory", &memory.maxmemory_bytes),
        ("maxmemory_human", &human_bytes(memory.maxmemory_bytes)),
        ("maxmemory_policy", &"noeviction"),
        (
            "dense_slots_reserved_bytes",
            &memory.dense_slots_reserved_bytes,
        ),
        (
            "dense_slots_touched_bytes",
            &memory.dense_slots_touched_bytes,
        ),
        ("side_table_bytes", &memory.side_table_bytes),
        ("presence_values_bytes", &memory.presence_values_bytes),
    ])
}

fn persistence_fields(ctx: &Ctx<'_>, metrics: &Metrics) -> Fields {
    let status = &metrics.persistence.status;
    let last = status.last_save.as_ref();
    let loaded = status.loaded.as_ref();
    let interval_s = ctx
        .shared
        .persistence
        .interval
        .map_or(0.0, |d| d.as_secs_f64());
    fields([
        ("loading", &0),
        ("rdb_changes_since_last_save", &0),
        (
            "rdb_bgsave_in_progress",
            &u8::from(metrics.persistence.save_in_progress),
        ),
        (
            "rdb_last_save_time",
            &(last.map_or(ctx.shared.identity.started_ms, |r| r.started_ms) / 1000),
        ),
        (
            "rdb_last_bgsave_status",
            &if status.last_save_ok { "ok" } else { "err" },
        ),
        (
            "rdb_last_bgsave_time_sec",
            &last.map_or(-1, |r| (r.duration_ms / 1000) as i64),
        ),
        ("rdb_saves", &status.saves_total),
        ("aof_enabled", &0),
        ("snapshot_dir", &ctx.shared.persistence.dir.display()),
        ("snapshot_interval_s", &interval_s),
        (
            "snapshot_last_file",
            &last
                .map(|r| r.file.display().to_string())
                .unwrap_or_default(),
        ),
        (
            "snapshot_last_started_ms",
            &last.map_or(0, |r| r.started_ms),
        ),
        ("snapshot_last_bytes", &last.map_or(0, |r| r.bytes)),
        (
            "snapshot_last_duration_ms",
            &last.map_or(0, |r| r.duration_ms),
        ),
        (
            "snapshot_last_error",
            &status.last_error.clone().unwrap_or_default(),
        ),
        (
            "snapshot_loaded_file",
            &loaded
                .map(|r| r.file.display().to_string())
                .unwrap_or_default(),
        ),
        (
            "snapshot_loaded_created_ms",
            &loaded.map_or(0, |r| r.created_ms),
        ),
        ("snapshot_loaded_bytes", &loaded.map_or(0, |r| r.bytes)),
        (
            "snapshot_load_duration_ms",
            &loaded.map_or(0, |r| r.duration_ms),
        ),
        ("snapshots_rejected", &status.rejected.len()),
    ])
}

fn stats_fields(ctx: &Ctx<'_>, metrics: &Metrics) -> Fields {
    let clients = &metrics.clients;
    let traffic = &metrics.traffic;
    let closed = |reason: CloseReason| clients.closed_total[reason.index()];
    let (full_syncs, partial_ok, partial_err) = ctx.shared.replication.sync_counts();
    let mut out = fields([
        (
            "total_connections_received",
            &clients.connections_received_total,
        ),
        (
            "total_commands_processed",
            &traffic.commands_processed_total,
        ),
        ("total_net_input_bytes", &traffic.net_input_bytes_total),
        ("total_net_output_bytes", &traffic.net_output_bytes_total),
        ("rejected_connections", &clients.connections_rejected_total),
        ("sync_full", &full_syncs),
        ("sync_partial_ok", &partial_ok),
        ("sync_partial_err", &partial_err),
        ("expired_keys", &metrics.presence.users_expired_total),
        ("evicted_keys", &0),
        ("pubsub_channels", &metrics.pubsub.channels),
        ("pubsub_patterns", &metrics.pubsub.patterns),
        ("pubsubshard_channels", &metrics.pubsub.shard_channels),
        (
            "total_error_replies_protocol",
            &traffic.protocol_errors_total,
        ),
        ("total_error_replies", &traffic.error_replies_total),
        (
            "client_query_buffer_limit_disconnections",
            &closed(CloseReason::QueryBufferLimit),
        ),
        (
            "client_output_buffer_limit_disconnections",
            &closed(CloseReason::PubsubOutputLimit),
        ),
    ]);
    for reason in CloseReason::ALL {
        out.push((
            format!("connections_closed_{}", reason.as_str()),
            closed(reason).to_string(),
        ));
    }
    out
}

/// Redis's `# Replication` fields, in its order: what Sentinel reads to find followers, their
/// offsets and their links.
fn replication_fields(ctx: &Ctx<'_>) -> Fields {
    let replication = ctx.shared.replication;
    let (replid, replid2, second_offset) = replication.ids();
    let end_offset = replication.end_offset();
    let mut out = Fields::new();
    let mut add = |name: &str, value: &dyn std::fmt::Display| {
        out.push((name.to_string(), value.to_string()));
    };
    if let Role::Follower { host, port } = replication.role() {
        let link = replication.link();
        add("role", &"slave");
        add("master_host", &host);
        add("master_port", &port);
        add("master_link_status", &if link.up { "up" } else { "down" });
        let io_s = if link.up {
            (ctx.now_ms.saturating_sub(link.last_io_ms) / 1000) as i64
        } else {
            -1
        };
        add("master_last_io_seconds_ago", &io_s);
        add("master_sync_in_progress", &u8::from(link.sync_in_progress));
        add("slave_read_repl_offset", &end_offset);
        add("slave_repl_offset", &end_offset);
        if !link.up {
            let down_s = ctx.now_ms.saturating_sub(link.down_since_ms) / 1000;
            add("master_link_down_since_seconds", &down_s);
        }
        add("slave_priority", &replication.replica_priority);
        add("slave_read_only", &1);
        add("replica_announced", &1);
    } else {
        add("role", &"master");
    }
    let followers = replication.followers();
    add("connected_slaves", &followers.len());
    if replication.min_replicas_enabled() {
        add("min_slaves_good_slaves", &replication.good_followers());
    }
    for (i, f) in followers.iter().enumerate() {
        let lag_s = ctx.now_ms.saturating_sub(f.last_ack_ms) / 1000;
        let line = format!(
            "ip={},port={},state={},offset={},lag={lag_s}",
            f.ip, f.listening_port, f.state, f.ack_offset
        );
        add(&format!("slave{i}"), &line);
    }
    add("master_failover_state", &"no-failover");
    add("master_replid", &replid);
    add("master_replid2", &replid2);
    add("master_repl_offset", &end_offset);
    add("second_repl_offset", &second_offset);
    let backlog = replication.backlog();
    add(
        "repl_backlog_active",
        &u8::from(replication.tracking() || replication.is_follower()),
    );
    add("repl_backlog_size", &backlog.capacity());
    add("repl_backlog_first_byte_offset", &backlog.first_offset());
    add("repl_backlog_histlen", &backlog.len());
    drop(backlog);
    out
}

fn cpu_fields(metrics: &Metrics) -> Fields {
    let cpu = &metrics.cpu;
    let seconds = |s: f64| format!("{s:.6}");
    vec![
        ("used_cpu_sys".to_string(), seconds(cpu.sys_s)),
        ("used_cpu_user".to_string(), seconds(cpu.user_s)),
        (
            "used_cpu_sys_children".to_string(),
            seconds(cpu.children_sys_s),
        ),
        (
            "used_cpu_user_children".to_string(),
            seconds(cpu.children_user_s),
        ),
        (
            "used_cpu_sys_main_thread".to_string(),
            seconds(cpu.main_thread_sys_s),
        ),
        (
            "used_cpu_user_main_thread".to_string(),
            seconds(cpu.main_thread_user_s),
        ),
    ]
}

/// Redis's `cmdstat_<name>:calls=N,usec=N,usec_per_call=F,rejected_calls=N,failed_calls=N`
/// for each command and subcommand (`client|list`) that was called, rejected or failed, in the
/// command table's order (Redis's is its hash table's).
fn command_fields(metrics: &Metrics) -> Fields {
    super::command_rows()
        .iter()
        .zip(&metrics.commands)
        .filter(|(_, totals)| totals.any())
        .map(|(spec, totals)| {
            let usec_per_call = if totals.calls == 0 {
                0.0
            } else {
                totals.duration_ns as f64 / 1000.0 / totals.calls as f64
            };
            let value = format!(
                "calls={},usec={},usec_per_call={usec_per_call:.2},rejected_calls={},failed_calls={}",
                totals.calls,
                totals.duration_ns / 1000,
                totals.rejected,
                totals.failed,
            );
            (format!("cmdstat_{}", spec.name), value)
        })
        .collect()
}

/// Redis lists only the kinds of error that happened.
fn error_fields(metrics: &Metrics) -> Fields {
    metrics
        .errors_by_prefix
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(prefix, count)| (format!("errorstat_{prefix}"), format!("count={count}")))
        .collect()
}

fn presence_fields(ctx: &Ctx<'_>, metrics: &Metrics) -> Fields {
    let presence = &metrics.presence;
    let pubsub = &metrics.pubsub;
    let lag = &presence.expiry_lag;
    fields([
        ("online_users", &presence.online_users),
        (
            "users_with_devices_or_overrides",
            &presence.users_with_extras,
        ),
        ("offline_grace_s", &ctx.shared.config.offline_grace_s),
        ("expiry_lag_p50_ms", &lag.quantile_ms(0.5)),
        ("expiry_lag_p99_ms", &lag.quantile_ms(0.99)),
        ("expiry_lag_max_ms", &lag.max_ms()),
        ("expiry_lag_samples", &lag.count()),
        ("presence_events_total", &pubsub.presence_events_total),
        ("messages_published_total", &pubsub.messages_published_total),
        ("messages_delivered_total", &pubsub.messages_delivered_total),
        ("fanout_jobs_pending", &pubsub.fanout_jobs_pending),
        ("fanout_events_pending", &pubsub.fanout_events_pending),
        (
            "fanout_deliveries_pending",
            &pubsub.fanout_deliveries_pending,
        ),
        ("pubsub_subscriptions", &pubsub.subscriptions),
        ("pubsub_channels", &pubsub.channels),
        ("pubsub_patterns", &pubsub.patterns),
        ("pubsubshard_channels", &pubsub.shard_channels),
        ("pubsub_memory_bytes", &pubsub.memory_bytes),
        (
            "pubsub_output_limit_bytes",
            &ctx.shared.config.pubsub_output_max,
        ),
        (
            "slow_subscribers_disconnected_total",
            &pubsub.slow_subscribers_disconnected_total,
        ),
        ("tracked_users", &presence.tracked_users),
        ("side_table_users", &presence.side_table_users),
        ("dense_capacity", &presence.dense_capacity),
        ("shards", &presence.shards),
        ("default_ttl_s", &ctx.shared.config.default_ttl_s),
        ("expiry_wheel_entries", &presence.wheel_entries),
        ("heartbeats_total", &presence.heartbeats_total),
        ("status_lookups_total", &presence.status_lookups_total),
        ("logouts_total", &presence.logouts_total),
        ("users_expired_total", &presence.users_expired_total),
        ("store_commits_total", &presence.changes.commit_count),
        (
            "presence_transitions_total",
            &presence.changes.transition_count,
        ),
        (
            "users_came_online_total",
            &presence.changes.came_online_count,
        ),
        (
            "users_went_offline_timeout_total",
            &presence.changes.went_offline_timeout_count,
        ),
        (
            "users_went_offline_logout_total",
            &presence.changes.went_offline_logout_count,
        ),
    ])
}

/// Redis lists a database only when it holds keys.
fn keyspace_fields(metrics: &Metrics) -> Fields {
    let online = metrics.presence.online_users;
    if online == 0 {
        return Vec::new();
    }
    vec![(
        "db0".to_string(),
        format!("keys={online},expires={online},avg_ttl=0"),
    )]
}

/// Redis's `bytesToHuman`: whole bytes below 1 KiB, then two decimals of K, M, G, T or P, and
/// whole bytes again from 1024 P up (as Redis prints them).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut scale = 1024u64;
    for unit in UNITS {
        match scale.checked_mul(1024) {
            Some(next) if bytes >= next => scale = next,
            _ => return format!("{:.2}{unit}", bytes as f64 / scale as f64),
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    /// Sizes read as Redis 7.0.15's INFO writes them (`maxmemory_human`).
    #[test]
    fn human_bytes_as_redis() {
        for (bytes, text) in [
            (0, "0B"),
            (1, "1B"),
            (1023, "1023B"),
            (1024, "1.00K"),
            (10_000, "9.77K"),
            (100 << 20, "100.00M"),
            (1 << 30, "1.00G"),
            (3 << 40, "3.00T"),
            (5 << 50, "5.00P"),
            (i64::MAX as u64, "9223372036854775807B"),
        ] {
            assert_eq!(human_bytes(bytes), text, "{bytes}");
        }
    }
}
