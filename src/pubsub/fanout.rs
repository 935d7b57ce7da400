//! Delivery of publications to subscribers, on a thread of its own, in bounded batches.
//!
//! One thread delivers every publication, in the order publications were queued. It is not a
//! runtime worker: however much it has to deliver, no connection waits for it to yield (the
//! connections that write the delivered messages yield between chunks of their own). Presence
//! and keyspace events arrive unresolved (channel and payload only) and are resolved here,
//! under the registry lock but under no shard lock, so matching many patterns never stalls
//! heartbeats; the lock is let go at least every `RESOLVE_LOCK_SLICE`, so a SUBSCRIBE on a
//! core thread never waits longer than that. A job whose remaining subscribers fit in one turn
//! (`DELIVERIES_PER_TURN`) is delivered at once, in queue order: subscribers see messages of
//! different channels in the order they were published, as Redis delivers them. A bigger job
//! — a celebrity with a million subscribers — is delivered in turns, taking its turn with the
//! other big jobs between intakes, so it delays everyone else by one turn, not by a million
//! deliveries; later jobs of its channel wait behind it, so per-channel (per-user) order
//! always holds.
//!
//! Every queue here is bounded by admission, not by dropping: what is queued is counted
//! (`events_pending`, `deliveries_pending`), and past `EVENTS_PENDING_MAX` or
//! `DELIVERIES_PENDING_MAX` the commands that would queue more wait before they run, held by
//! their own connections (`cmd::held_until`), and the offline timer skips its tick. The
//! arithmetic of the resulting bound is in `limits.rs`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::{HashMap, HashSet};
use tokio::sync::mpsc;

use super::registry::{Registry, Subscribers};
use crate::clients::{CloseReason, Kind, PushOutcome};
use crate::resp::PushFrame;

/// Deliveries one job makes per turn. 1,024 pushes take tens of microseconds, which bounds
/// how long any one celebrity holds up everyone else.
pub const DELIVERIES_PER_TURN: usize = 1024;

/// Publications taken from the queue between turns of the big jobs. Event batches are at most
/// `EVENTS_PER_PUBLICATION_MAX` long, so one intake resolves at most 64 x 1,024 events before
/// a celebrity's next turn.
const INTAKE_PER_TURN: usize = 64;

/// Longest the registry lock is held while resolving events: SUBSCRIBE and UNSUBSCRIBE run on
/// the core threads and take the same lock, so this bounds how long one of them can wait for
/// the fan-out. 1,024 events against one pattern take ~100 µs; against thousands of patterns,
/// one publication is resolved in several slices.
const RESOLVE_LOCK_SLICE: Duration = Duration::from_micros(500);

/// Events resolved between two looks at the clock (a clock read costs ~20 ns).
const RESOLVE_EVENTS_PER_CLOCK_READ: usize = 16;

/// Longest batch of unresolved events in one publication.
pub const EVENTS_PER_PUBLICATION_MAX: usize = 1024;

pub struct Job {
    pub channel: Bytes,
    /// What the receivers subscribed to: the channel, or the pattern that matched it.
    pub subscription: (Kind, Bytes),
    pub message: PushFrame,
    pub targets: Subscribers,
    pub cursor: usize,
}

/// What is queued for the fan-out thread.
pub enum Publication {
    /// Jobs already resolved (PUBLISH, which must count its receivers when it runs).
    Resolved(Vec<Job>),
    /// Events to resolve here: `(channel, payload)` pairs, in order, for channel and pattern
    /// subscribers, or (`shard`) for the subscribers of those shard channels.
    Unresolved {
        events: Vec<(Bytes, Bytes)>,
        shard: bool,
    },
}

#[derive(Debug, Default)]
pub struct FanoutStats {
    messages_delivered: AtomicU64,
    slow_subscribers_disconnected: AtomicU64,
    jobs_pending: AtomicU64,
    /// Deliveries queued but not yet made; writes wait while this is too high.
    pub(super) deliveries_pending: AtomicU64,
    /// Events handed over by the shards but not yet resolved; writes wait while this is too
    /// high.
    pub(super) events_pending: AtomicU64,
}

/// The fan-out's counters at one instant, for metrics.
#[derive(Clone, Copy, Debug)]
pub struct FanoutCounts {
    pub messages_delivered: u64,
    pub slow_subscribers_disconnected: u64,
    pub jobs_pending: u64,
    pub deliveries_pending: u64,
    pub events_pending: u64,
}

