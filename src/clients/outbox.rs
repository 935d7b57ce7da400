//! A client's queue of pushed messages (pub/sub), capped in bytes.
//!
//! Publishers never write to a socket: they append a shared, pre-encoded `Bytes` to the
//! subscriber's outbox and wake its connection task. A subscriber whose pending output passes
//! the cap is marked overflowed and its connection is told to close — like Redis's
//! `client-output-buffer-limit pubsub` hard limit — so a reader that never reads costs at most
//! the cap, and publishers never wait for it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::Notify;

/// Which kind of subscription a message was delivered for (and which registry table a
/// subscription is in): the subscriber's side of pub/sub, so it lives with the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Channel,
    Pattern,
    /// A shard channel (`SSUBSCRIBE`, Redis 7's sharded pub/sub).
    Shard,
}

/// A queued message and the subscription it was delivered for, so that a connection can
/// drop messages of a channel it unsubscribed from after they were queued (Redis never sends
/// a message after the unsubscribe confirmation).
pub type Pushed = (Bytes, (Kind, Bytes));

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Pushed>,
    bytes: usize,
}

#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Wakes the connection task when messages arrive or the outbox overflows.
    pub ready: Notify,
    overflowed: AtomicBool,
}

/// What `push` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    Queued,
    /// This push took the outbox over its cap: the client must be disconnected.
    Overflowed,
    /// The outbox had already overflowed; the message was dropped.
    Dropped,
}

impl Default for Outbox {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            overflowed: AtomicBool::new(false),
        }
    }
}

impl Outbox {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `message` unless that takes pending output past `limit_bytes` (0: no limit).
    pub fn push(
        &self,
        message: Bytes,
        subscription: (Kind, Bytes),
        limit_bytes: usize,
    ) -> PushOutcome {
        if self.overflowed.load(Ordering::Relaxed) {
            return PushOutcome::Dropped;
        }
        let mut queue = self.queue();
        if limit_bytes > 0 && queue.bytes + message.len() > limit_bytes {
            self.overflowed.store(true, Ordering::Relaxed);
            queue.messages.clear();
            queue.bytes = 0;
            drop(queue);
            self.ready.notify_one();
            return PushOutcome::Overflowed;
        }
        let was_empty = queue.messages.is_empty();
        queue.bytes += message.len();
        queue.messages.push_back((message, subscription));
        drop(queue);
        if was_empty {
            self.ready.notify_one();
        }
        PushOutcome::Queued
    }

    /// Moves queued messages out, in order, until at least `max_bytes` are taken (or none is
    /// left), and returns their total size. A connection takes a bounded chunk at a time, so
    /// copying a 32 MB backlog into its output never holds its thread in one go.
    pub fn drain_into(&self, out: &mut Vec<Pushed>, max_bytes: usize) -> usize {
        let mut queue = self.queue();
        let mut taken = 0;
        while taken < max_bytes
            && let Some(message) = queue.messages.pop_front()
        {
            taken += message.0.len();
            out.push(message);
        }
        queue.bytes -= taken;
        taken
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    pub fn pending_bytes(&self) -> usize {
        self.queue().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages queue in order until the cap; the push that crosses it overflows the outbox.
    #[test]
    fn caps_pending_bytes() {
        let outbox = Outbox::default();
        let sub = || (Kind::Channel, Bytes::from_static(b"c"));
        assert_eq!(
            outbox.push(Bytes::from_static(b"aaaa"), sub(), 10),
            PushOutcome::Queued
        );
        assert_eq!(
            outbox.push(Bytes::from_static(b"bbbb"), sub(), 10),
            PushOutcome::Queued
        );
        assert_eq!(outbox.pending_bytes(), 8);
        let mut drained = Vec::new();
        assert_eq!(outbox.drain_into(&mut drained, usize::MAX), 8);
        let messages: Vec<Bytes> = drained.into_iter().map(|(m, _)| m).collect();
        assert_eq!(
            messages,
            vec![Bytes::from_static(b"aaaa"), Bytes::from_static(b"bbbb")]
        );
        assert_eq!(
            outbox.push(Bytes::from_static(b"cccccc"), sub(), 10),
            PushOutcome::Queued
        );
        assert_eq!(
            outbox.push(Bytes::from_static(b"dddddd"), sub(), 10),
            PushOutcome::Overflowed
        );
        assert!(outbox.overflowed());
        assert_eq!(
            outbox.push(Bytes::from_static(b"e"), sub(), 10),
            PushOutcome::Dropped
        );
        assert_eq!(outbox.pending_bytes(), 0);
    }

    /// A bounded drain takes whole messages, in order, until the budget is met, and leaves
    /// the rest counted.
    #[test]
    fn drains_in_bounded_chunks() {
        let outbox = Outbox::default();
        let sub = || (Kind::Channel, Bytes::from_static(b"c"));
        for message in [&b"aaa"[..], b"bbb", b"ccc"] {
            outbox.push(Bytes::copy_from_slice(message), sub(), 0);
        }
        let mut drained = Vec::new();
        assert_eq!(outbox.drain_into(&mut drained, 4), 6);
        assert_eq!(outbox.pending_bytes(), 3);
        assert_eq!(outbox.drain_into(&mut drained, 4), 3);
        let messages: Vec<Bytes> = drained.into_iter().map(|(m, _)| m).collect();
        assert_eq!(messages, [&b"aaa"[..], b"bbb", b"ccc"]);
        assert_eq!(outbox.drain_into(&mut Vec::new(), 4), 0);
    }
}
