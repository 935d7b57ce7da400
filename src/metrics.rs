//! One snapshot of every counter and gauge the server keeps, collected in one place and
//! rendered elsewhere: `INFO` renders it today, the `/metrics` endpoint will render the same
//! struct. Collecting changes nothing but the memory gauge's reading, which it refreshes so
//! that `used_memory` is current; counters here only grow (until `CONFIG RESETSTAT`), so a
//! scraper may take differences between two snapshots.

use crate::clients::CloseReason;
use crate::expiry::LagHistogram;
use crate::services::Shared;
use crate::snapshot::PersistenceStatus;
use crate::stats::{CommandTotals, Stats};
use crate::store::ShardCounters;

/// Everything, as plain numbers (and the persistence status, which is mostly reports).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub uptime_s: u64,
    pub clients: ClientMetrics,
    pub memory: MemoryMetrics,
    pub persistence: PersistenceMetrics,
    pub traffic: TrafficMetrics,
    pub presence: PresenceMetrics,
    pub pubsub: PubsubMetrics,
    pub cpu: CpuTimes,
    /// Error replies by first word, in `stats::ERROR_PREFIXES` order.
    pub errors_by_prefix: Vec<(&'static str, u64)>,
    /// Calls, time, rejections and failures of each command, by the command table's row
    /// (`cmd::command_rows` names them).
    pub commands: Vec<CommandTotals>,
}

/// CPU time used, in seconds, from `/proc` (Linux's clock ticks are 1/100 s there).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    pub user_s: f64,
    pub sys_s: f64,
    pub children_user_s: f64,
    pub children_sys_s: f64,
    pub main_thread_user_s: f64,
    pub main_thread_sys_s: f64,
}

#[derive(Clone, Debug)]
pub struct ClientMetrics {
    pub connected: u64,
    pub max: u64,
    pub connections_received_total: u64,
    pub connections_rejected_total: u64,
    /// Connections ended, by `CloseReason::index`.
    pub closed_total: [u64; CloseReason::COUNT],
    /// The `CLIENT PAUSE` in force, if any.
    pub pause: Option<crate::clients::Pause>,
}

