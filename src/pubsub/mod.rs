//! Publish/subscribe: Redis-compatible channels, patterns and shard channels, presence events
//! on `presence:<user>` (and on the shard channel `presence:{<user>}`), and fan-out that a
//! celebrity or a slow reader cannot stall.
//!
//! Publishing (a PUBLISH command, or a presence transition handed over by a shard) resolves
//! the subscribers under the registry lock and queues delivery jobs for the fan-out thread before
//! releasing it, so publications of one channel are delivered in the order they were made.
//! Publishers never touch sockets and never wait for any one subscriber. While the fan-out is
//! backlogged (`limits::DELIVERIES_PENDING_MAX`, `limits::EVENTS_PENDING_MAX`), a `PUBLISH` or
//! a write that could publish events waits before it runs, held by its own connection on an
//! async timer (`cmd::held_until`): no thread sleeps, and the fan-out's queues stay bounded.
//! Messages are encoded by `resp` (`PushFrame`); this module knows their shapes, not bytes.

mod fanout;
mod message;
mod registry;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::mpsc;

pub use crate::clients::Kind;
pub use fanout::{FanoutCounts, FanoutStats};

use crate::clients::ClientEntry;
use crate::glob::glob_match;
use crate::limits::{DELIVERIES_PENDING_MAX, EVENTS_PENDING_MAX};
use crate::store::Transition;
use fanout::{Job, Publication};
use registry::Registry;

/// Estimated bytes one subscription costs beyond its channel name: the subscriber's entry in
/// the channel list (8) and position index (~24), and the client's own set entry (~48), with
/// hash-table slack. Reported by `INFO` as `pubsub_memory_bytes`.
pub const SUBSCRIPTION_OVERHEAD_BYTES: usize = 96;

pub struct PubSub {
    registry: Arc<Mutex<Registry>>,
    jobs: mpsc::UnboundedSender<Publication>,
    /// Mirror the registry's subscription counts so that publishers with nobody listening
    /// return without taking the lock or formatting anything.
    subscription_count: AtomicUsize,
    shard_subscription_count: AtomicUsize,
    pub fanout: Arc<FanoutStats>,
    messages_published: AtomicU64,
    presence_events: AtomicU64,
}

