//! The process around the shared services: bind the listeners (one per core), accept
//! connections, run the offline-detection, memory and snapshot timers, and shut down on SIGINT,
//! SIGTERM or SHUTDOWN with a final snapshot. Commands never see this module; the state they
//! share lives in `services`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::clock;
use crate::config::{Config, RuntimeKind};
use crate::connection;
use crate::services::Services;
use crate::snapshot;
use crate::stats::Stats;

/// How often each shard's timing wheel is advanced. With 100 ms buckets, a user is declared
/// offline at most ~150 ms after their deadline.
const EXPIRY_PERIOD: Duration = Duration::from_millis(50);

/// Binds, serves until shutdown is requested, and returns.
pub async fn run(config: Config) -> std::io::Result<()> {
    let mut signals = ShutdownSignals::install()?;
    let per_core = config.runtime == RuntimeKind::PerCore;
    let listener = bind(config.listen_addr, per_core)?;
    let listen_addr = listener.local_addr()?;
    let (server, fanout_task) = Services::build(config, listen_addr, clock::now_ms())?;
    // Subscribed before any connection can be taken: a SHUTDOWN served by another core's
    // thread before this loop starts must still be seen (a receiver created after the change
    // would wait for the next one, forever).
    let mut shutdown_rx = server.shutdown_requested();
    // Its own thread, not a task: delivering a storm of events must never keep a core thread
    // from its connections. It ends when the services are dropped, with the process.
    std::thread::Builder::new()
        .name("presenced-fanout".into())
        .spawn(fanout_task)?;
    restore(&server)?;
    info!(
        shards = server.store.shard_count(),
        capacity = server.store.capacity(),
        ttl_s = server.config.default_ttl_s,
        "presenced listening on {listen_addr}"
    );

    tokio::spawn(expiry_loop(Arc::clone(&server)));
    tokio::spawn(replication_loop(Arc::clone(&server)));
    tokio::spawn(follower_links(Arc::clone(&server)));
    tokio::spawn(memory_loop(Arc::clone(&server)));
    tokio::spawn(snapshot_loop(Arc::clone(&server)));
    tokio::spawn(clock_discipline(Arc::clone(&server)));
    let mut core_threads = Vec::new();
    if per_core {
        for core in 1..server.config.thread_count {
            let server = Arc::clone(&server);
            core_threads.push(
                std::thread::Builder::new()
                    .name(format!("presenced-core-{core}"))
                    .spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()?;
                        runtime.block_on(async move {
                            let listener = bind(listen_addr, true)?;
                            accept_loop(&server, listener).await;
                            Ok::<(), std::io::Error>(())
                        })
                    })?,
            );
        }
    }
    loop {
        if *shutdown_rx.borrow_and_update() {
            info!("shutdown requested by a client");
            break;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, addr)) => connection::accept(Arc::clone(&server), socket, addr),
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown_rx.changed() => {
                info!("shutdown requested by a client");
                break;
            }
            signal = signals.next() => {
                info!("received {signal}, shutting down");
                server.request_shutdown();
                if server.persistence.enabled() {
                    let saver = Arc::clone(&server);
                    let saved = tokio::task::spawn_blocking(move || {
                        let mark = saver.replication.mark();
                        saver
                            .persistence
                            .save_for_shutdown(&saver.store, clock::now_ms(), mark)
                    })
                    .await;
                    if !matches!(saved, Ok(Ok(_))) {
                        warn!("the snapshot at shutdown failed; the previous snapshot stays");
                    }
                }
                break;
            }
        }
    }
    for thread in core_threads {
        let _ = thread.join();
    }
    info!(
        online_users = server.store.online_count(),
        "presenced stopped"
    );
    Ok(())
}

