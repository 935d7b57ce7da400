//! Delivery of publications to subscribers, in bounded batches.
//!
//! One task delivers every publication. Each publication becomes jobs (one for the channel's
//! subscribers, one per matching pattern); active jobs take turns delivering at most
//! `DELIVERIES_PER_TURN` messages each, so a user with a million subscribers coming online
//! delays other users' events by one turn, not by a million deliveries. Jobs of the same
//! channel run one after another, never interleaved, so each subscriber sees a user's events
//! in the order they happened.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hashbrown::{HashMap, HashSet};
use tokio::sync::mpsc;

use super::message::Encoded;
use super::outbox::PushOutcome;
use super::registry::Subscribers;

/// Deliveries one job makes before the next job's turn. 1,024 pushes take tens of
/// microseconds, which bounds how long any one celebrity holds up everyone else.
const DELIVERIES_PER_TURN: usize = 1024;

/// Publications taken from the queue between turns, so a flood of new publications cannot
/// starve jobs already in progress.
const INTAKE_PER_TURN: usize = 4096;

pub struct Job {
    pub channel: Bytes,
    pub message: Encoded,
    pub targets: Subscribers,
    pub cursor: usize,
}

#[derive(Debug, Default)]
pub struct FanoutStats {
    pub messages_delivered: AtomicU64,
    pub slow_subscribers_disconnected: AtomicU64,
    pub jobs_pending: AtomicU64,
}

/// Jobs being delivered, and jobs waiting for an earlier job of their channel to finish.
#[derive(Default)]
struct Queues {
    active: VecDeque<Job>,
    waiting: HashMap<Bytes, VecDeque<Job>>,
    busy: HashSet<Bytes>,
}

impl Queues {
    fn admit(&mut self, job: Job) {
        if self.busy.contains(&job.channel) {
            self.waiting
                .entry(job.channel.clone())
                .or_default()
                .push_back(job);
        } else {
            self.busy.insert(job.channel.clone());
            self.active.push_back(job);
        }
    }
}

/// Runs until every sender is gone.
pub async fn run(
    mut publications: mpsc::UnboundedReceiver<Vec<Job>>,
    stats: Arc<FanoutStats>,
    output_limit_bytes: usize,
) {
    let mut queues = Queues::default();
    loop {
        if queues.active.is_empty() {
            match publications.recv().await {
                Some(jobs) => jobs.into_iter().for_each(|j| queues.admit(j)),
                None => return,
            }
        }
        for _ in 0..INTAKE_PER_TURN {
            match publications.try_recv() {
                Ok(jobs) => jobs.into_iter().for_each(|j| queues.admit(j)),
                Err(_) => break,
            }
        }
        let Queues {
            active,
            waiting,
            busy,
        } = &mut queues;
        let turns = active.len();
        for _ in 0..turns {
            let Some(mut job) = active.pop_front() else {
                break;
            };
            deliver(&mut job, &stats, output_limit_bytes);
            if job.cursor < job.targets.len() {
                active.push_back(job);
                continue;
            }
            match waiting.get_mut(&job.channel).and_then(|q| q.pop_front()) {
                Some(next) => active.push_back(next),
                None => {
                    waiting.remove(&job.channel);
                    busy.remove(&job.channel);
                }
            }
        }
        let pending = active.len() + waiting.values().map(VecDeque::len).sum::<usize>();
        stats.jobs_pending.store(pending as u64, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
}

fn deliver(job: &mut Job, stats: &FanoutStats, output_limit_bytes: usize) {
    let end = (job.cursor + DELIVERIES_PER_TURN).min(job.targets.len());
    let mut delivered = 0;
    for client in &job.targets[job.cursor..end] {
        let message = job.message.for_protocol(client.protocol()).clone();
        match client.outbox.push(message, output_limit_bytes) {
            PushOutcome::Queued => delivered += 1,
            PushOutcome::Overflowed => {
                stats
                    .slow_subscribers_disconnected
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    client = client.id,
                    addr = %client.addr,
                    "disconnecting a subscriber over the pub/sub output limit"
                );
                client.kill();
            }
            PushOutcome::Dropped => {}
        }
    }
    job.cursor = end;
    stats
        .messages_delivered
        .fetch_add(delivered, Ordering::Relaxed);
}
