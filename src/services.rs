//! What connections, commands and timers share: the store, pub/sub, the keyspace settings, the
//! configuration, persistence, the client registry, the memory gauge (`maxmemory`), the
//! counters, the slow log and the server's identity.
//!
//! `Services` owns them; `Shared` lends them out by reference, so a command sees the parts
//! it uses and never the accept loop, the listeners or the timers (`server` owns those). This
//! module wires the store's event sink to pub/sub and keyspace notifications; it never
//! touches sockets.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::clients::ClientRegistry;
use crate::config::Config;
use crate::dropin::Keyspace;
use crate::identity::Identity;
use crate::memory::MemoryGauge;
use crate::pubsub::PubSub;
use crate::replication::Replication;
use crate::slowlog::SlowLog;
use crate::snapshot::Persistence;
use crate::stats::Stats;
use crate::store::Store;

pub struct Services {
    pub config: Config,
    pub store: Store,
    pub pubsub: Arc<PubSub>,
    pub keyspace: Arc<Keyspace>,
    pub persistence: Persistence,
    pub replication: Replication,
    pub clients: ClientRegistry,
    /// The `maxmemory` limit and the used-memory figure it is compared with.
    pub memory: MemoryGauge,
    pub stats: Stats,
    pub slowlog: SlowLog,
    pub identity: Identity,
    /// Held shared by every batch of requests and every expiry pass, exclusive by an `EXEC`.
    pub gate: Gate,
    shutdown: watch::Sender<bool>,
}

/// What makes an `EXEC` atomic with respect to other clients: each connection holds the gate
/// shared while it runs a batch of requests (no await happens inside one, so it is held for
/// microseconds), the timer while it declares users offline; an `EXEC` takes it exclusive, so
/// it runs while nothing else touches the store. A shared lock per batch rather than per
/// command keeps its cost (one atomic add and sub on a shared cache line) off the per-command
/// path. The alternative, locking every shard for the transaction, would need every store
/// method to know which shards its caller already holds.
#[derive(Debug, Default)]
pub struct Gate(RwLock<()>);

impl Gate {
    pub fn shared(&self) -> RwLockReadGuard<'_, ()> {
        // The gate guards no data: a panic while it was held leaves nothing to repair.
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The shared components by reference: what a command handler, `INFO` and (next) the metrics
/// endpoint read and change. `Copy`, so a connection builds it once and hands it on freely.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub pubsub: &'a PubSub,
    pub keyspace: &'a Keyspace,
    pub persistence: &'a Persistence,
    pub replication: &'a Replication,
    pub clients: &'a ClientRegistry,
    pub memory: &'a MemoryGauge,
    pub stats: &'a Stats,
    pub slowlog: &'a SlowLog,
    pub identity: &'a Identity,
}

impl Services {
    /// Builds the shared state, with the fan-out's body, which the caller runs on a thread of
    /// its own (never on a runtime worker: it blocks). Separate from `server::run` so that
    /// in-process tests can drive commands without a socket.
    pub fn build(
        config: Config,
        listen_addr: SocketAddr,
        now_ms: u64,
    ) -> std::io::Result<(Arc<Services>, impl FnOnce() + Send + 'static)> {
        crate::store::HUGE_PAGES.store(config.huge_pages, std::sync::atomic::Ordering::Relaxed);
        let store = Store::new(config.capacity, config.shard_count, now_ms)?;
        let (pubsub, fanout_task) = PubSub::new(config.pubsub_output_max);
        let pubsub = Arc::new(pubsub);
        let keyspace = Arc::new(Keyspace::new(config.key_pattern.clone()));
        keyspace.set_flags(config.notify_keyspace_events);
        let sink_pubsub = Arc::clone(&pubsub);
        let sink_keyspace = Arc::clone(&keyspace);
        store.set_event_sink(Box::new(move |transitions| {
            sink_pubsub.publish_transitions(transitions);
            sink_keyspace.notify_transitions(&sink_pubsub, transitions);
        }));
        let (shutdown, _) = watch::channel(false);
        let persistence = Persistence::new(
            config.dir.clone(),
            config.snapshot_interval,
            config.key_pattern.as_str().to_string(),
        );
        let memory = MemoryGauge::new(config.maxmemory_bytes, store.growth().clone());
        let replication = Replication::new(&config);
        let services = Arc::new(Services {
            persistence,
            replication,
            memory,
            store,
            pubsub,
            keyspace,
            clients: ClientRegistry::default(),
            stats: Stats::default(),
            slowlog: SlowLog::new(config.slowlog_slower_than_us, config.slowlog_len_max),
            identity: Identity::new(listen_addr, now_ms),
            gate: Gate::default(),
            shutdown,
            config,
        });
        Ok((services, fanout_task))
    }

    pub fn shared(&self) -> Shared<'_> {
        Shared {
            config: &self.config,
            store: &self.store,
            pubsub: &self.pubsub,
            keyspace: &self.keyspace,
            persistence: &self.persistence,
            replication: &self.replication,
            clients: &self.clients,
            memory: &self.memory,
            stats: &self.stats,
            slowlog: &self.slowlog,
            identity: &self.identity,
        }
    }

    /// Asks the accept loops and every connection to stop.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn shutdown_requested(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}