/// What memory is used and what the limit is (`INFO memory`).
#[derive(Clone, Debug)]
pub struct MemoryMetrics {
    /// What `maxmemory` is compared with: the resident size, read now.
    pub used_bytes: u64,
    pub resident_bytes: u64,
    /// 0: no limit.
    pub maxmemory_bytes: u64,
    /// Address space of the dense slot arrays (`--capacity` x 8 bytes).
    pub dense_slots_reserved_bytes: u64,
    /// Of it, the pages ever written: what the slots cost (part of `resident_bytes`).
    pub dense_slots_touched_bytes: u64,
    /// The side tables of non-numeric IDs, an estimate from sizes.
    pub side_table_bytes: u64,
    /// Drop-in values kept byte for byte (part of `resident_bytes`).
    pub presence_values_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct PersistenceMetrics {
    pub status: PersistenceStatus,
    pub save_in_progress: bool,
}

#[derive(Clone, Debug)]
pub struct TrafficMetrics {
    pub commands_processed_total: u64,
    pub net_input_bytes_total: u64,
    pub net_output_bytes_total: u64,
    pub protocol_errors_total: u64,
    pub error_replies_total: u64,
}

#[derive(Clone, Debug)]
pub struct PresenceMetrics {
    pub online_users: u64,
    pub tracked_users: u64,
    pub side_table_users: u64,
    pub users_with_extras: u64,
    pub wheel_entries: u64,
    pub shards: u64,
    pub dense_capacity: u64,
    pub heartbeats_total: u64,
    pub status_lookups_total: u64,
    pub logouts_total: u64,
    pub users_expired_total: u64,
    pub expiry_lag: LagHistogram,
    /// What the shards' one door for changes counted (`store::ShardCounters`).
    pub changes: ShardCounters,
}

#[derive(Clone, Debug)]
pub struct PubsubMetrics {
    pub presence_events_total: u64,
    pub messages_published_total: u64,
    pub messages_delivered_total: u64,
    pub slow_subscribers_disconnected_total: u64,
    pub fanout_jobs_pending: u64,
    pub fanout_events_pending: u64,
    pub fanout_deliveries_pending: u64,
    pub subscriptions: u64,
    pub channels: u64,
    pub patterns: u64,
    pub shard_channels: u64,
    pub memory_bytes: u64,
}

impl Metrics {
    /// Reads every component once. Takes each shard's lock briefly, never two at a time.
    pub fn collect(shared: &Shared<'_>, now_ms: u64) -> Metrics {
        Metrics {
            uptime_s: now_ms.saturating_sub(shared.identity.started_ms) / 1000,
            clients: client_metrics(shared, now_ms),
            memory: memory_metrics(shared),
            persistence: PersistenceMetrics {
                status: shared.persistence.status().clone(),
                save_in_progress: shared.persistence.in_progress(),
            },
            traffic: traffic_metrics(shared.stats),
            presence: presence_metrics(shared),
            pubsub: pubsub_metrics(shared),
            cpu: cpu_times(),
            errors_by_prefix: crate::stats::ERROR_PREFIXES
                .iter()
                .zip(&shared.stats.errors_by_prefix)
                .map(|(prefix, count)| (*prefix, Stats::get(count)))
                .collect(),
            commands: shared.stats.commands.totals(),
        }
    }
}

fn client_metrics(shared: &Shared<'_>, now_ms: u64) -> ClientMetrics {
    let stats = shared.stats;
    ClientMetrics {
        connected: shared.clients.count() as u64,
        max: shared.config.clients_max as u64,
        connections_received_total: Stats::get(&stats.connections_received),
        connections_rejected_total: Stats::get(&stats.connections_rejected),
        closed_total: std::array::from_fn(|i| Stats::get(&stats.connections_closed[i])),
        pause: shared.clients.pause_at(now_ms),
    }
}

fn memory_metrics(shared: &Shared<'_>) -> MemoryMetrics {
    let store = shared.store;
    let resident_bytes = shared.memory.refresh();
    MemoryMetrics {
        used_bytes: shared.memory.used_bytes(),
        resident_bytes,
        maxmemory_bytes: shared.memory.maxmemory_bytes(),
        dense_slots_reserved_bytes: store.capacity() * 8,
        dense_slots_touched_bytes: store.dense_touched_bytes(),
        side_table_bytes: store.side_bytes(),
        presence_values_bytes: store.value_bytes(),
    }
}

fn traffic_metrics(stats: &Stats) -> TrafficMetrics {
    TrafficMetrics {
        commands_processed_total: Stats::get(&stats.commands_processed),
        net_input_bytes_total: Stats::get(&stats.net_input_bytes),
        net_output_bytes_total: Stats::get(&stats.net_output_bytes),
        protocol_errors_total: Stats::get(&stats.protocol_errors),
        error_replies_total: Stats::get(&stats.error_replies),
    }
}

fn presence_metrics(shared: &Shared<'_>) -> PresenceMetrics {
    let store = shared.store;
    let stats = shared.stats;
    PresenceMetrics {
        online_users: store.online_count(),
        tracked_users: store.tracked_count(),
        side_table_users: store.side_count(),
        users_with_extras: store.extras_count(),
        wheel_entries: store.wheel_len(),
        shards: store.shard_count() as u64,
        dense_capacity: store.capacity(),
        heartbeats_total: Stats::get(&stats.heartbeats),
        status_lookups_total: Stats::get(&stats.status_lookups),
        logouts_total: Stats::get(&stats.logouts),
        users_expired_total: Stats::get(&stats.users_expired),
        expiry_lag: store.lag(),
        changes: store.counters(),
    }
}

fn pubsub_metrics(shared: &Shared<'_>) -> PubsubMetrics {
    let pubsub = shared.pubsub;
    let fanout = pubsub.fanout.snapshot();
    PubsubMetrics {
        presence_events_total: pubsub.presence_events_total(),
        messages_published_total: pubsub.messages_published_total(),
        messages_delivered_total: fanout.messages_delivered,
        slow_subscribers_disconnected_total: fanout.slow_subscribers_disconnected,
        fanout_jobs_pending: fanout.jobs_pending,
        fanout_events_pending: fanout.events_pending,
        fanout_deliveries_pending: fanout.deliveries_pending,
        subscriptions: pubsub.subscription_count() as u64,
        channels: pubsub.channel_count() as u64,
        patterns: pubsub.numpat() as u64,
        shard_channels: pubsub.shard_channel_count() as u64,
        memory_bytes: pubsub.memory_bytes() as u64,
    }
}

/// The process's and its main thread's CPU times. `/proc/<pid>/stat` gives them in clock ticks,
/// which Linux reports to user space at 100 per second whatever the kernel's own rate.
fn cpu_times() -> CpuTimes {
    const TICKS_PER_S: f64 = 100.0;
    // Fields after the command name (which may hold spaces and parentheses, so the text after
    // its last ')' is split): utime, stime, cutime, cstime are fields 14 to 17 of the file,
    // 12 to 15 of what follows the name.
    let ticks = |path: &str| -> Option<[f64; 4]> {
        let text = std::fs::read_to_string(path).ok()?;
        let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |i: usize| fields.get(i)?.parse::<f64>().ok();
        Some([field(11)?, field(12)?, field(13)?, field(14)?].map(|t| t / TICKS_PER_S))
    };
    let process = ticks("/proc/self/stat").unwrap_or_default();
    let main = ticks(&format!("/proc/self/task/{}/stat", std::process::id())).unwrap_or_default();
    CpuTimes {
        user_s: process[0],
        sys_s: process[1],
        children_user_s: process[2],
        children_sys_s: process[3],
        main_thread_user_s: main[0],
        main_thread_sys_s: main[1],
    }
}