impl FanoutStats {
    pub fn snapshot(&self) -> FanoutCounts {
        FanoutCounts {
            messages_delivered: self.messages_delivered.load(Ordering::Relaxed),
            slow_subscribers_disconnected: self
                .slow_subscribers_disconnected
                .load(Ordering::Relaxed),
            jobs_pending: self.jobs_pending.load(Ordering::Relaxed),
            deliveries_pending: self.deliveries_pending.load(Ordering::Relaxed),
            events_pending: self.events_pending.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
struct Queues {
    big: VecDeque<Job>,
    waiting: HashMap<Bytes, VecDeque<Job>>,
    busy: HashSet<Bytes>,
}

/// The fan-out thread's body: runs until every sender is gone. Blocks only on its own queue,
/// never on a runtime.
pub fn run_blocking(
    mut publications: mpsc::UnboundedReceiver<Publication>,
    registry: Arc<Mutex<Registry>>,
    stats: Arc<FanoutStats>,
    output_limit_bytes: usize,
) {
    let mut queues = Queues::default();
    let deliver_ctx = Deliver {
        stats: &stats,
        output_limit_bytes,
    };
    loop {
        if queues.big.is_empty() {
            match publications.blocking_recv() {
                Some(publication) => take(publication, &registry, &mut queues, &deliver_ctx),
                None => return,
            }
        }
        for _ in 0..INTAKE_PER_TURN {
            match publications.try_recv() {
                Ok(publication) => take(publication, &registry, &mut queues, &deliver_ctx),
                Err(_) => break,
            }
        }
        let turns = queues.big.len();
        for _ in 0..turns {
            let Some(mut job) = queues.big.pop_front() else {
                break;
            };
            deliver_ctx.deliver(&mut job, DELIVERIES_PER_TURN);
            if job.cursor < job.targets.len() {
                queues.big.push_back(job);
                continue;
            }
            release(&mut queues, &job.channel, &deliver_ctx);
        }
        let pending = queues.big.len() + queues.waiting.values().map(VecDeque::len).sum::<usize>();
        stats.jobs_pending.store(pending as u64, Ordering::Relaxed);
    }
}

/// Resolves a publication if needed and admits its jobs in order.
fn take(
    publication: Publication,
    registry: &Mutex<Registry>,
    queues: &mut Queues,
    deliver: &Deliver<'_>,
) {
    match publication {
        Publication::Resolved(jobs) => {
            for job in jobs {
                admit(job, queues, deliver);
            }
        }
        Publication::Unresolved { events, shard } => {
            let mut jobs = Vec::new();
            let mut rest = &events[..];
            while !rest.is_empty() {
                // One slice under the lock, then its jobs are admitted with the lock let go.
                let guard = lock(registry);
                let resolved = resolve_slice(&guard, rest, shard, &mut jobs, deliver.stats);
                drop(guard);
                rest = &rest[resolved..];
                release_pending(&deliver.stats.events_pending, resolved as u64);
                for job in jobs.drain(..) {
                    admit(job, queues, deliver);
                }
            }
        }
    }
}

fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves events from the front of `events` until `RESOLVE_LOCK_SLICE` has passed (at least
/// one); returns how many it resolved.
fn resolve_slice(
    registry: &Registry,
    events: &[(Bytes, Bytes)],
    shard: bool,
    jobs: &mut Vec<Job>,
    stats: &FanoutStats,
) -> usize {
    let started = Instant::now();
    let mut resolved = 0;
    for (channel, payload) in events {
        let receivers = if shard {
            super::resolve_shard(registry, channel, payload, jobs)
        } else {
            super::resolve(registry, channel, payload, jobs)
        };
        stats
            .deliveries_pending
            .fetch_add(receivers as u64, Ordering::Relaxed);
        resolved += 1;
        if resolved % RESOLVE_EVENTS_PER_CLOCK_READ == 0 && started.elapsed() > RESOLVE_LOCK_SLICE {
            break;
        }
    }
    resolved
}

fn admit(mut job: Job, queues: &mut Queues, deliver: &Deliver<'_>) {
    if queues.busy.contains(&job.channel) {
        queues
            .waiting
            .entry(job.channel.clone())
            .or_default()
            .push_back(job);
        return;
    }
    if job.targets.len() <= DELIVERIES_PER_TURN {
        deliver.deliver(&mut job, DELIVERIES_PER_TURN);
        return;
    }
    queues.busy.insert(job.channel.clone());
    queues.big.push_back(job);
}

/// A big job of `channel` finished: the next job of that channel may start.
fn release(queues: &mut Queues, channel: &Bytes, deliver: &Deliver<'_>) {
    while let Some(mut next) = queues.waiting.get_mut(channel).and_then(|q| q.pop_front()) {
        if next.targets.len() > DELIVERIES_PER_TURN {
            queues.big.push_back(next);
            return;
        }
        deliver.deliver(&mut next, DELIVERIES_PER_TURN);
    }
    queues.waiting.remove(channel);
    queues.busy.remove(channel);
}

struct Deliver<'a> {
    stats: &'a FanoutStats,
    output_limit_bytes: usize,
}

impl Deliver<'_> {
    fn deliver(&self, job: &mut Job, max: usize) {
        let end = (job.cursor + max).min(job.targets.len());
        let mut delivered = 0;
        for client in &job.targets[job.cursor..end] {
            if client.is_killed() {
                continue;
            }
            let message = job.message.for_protocol(client.protocol()).clone();
            match client
                .outbox
                .push(message, job.subscription.clone(), self.output_limit_bytes)
            {
                PushOutcome::Queued => delivered += 1,
                PushOutcome::Overflowed => {
                    self.stats
                        .slow_subscribers_disconnected
                        .fetch_add(1, Ordering::Relaxed);
                    // Logged and counted by the connection as it closes, with its reason.
                    client.kill(CloseReason::PubsubOutputLimit);
                }
                PushOutcome::Dropped => {}
            }
        }
        let made = (end - job.cursor) as u64;
        job.cursor = end;
        self.stats
            .messages_delivered
            .fetch_add(delivered, Ordering::Relaxed);
        release_pending(&self.stats.deliveries_pending, made);
    }
}

/// Takes `done` off a pending count, never below zero (a count is added before its work is
/// queued and taken off once the work is done, by another thread).
fn release_pending(pending: &AtomicU64, done: u64) {
    let _ = pending.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
        Some(p.saturating_sub(done))
    });
}