/// A listener; with `reuse_port`, one of several on the same address (one per core), among
/// which the kernel spreads new connections.
fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The accept loop of one per-core runtime (the first core's also watches signals, in `run`).
async fn accept_loop(server: &Arc<Services>, listener: TcpListener) {
    let mut shutdown = server.shutdown_requested();
    loop {
        // A shutdown requested before this thread subscribed would never show as a change.
        if *shutdown.borrow_and_update() {
            return;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, addr)) => connection::accept(Arc::clone(server), socket, addr),
                Err(err) => {
                    warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Loads the newest good snapshot before the server takes clients.
fn restore(server: &Services) -> std::io::Result<()> {
    let dir = &server.persistence.dir;
    let (loaded, rejected) = snapshot::load_newest(&server.store, dir, clock::now_ms())?;
    // A load may have touched gigabytes of slots: judge the first commands by a fresh figure.
    server.memory.refresh();
    for reason in &rejected {
        warn!("snapshot rejected: {reason}");
    }
    match &loaded {
        Some(report) => info!(
            file = %report.file.display(),
            bytes = report.bytes,
            duration_ms = report.duration_ms,
            users = server.store.tracked_count(),
            online_users = server.store.online_count(),
            "snapshot loaded"
        ),
        None if server.config.require_snapshot => {
            return Err(std::io::Error::other(format!(
                "--require-snapshot: no good snapshot in {}{}",
                dir.display(),
                if rejected.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", rejected.join("; "))
                }
            )));
        }
        None => info!(dir = %dir.display(), "no snapshot to load: starting empty"),
    }
    if let Some(mark) = loaded
        .as_ref()
        .and_then(|report| report.replication.as_ref())
    {
        // A follower restarted from this file asks to continue from here (PSYNC replid
        // offset+1), and a leader keeps its ID, so its followers may continue too.
        server.replication.restore_mark(mark);
        info!(replid = %mark.replid, offset = mark.offset, "replication position restored");
    }
    server.persistence.record_load(loaded, rejected);
    Ok(())
}

/// Steers presence time toward the wall clock (see `clock`), logging a wall clock that steps.
async fn clock_discipline(server: Arc<Services>) {
    let mut shutdown = server.shutdown_requested();
    let mut ticker = tokio::time::interval(clock::DISCIPLINE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut previous_ms, mut catching_up) = (0i64, false);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let error_ms = clock::discipline();
        // Between two steerings the error moves by at most 1% of 100 ms unless the wall
        // clock itself stepped; a step of a second or more is news to an operator.
        if error_ms.abs_diff(previous_ms) >= 1_000 {
            warn!(
                wall_offset_ms = error_ms,
                "the wall clock stepped; presence time follows it at most 1% fast or slow"
            );
            catching_up = true;
        } else if catching_up && error_ms.abs() < 100 {
            info!("presence time has caught up with the wall clock");
            catching_up = false;
        }
        previous_ms = error_ms;
    }
}

/// Periodic snapshots and BGSAVE requests, one at a time, off the async workers.
async fn snapshot_loop(server: Arc<Services>) {
    let mut shutdown = server.shutdown_requested();
    let period = server.persistence.interval;
    let mut ticker = period.map(|p| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        // A BGSAVE has already claimed the save; a tick claims it here.
        let claimed = tokio::select! {
            _ = server.persistence.background_request.notified() => true,
            _ = async {
                match ticker.as_mut() {
                    Some(t) => { t.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            } => server.persistence.try_begin(),
            _ = shutdown.changed() => return,
        };
        if !claimed {
            continue;
        }
        let saver = Arc::clone(&server);
        let _ = tokio::task::spawn_blocking(move || {
            saver
                .persistence
                .save_claimed(&saver.store, clock::now_ms(), saver.replication.mark())
        })
        .await;
    }
}

async fn expiry_loop(server: Arc<Services>) {
    let mut interval = tokio::time::interval(EXPIRY_PERIOD);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = server.shutdown_requested();
    let mut epoch_seen = server.replication.epoch();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now_ms = clock::now_ms();
        if server.replication.is_follower() {
            // A follower's users go offline when its leader says so, never by its own clock.
            continue;
        }
        let epoch = server.replication.epoch();
        if epoch != epoch_seen {
            // Promoted: before any entry fires, the wheels are rebuilt from the users as the
            // old leader last shipped them, each online one given the promotion grace.
            epoch_seen = epoch;
            let grace_ms = server.replication.promotion_grace_s * 1000;
            // The deliberately broken build the fault harness must catch (docs/RELIABILITY.md).
            #[cfg(feature = "broken-promotion-without-grace")]
            let grace_ms = {
                let _ = grace_ms;
                0
            };
            let _gate = server.gate.shared();
            server.store.rebuild_wheels(now_ms, grace_ms);
            info!(grace_ms, "promoted to leader: offline detection starts");
        }
        if server.clients.pause_at(now_ms).is_some() {
            // As in Redis, nothing expires while clients are paused (a failover in progress
            // must see no writes, the timer's included); users are declared at the end.
            continue;
        }
        if server.replication.too_few_good_followers() {
            // --min-replicas-to-write: a leader cut off from its followers declares nobody
            // offline. Sentinel may be promoting one of them, which carries on from the
            // stream it has; offline events from here would be false there. The users wait in
            // the wheel with their deadlines and are declared once followers are back.
            continue;
        }
        if server.pubsub.backlogged() {
            // The fan-out's queue is full: the offline events wait with their users in the
            // wheel (nothing is lost, deadlines are kept) rather than grow it without bound.
            // The fan-out drains millions of deliveries a second, so this skips a tick or two.
            continue;
        }
        let pass = {
            // Shared with connections' batches, held off by an EXEC in progress.
            let _gate = server.gate.shared();
            server.store.expire_due(now_ms)
        };
        Stats::add(&server.stats.users_expired, pass.expired_count);
    }
}

/// Reads the resident size `maxmemory` is judged by again every `MEMORY_REFRESH_MS` while a
/// limit is set (without one, only `INFO` reads it, and takes its own reading).
async fn memory_loop(server: Arc<Services>) {
    let period = Duration::from_millis(crate::limits::MEMORY_REFRESH_MS);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = server.shutdown_requested();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        if server.memory.maxmemory_bytes() != 0 {
            server.memory.refresh();
        }
    }
}

/// How often a leader drains its shards' changed users into the replication stream when no
/// connection asked for it sooner (connections ring `Replication::nudge` after each batch).
const REPLICATION_PERIOD: Duration = Duration::from_millis(50);

async fn replication_loop(server: Arc<Services>) {
    let mut interval = tokio::time::interval(REPLICATION_PERIOD);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = server.shutdown_requested();
    let mut last_frame_ms = clock::now_ms();
    loop {
        let nudged = tokio::select! {
            _ = interval.tick() => false,
            _ = server.replication.produce_wanted() => true,
            _ = shutdown.changed() => return,
        };
        {
            let _gate = server.gate.shared();
            server
                .replication
                .produce(&server.store, clock::now_ms(), &mut last_frame_ms);
        }
        if !nudged {
            // A follower that stopped acknowledging turns bad by the clock alone.
            server.replication.followers_changed(clock::now_ms());
        }
        if nudged {
            // The least time between two drains asked for by connections
            // (--repl-coalesce-ms, 1 by default): changes of many batches are coalesced into
            // one drain, so a busy leader drains at most a thousand times a second. With 0 the
            // loop only yields: it drains as soon as it runs again.
            match server.config.repl_coalesce_ms {
                0 => tokio::task::yield_now().await,
                ms => tokio::time::sleep(Duration::from_millis(ms)).await,
            }
        }
    }
}

/// Starts the link to the leader whenever this process becomes a follower (at start with
/// `--replicaof`, or by REPLICAOF); a link ends by itself when the role changes again.
async fn follower_links(server: Arc<Services>) {
    let mut roles = server.replication.watch_role();
    let mut shutdown = server.shutdown_requested();
    loop {
        if server.replication.is_follower() {
            let epoch = server.replication.epoch();
            tokio::spawn(crate::replication::follower::run(
                Arc::clone(&server),
                epoch,
            ));
        }
        tokio::select! {
            changed = roles.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// SIGINT and SIGTERM, registered before the server announces its address: a supervisor
/// that signals as soon as it sees "listening" must find the handlers already in place, or
/// the default action would kill the process without a clean shutdown.
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
