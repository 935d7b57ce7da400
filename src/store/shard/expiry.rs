//! Offline detection in a shard: advancing its timing wheels and settling the users whose
//! entries are due.
//!
//! Looks only at entries that are due, never at the whole slot array, and changes users only
//! through settling and the door: an entry that fires never writes a slot itself.

use super::Shard;
use super::door::Change;
use crate::store::event::{Cause, Transition};
use crate::store::extra::ShardKey;

/// What one pass of offline detection did.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExpiryPass {
    /// Users declared offline because their TTL or grace period ran out.
    pub expired_count: u64,
    /// Entries still online that were re-armed at their new deadline.
    pub rearmed_count: u64,
}

impl Shard {
    /// Declares offline every user whose deadline has passed, looking only at wheel entries
    /// that are due, never at the whole slot array. At most about `due_max` entries per call.
    pub fn expire_due(
        &mut self,
        now_ms: u64,
        due_max: usize,
        events: &mut Vec<Transition>,
    ) -> ExpiryPass {
        let expired_before = self.tables.counters().went_offline_timeout_count;
        let mut pass = ExpiryPass::default();
        let mut due = Vec::new();
        self.dense_wheel.advance(now_ms, &mut due, due_max);
        for (tick, index) in due {
            self.fire(ShardKey::Dense(index), tick, now_ms, events, &mut pass);
        }
        let mut due = Vec::new();
        self.side_wheel.advance(now_ms, &mut due, due_max);
        for (tick, id) in due {
            self.fire(ShardKey::Side(&id), tick, now_ms, events, &mut pass);
        }
        pass.expired_count = self.tables.counters().went_offline_timeout_count - expired_before;
        pass
    }

    fn fire(
        &mut self,
        key: ShardKey<'_>,
        tick: u64,
        now_ms: u64,
        events: &mut Vec<Transition>,
        pass: &mut ExpiryPass,
    ) {
        let slot = self.tables.slot(key);
        if slot.is_never_seen() {
            // The entry of a user forgotten since it was armed: nobody is left to settle, and
            // committing would store the user again.
            return self.drop_forgotten_entry(key);
        }
        if slot.has_extra() {
            let Some(stored) = self.tables.extra(key) else {
                return self.repair_missing_extra(key, now_ms, events);
            };
            let mut extra = stored.clone();
            extra.wheel_entries = extra.wheel_entries.saturating_sub(1);
            if extra.wheel_tick == Some(tick) {
                extra.wheel_tick = None;
            }
            return self.settle_and_commit(key, extra, now_ms, events, Cause::Timeout);
        }
        // A plain user has exactly one entry: this one.
        match slot.deadline_ms() {
            Some(deadline_ms) if now_ms < deadline_ms => {
                pass.rearmed_count += 1;
                self.arm(key, deadline_ms);
            }
            _ => {
                self.settle(key, now_ms, events);
                let settled = self.tables.slot(key);
                let disarmed = Change::slot(key, settled.with_armed(false), Cause::Timeout);
                self.commit(disarmed, now_ms, events);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

    /// A heartbeat with a shorter TTL than the one pending is still detected on time.
    #[test]
    fn shortened_ttl_expires_on_time() {
        let mut shard = shard();
        let user = ShardKey::Dense(3);
        let mut events = Vec::new();
        shard
            .heartbeat(user, 3600, None, None, Room::Available, T0_MS, &mut events)
            .unwrap();
        shard
            .heartbeat(
                user,
                1,
                None,
                None,
                Room::Available,
                T0_MS + 100,
                &mut events,
            )
            .unwrap();
        assert_eq!(
            tick(&mut shard, T0_MS + 1_100),
            vec![(State::Offline, Some(T0_MS + 100))]
        );
        // The superseded entry fires an hour later and changes nothing.
        assert!(tick(&mut shard, T0_MS + 3_700_000).is_empty());
        assert_eq!(shard.wheel_len(), 0);
        assert_eq!(shard.extras_count(), 0, "the user is plain again");
    }

    /// Logging out and back in with a shorter TTL than the pending entry is still detected on
    /// time, and the superseded entry changes nothing when it fires.
    #[test]
    fn relogin_with_shorter_ttl_expires_on_time() {
        let mut shard = shard();
        let user = ShardKey::Dense(500);
        let mut events = Vec::new();
        shard
            .heartbeat(user, 3600, None, None, Room::Available, T0_MS, &mut events)
            .unwrap();
        assert!(shard.offline(user, None, T0_MS + 10, &mut events));
        assert_eq!(
            shard.heartbeat(
                user,
                1,
                None,
                None,
                Room::Available,
                T0_MS + 20,
                &mut events
            ),
            Ok(true)
        );
        assert_eq!(
            tick(&mut shard, T0_MS + 1_100),
            vec![(State::Offline, Some(T0_MS + 20))]
        );
        assert_eq!(shard.online_count(), 0);
        assert!(tick(&mut shard, T0_MS + 3_700_000).is_empty());
        assert_eq!(shard.wheel_len(), 0);
    }

    /// 100,000 users expiring in the same second are all declared offline in one pass.
    #[test]
    fn mass_expiry() {
        let mut shard = Shard::new(200_000, 0, 1, Default::default(), T0_MS).expect("map");
        let mut events = Vec::new();
        for i in 0..100_000 {
            shard
                .heartbeat(
                    ShardKey::Dense(i),
                    1,
                    None,
                    None,
                    Room::Available,
                    T0_MS + (i as u64 % 1000),
                    &mut events,
                )
                .unwrap();
        }
        events.clear();
        shard.expire_due(T0_MS + 2_100, usize::MAX, &mut events);
        assert_eq!(events.len(), 100_000);
        assert_eq!(shard.online_count(), 0);
        assert!(shard.lag().quantile_ms(1.0) <= 1_100);
    }
}
