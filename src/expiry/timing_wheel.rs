//! A hashed timing wheel of 100 ms ticks holding at most one entry per online user.
//!
//! Entries are not moved when a heartbeat pushes a deadline back: the entry fires at the old
//! deadline, the shard sees the user is still online and re-arms it at the new deadline. A
//! heartbeat therefore never touches the wheel, and costs O(1) with no allocation. Deadlines
//! beyond the wheel's horizon are parked in its last bucket and re-armed the same way.

/// Width of one bucket. A bucket fires once its whole interval has passed, so a deadline is
/// seen at most one tick plus one timer period late.
pub const TICK_MS: u64 = 100;

/// A drained bucket keeps at most this much capacity for reuse.
const BUCKET_KEEP_CAPACITY: usize = 4096;

/// 16,384 ticks x 100 ms = 27 minutes of horizon; 16,384 empty buckets cost 384 KiB.
const BUCKET_COUNT: u64 = 16_384;

#[derive(Debug)]
pub struct TimingWheel<T> {
    buckets: Vec<Vec<T>>,
    /// Absolute tick (`deadline_ms / TICK_MS`, rounded up) of the next bucket to fire.
    next_tick: u64,
    len: usize,
}

impl<T> TimingWheel<T> {
    pub fn new(now_ms: u64) -> Self {
        Self {
            buckets: (0..BUCKET_COUNT).map(|_| Vec::new()).collect(),
            next_tick: now_ms / TICK_MS,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `item` to fire no earlier than `deadline_ms`, unless the deadline is beyond the
    /// horizon, in which case it fires at the horizon and the caller re-arms it. Returns the
    /// tick it will fire at, which `advance` hands back with the item.
    pub fn insert(&mut self, deadline_ms: u64, item: T) -> u64 {
        let tick = self.tick_for(deadline_ms);
        self.buckets[(tick % BUCKET_COUNT) as usize].push(item);
        self.len += 1;
        tick
    }

    /// The tick an entry inserted now with `deadline_ms` would fire at.
    pub fn tick_for(&self, deadline_ms: u64) -> u64 {
        deadline_ms
            .div_ceil(TICK_MS)
            .clamp(self.next_tick, self.next_tick + BUCKET_COUNT - 1)
    }

    /// Moves every entry whose bucket has fully passed by `now_ms` into `due`, with the tick it
    /// was scheduled for, stopping after the bucket in which `due` reaches `due_max` so that one
    /// call's work is bounded.
    pub fn advance(&mut self, now_ms: u64, due: &mut Vec<(u64, T)>, due_max: usize) {
        while self.next_tick * TICK_MS <= now_ms && due.len() < due_max {
            let tick = self.next_tick;
            let bucket = &mut self.buckets[(tick % BUCKET_COUNT) as usize];
            self.len -= bucket.len();
            due.extend(bucket.drain(..).map(|item| (tick, item)));
            if bucket.capacity() > BUCKET_KEEP_CAPACITY {
                // A storm's bucket would otherwise keep its memory for the wheel's lifetime.
                *bucket = Vec::new();
            }
            self.next_tick += 1;
        }
    }

    /// Unix milliseconds at which the next bucket fires.
    pub fn next_fire_ms(&self) -> u64 {
        self.next_tick * TICK_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries fire in the first advance at or after their deadline, never before.
    #[test]
    fn fires_at_deadline_not_before() {
        let start_ms = 1_000_000;
        let mut wheel = TimingWheel::new(start_ms);
        wheel.insert(start_ms + 1_050, "a");
        wheel.insert(start_ms + 1_100, "b");
        wheel.insert(start_ms + 5_000, "c");
        let mut due = Vec::new();
        wheel.advance(start_ms + 1_099, &mut due, usize::MAX);
        assert!(due.is_empty());
        wheel.advance(start_ms + 1_100, &mut due, usize::MAX);
        let items: Vec<&str> = due.iter().map(|(_, item)| *item).collect();
        assert_eq!(items, vec!["a", "b"]);
        assert_eq!(due[0].0, (start_ms + 1_100) / TICK_MS);
        assert_eq!(wheel.len(), 1);
        due.clear();
        wheel.advance(start_ms + 4_999, &mut due, usize::MAX);
        assert!(due.is_empty());
        wheel.advance(start_ms + 60_000, &mut due, usize::MAX);
        assert_eq!(due, vec![((start_ms + 5_000) / TICK_MS, "c")]);
        assert!(wheel.is_empty());
    }

    /// Past deadlines fire at the next advance; far deadlines fire at the horizon.
    #[test]
    fn clamps_past_and_far_deadlines() {
        let start_ms = 2_000_000;
        let mut wheel = TimingWheel::new(start_ms);
        wheel.insert(0, 1);
        let far_tick = wheel.insert(u64::MAX / 2, 2);
        let mut due = Vec::new();
        wheel.advance(start_ms, &mut due, usize::MAX);
        assert_eq!(due, vec![(start_ms / TICK_MS, 1)]);
        due.clear();
        wheel.advance(start_ms + BUCKET_COUNT * TICK_MS, &mut due, usize::MAX);
        assert_eq!(due, vec![(far_tick, 2)]);
    }

    /// A budget stops the advance early; the rest fires on the next call.
    #[test]
    fn advance_is_bounded() {
        let mut wheel = TimingWheel::new(0);
        for i in 0..10u64 {
            wheel.insert(i * TICK_MS, i);
        }
        let mut due = Vec::new();
        wheel.advance(10 * TICK_MS, &mut due, 3);
        assert_eq!(due.len(), 3);
        wheel.advance(10 * TICK_MS, &mut due, usize::MAX);
        assert_eq!(due.len(), 10);
    }
}
