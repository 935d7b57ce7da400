//! Delivery of publications to subscribers, in bounded batches.
//!
//! One task delivers every publication, in the order publications were queued. Presence and
//! keyspace events arrive unresolved (channel and payload only) and are resolved here, under
//! the registry lock but under no shard lock, so matching many patterns never stalls
//! heartbeats. A job whose remaining subscribers fit in one turn (`DELIVERIES_PER_TURN`) is
//! delivered at once, in queue order: subscribers see messages of different channels in the
//! order they were published, as Redis delivers them. A bigger job — a celebrity with a
//! million subscribers — is delivered in turns, taking its turn with the other big jobs
//! between intakes, so it delays everyone else by one turn, not by a million deliveries;
//! later jobs of its channel wait behind it, so per-channel (per-user) order always holds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hashbrown::{HashMap, HashSet};
use tokio::sync::mpsc;

use super::registry::{Registry, Subscribers};
use crate::clients::{CloseReason, Kind, PushOutcome};
use crate::resp::PushFrame;

/// Deliveries one job makes per turn. 1,024 pushes take tens of microseconds, which bounds
/// how long any one celebrity holds up everyone else.
pub const DELIVERIES_PER_TURN: usize = 1024;

/// Publications taken from the queue between turns of the big jobs (and between yields to
/// the runtime). Event batches are at most `EVENTS_PER_PUBLICATION_MAX` long, so one intake
/// resolves at most 64 x 1,024 events.
const INTAKE_PER_TURN: usize = 64;

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

/// What is queued for the fan-out task.
pub enum Publication {
    /// Jobs already resolved (PUBLISH, which must count its receivers when it runs).
    Resolved(Vec<Job>),
    /// Events to resolve here: `(channel, payload)` pairs, in order.
    Unresolved(Vec<(Bytes, Bytes)>),
}

#[derive(Debug, Default)]
pub struct FanoutStats {
    messages_delivered: AtomicU64,
    slow_subscribers_disconnected: AtomicU64,
    jobs_pending: AtomicU64,
    /// Deliveries queued but not yet made; PUBLISH waits while this is too high.
    pub(super) deliveries_pending: AtomicU64,
}

/// The fan-out's counters at one instant, for metrics.
#[derive(Clone, Copy, Debug)]
pub struct FanoutCounts {
    pub messages_delivered: u64,
    pub slow_subscribers_disconnected: u64,
    pub jobs_pending: u64,
}

impl FanoutStats {
    pub fn snapshot(&self) -> FanoutCounts {
        FanoutCounts {
            messages_delivered: self.messages_delivered.load(Ordering::Relaxed),
            slow_subscribers_disconnected: self
                .slow_subscribers_disconnected
                .load(Ordering::Relaxed),
            jobs_pending: self.jobs_pending.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
struct Queues {
    big: VecDeque<Job>,
    waiting: HashMap<Bytes, VecDeque<Job>>,
    busy: HashSet<Bytes>,
}

/// Runs until every sender is gone.
pub async fn run(
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
            match publications.recv().await {
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
        tokio::task::yield_now().await;
    }
}

/// Resolves a publication if needed and admits its jobs in order.
fn take(
    publication: Publication,
    registry: &Mutex<Registry>,
    queues: &mut Queues,
    deliver: &Deliver<'_>,
) {
    let jobs = match publication {
        Publication::Resolved(jobs) => jobs,
        Publication::Unresolved(events) => {
            let registry = registry.lock().unwrap_or_else(|p| p.into_inner());
            let mut jobs = Vec::new();
            for (channel, payload) in &events {
                let receivers = super::resolve(&registry, channel, payload, &mut jobs);
                deliver
                    .stats
                    .deliveries_pending
                    .fetch_add(receivers as u64, Ordering::Relaxed);
            }
            jobs
        }
    };
    for job in jobs {
        admit(job, queues, deliver);
    }
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
        let _ =
            self.stats
                .deliveries_pending
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                    Some(p.saturating_sub(made))
                });
    }
}