impl PubSub {
    /// The broker and the fan-out's body, which the caller runs on a thread of its own (it
    /// blocks; it must not run on a runtime worker). It returns once the broker is dropped.
    pub fn new(output_limit_bytes: usize) -> (PubSub, impl FnOnce() + Send + 'static) {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let fanout = Arc::new(FanoutStats::default());
        let registry = Arc::new(Mutex::new(Registry::default()));
        let worker_registry = Arc::clone(&registry);
        let worker_stats = Arc::clone(&fanout);
        let task = move || {
            fanout::run_blocking(receiver, worker_registry, worker_stats, output_limit_bytes);
        };
        let pubsub = PubSub {
            registry,
            jobs,
            subscription_count: AtomicUsize::new(0),
            shard_subscription_count: AtomicUsize::new(0),
            fanout,
            messages_published: AtomicU64::new(0),
            presence_events: AtomicU64::new(0),
        };
        (pubsub, task)
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publications made (PUBLISH, presence and keyspace events), for metrics.
    pub fn messages_published_total(&self) -> u64 {
        self.messages_published.load(Ordering::Relaxed)
    }

    /// Presence transitions handed over by the store, for metrics.
    pub fn presence_events_total(&self) -> u64 {
        self.presence_events.load(Ordering::Relaxed)
    }

    /// Whether any channel or pattern subscription exists.
    pub fn has_subscribers(&self) -> bool {
        self.subscription_count.load(Ordering::Relaxed) > 0
    }

    /// Whether any shard channel subscription exists.
    pub fn has_shard_subscribers(&self) -> bool {
        self.shard_subscription_count.load(Ordering::Relaxed) > 0
    }

    /// Adds a subscription; false if the client already had it.
    pub fn subscribe(&self, kind: Kind, name: &Bytes, client: &Arc<ClientEntry>) -> bool {
        let mut registry = self.registry();
        let added = registry.subscribe(kind, name, client);
        self.mirror_counts(&registry);
        added
    }

    /// Removes a subscription; false if the client did not have it.
    pub fn unsubscribe(&self, kind: Kind, name: &[u8], client_id: u64) -> bool {
        let mut registry = self.registry();
        let removed = registry.unsubscribe(kind, name, client_id);
        self.mirror_counts(&registry);
        removed
    }

    fn mirror_counts(&self, registry: &Registry) {
        self.subscription_count
            .store(registry.subscription_count, Ordering::Relaxed);
        self.shard_subscription_count
            .store(registry.shard_subscription_count, Ordering::Relaxed);
    }

    /// Whether more than `DELIVERIES_PENDING_MAX` deliveries or `EVENTS_PENDING_MAX` events
    /// wait for the fan-out: then a PUBLISH or a write waits before it runs (its connection
    /// holds it, see `cmd::held_until`) and the offline timer skips its tick, so a flood
    /// cannot grow the fan-out's queues without bound.
    pub fn backlogged(&self) -> bool {
        self.fanout.deliveries_pending.load(Ordering::Relaxed) > DELIVERIES_PENDING_MAX
            || self.fanout.events_pending.load(Ordering::Relaxed) > EVENTS_PENDING_MAX
    }

    /// Queues `payload` for every subscriber of `channel` and every matching pattern; returns
    /// how many subscriptions will receive it (as Redis's PUBLISH counts). Never waits: the
    /// caller's connection held the request while the fan-out was backlogged.
    pub fn publish(&self, channel: &[u8], payload: &[u8]) -> usize {
        self.publish_now(false, channel, payload)
    }

    /// `SPUBLISH`: queues `payload` for the subscribers of the shard channel `channel` (only
    /// them: channel and pattern subscribers never see it, as in Redis); returns how many.
    pub fn spublish(&self, channel: &[u8], payload: &[u8]) -> usize {
        self.publish_now(true, channel, payload)
    }

    /// Resolves a publication under the registry lock and queues its jobs before letting go
    /// of it, so publications of one channel reach the fan-out thread in the order they were
    /// resolved.
    fn publish_now(&self, shard: bool, channel: &[u8], payload: &[u8]) -> usize {
        self.messages_published.fetch_add(1, Ordering::Relaxed);
        let listening = if shard {
            self.has_shard_subscribers()
        } else {
            self.has_subscribers()
        };
        if !listening {
            return 0;
        }
        let registry = self.registry();
        let mut jobs = Vec::new();
        let receivers = if shard {
            resolve_shard(&registry, channel, payload, &mut jobs)
        } else {
            resolve(&registry, channel, payload, &mut jobs)
        };
        if !jobs.is_empty() {
            self.fanout
                .deliveries_pending
                .fetch_add(receivers as u64, Ordering::Relaxed);
            let _ = self.jobs.send(Publication::Resolved(jobs));
        }
        receivers
    }

    /// Queues events for the fan-out thread to resolve and deliver, in order. Called with a
    /// shard's lock held: it only hands the events over (no pattern matching here, so many
    /// patterns cannot stall heartbeats).
    pub fn publish_unresolved(&self, events: Vec<(Bytes, Bytes)>) {
        self.hand_over(events, false);
    }

    /// Queues events for channel and pattern subscribers, or (`shard`) for shard channel
    /// subscribers.
    fn hand_over(&self, events: Vec<(Bytes, Bytes)>, shard: bool) {
        if events.is_empty() {
            return;
        }
        self.messages_published
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        // Counted before they are sent: the fan-out subtracts them once resolved.
        self.fanout
            .events_pending
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        if events.len() <= fanout::EVENTS_PER_PUBLICATION_MAX {
            let _ = self.jobs.send(Publication::Unresolved { events, shard });
            return;
        }
        for chunk in events.chunks(fanout::EVENTS_PER_PUBLICATION_MAX) {
            let events = chunk.to_vec();
            let _ = self.jobs.send(Publication::Unresolved { events, shard });
        }
    }

    /// Publishes presence transitions on `presence:<user>` (for channel and pattern
    /// subscribers) and on the shard channel `presence:{<user>}` (for shard subscribers: the
    /// channel a cluster-aware client uses, whose hash tag names the user's slot).
    pub fn publish_transitions(&self, transitions: &[Transition]) {
        let count = transitions.len() as u64;
        self.presence_events.fetch_add(count, Ordering::Relaxed);
        let (plain, shard) = (self.has_subscribers(), self.has_shard_subscribers());
        if !plain && !shard {
            return;
        }
        let mut events = Vec::with_capacity(if plain { transitions.len() } else { 0 });
        let mut shard_events = Vec::with_capacity(if shard { transitions.len() } else { 0 });
        for transition in transitions {
            let user = transition.user.to_bytes();
            let payload = Bytes::from(presence_payload(&user, transition));
            if plain {
                events.push((presence_channel(&user, false), payload.clone()));
            }
            if shard {
                shard_events.push((presence_channel(&user, true), payload));
            }
        }
        self.hand_over(events, false);
        self.hand_over(shard_events, true);
    }

    /// Distinct patterns this client may still add.
    pub fn pattern_count(&self) -> usize {
        self.registry().patterns.len()
    }

    /// Channels (`Kind::Channel`) or shard channels (`Kind::Shard`) with at least one
    /// subscriber, optionally matching `pattern`.
    pub fn channels(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.registry()
            .lists(kind)
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    /// Subscribers of one channel or shard channel.
    pub fn numsub(&self, kind: Kind, channel: &[u8]) -> usize {
        self.registry()
            .lists(kind)
            .get(channel)
            .map_or(0, |l| l.len())
    }

    pub fn shard_channel_count(&self) -> usize {
        self.registry().shard_channels.len()
    }

    pub fn numpat(&self) -> usize {
        self.registry().patterns.len()
    }

    pub fn channel_count(&self) -> usize {
        self.registry().channels.len()
    }

    /// Every subscription: channels, patterns and shard channels.
    pub fn subscription_count(&self) -> usize {
        self.subscription_count.load(Ordering::Relaxed)
            + self.shard_subscription_count.load(Ordering::Relaxed)
    }

    /// Estimated memory held by subscriptions: names plus per-subscription overhead.
    pub fn memory_bytes(&self) -> usize {
        let registry = self.registry();
        let subscriptions = registry.subscription_count + registry.shard_subscription_count;
        registry.name_bytes + subscriptions * SUBSCRIPTION_OVERHEAD_BYTES
    }
}

/// Appends the delivery jobs of one publication; returns how many subscriptions receive it.
fn resolve(registry: &Registry, channel: &[u8], payload: &[u8], jobs: &mut Vec<Job>) -> usize {
    let mut receivers = 0;
    let mut channel_name = None;
    let mut name = || {
        channel_name
            .get_or_insert_with(|| Bytes::copy_from_slice(channel))
            .clone()
    };
    if let Some(list) = registry.channels.get(channel) {
        receivers += list.len();
        jobs.push(Job {
            channel: name(),
            subscription: (Kind::Channel, name()),
            message: message::message(channel, payload),
            targets: list.snapshot(),
            cursor: 0,
        });
    }
    for (pattern, list) in &registry.patterns {
        if glob_match(pattern, channel, false) {
            receivers += list.len();
            jobs.push(Job {
                channel: name(),
                subscription: (Kind::Pattern, pattern.clone()),
                message: message::pmessage(pattern, channel, payload),
                targets: list.snapshot(),
                cursor: 0,
            });
        }
    }
    receivers
}

/// The jobs of one `SPUBLISH` (or presence event) to a shard channel; returns how many
/// subscriptions receive it.
fn resolve_shard(
    registry: &Registry,
    channel: &[u8],
    payload: &[u8],
    jobs: &mut Vec<Job>,
) -> usize {
    let Some(list) = registry.shard_channels.get(channel) else {
        return 0;
    };
    let name = Bytes::copy_from_slice(channel);
    jobs.push(Job {
        channel: name.clone(),
        subscription: (Kind::Shard, name),
        message: message::smessage(channel, payload),
        targets: list.snapshot(),
        cursor: 0,
    });
    list.len()
}

/// `presence:<user>`, or for shard subscribers `presence:{<user>}`.
fn presence_channel(user: &[u8], shard: bool) -> Bytes {
    let mut channel = Vec::with_capacity(PRESENCE_CHANNEL_PREFIX.len() + user.len() + 2);
    channel.extend_from_slice(PRESENCE_CHANNEL_PREFIX);
    if shard {
        channel.push(b'{');
    }
    channel.extend_from_slice(user);
    if shard {
        channel.push(b'}');
    }
    Bytes::from(channel)
}

/// Presence events are published on `presence:<user id>`.
pub const PRESENCE_CHANNEL_PREFIX: &[u8] = b"presence:";

/// The event payload: one line of JSON, `{"user":"42","state":"online","last_seen_ms":1795...}`.
/// `last_seen_ms` is null for a user never seen (an invisible user who was never online).
pub fn presence_payload(user: &[u8], transition: &Transition) -> String {
    let mut out = String::with_capacity(64 + user.len());
    out.push_str("{\"user\":\"");
    json_escape_into(&String::from_utf8_lossy(user), &mut out);
    out.push_str("\",\"state\":\"");
    out.push_str(transition.state.as_str());
    out.push_str("\",\"last_seen_ms\":");
    match transition.last_seen_ms {
        Some(ms) => out.push_str(&ms.to_string()),
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

fn json_escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{State, UserRef};

    #[test]
    fn payload_is_one_line_of_json() {
        let t = Transition {
            user: UserRef::Dense(42),
            state: State::Online,
            last_seen_ms: Some(1_795_704_729_295),
            cause: crate::store::Cause::Change,
        };
        assert_eq!(
            presence_payload(b"42", &t),
            r#"{"user":"42","state":"online","last_seen_ms":1795704729295}"#
        );
        let t = Transition {
            last_seen_ms: None,
            state: State::Offline,
            ..t
        };
        assert_eq!(
            presence_payload(b"a\"b\n", &t),
            r#"{"user":"a\"b\u000a","state":"offline","last_seen_ms":null}"#
        );
    }

    /// Events handed over count against the fan-out's bound until the fan-out thread has
    /// resolved them: past `EVENTS_PENDING_MAX` the broker says it is backlogged (writes then
    /// wait), and once the thread catches up it no longer is. The thread ends with the broker.
    #[test]
    fn backlog_is_counted_until_resolved() {
        let (pubsub, worker) = PubSub::new(0);
        let event = (Bytes::from_static(b"presence:1"), Bytes::from_static(b"{}"));
        pubsub.publish_unresolved(vec![event; EVENTS_PENDING_MAX as usize + 1]);
        assert!(pubsub.backlogged());
        let thread = std::thread::spawn(worker);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while pubsub.fanout.snapshot().events_pending > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(pubsub.fanout.snapshot().events_pending, 0);
        assert!(!pubsub.backlogged());
        drop(pubsub);
        thread
            .join()
            .expect("the fan-out thread ends with its broker");
    }
}
