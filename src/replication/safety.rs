//! The leader's safety knobs, as Redis has them: `WAIT` (how many followers acknowledged the
//! stream up to an offset) and `--min-replicas-to-write` / `--min-replicas-max-lag` (how many
//! followers acknowledged recently enough for writes to be taken, and for users to be
//! declared offline).
//!
//! The good-follower count is kept in an atomic, recomputed at every acknowledgement, every
//! follower joining or leaving, and every producer tick (a follower that stops acknowledging
//! turns bad by the clock alone), so the write path pays one or two relaxed loads.

use std::sync::atomic::Ordering;

use tokio::sync::watch;

use super::Replication;

impl Replication {
    /// `REPLCONF ACK <offset>` from a follower's link, at `now_ms`.
    pub fn record_ack(&self, client_id: u64, offset: u64, now_ms: u64) {
        self.update_follower(client_id, |f| {
            f.ack_offset = offset;
            f.last_ack_ms = now_ms;
        });
        self.followers_changed(now_ms);
    }

    /// Recounts the good followers and wakes the clients in `WAIT`. Called whenever a
    /// follower acknowledges, joins, leaves or finishes its full sync, and every producer tick.
    pub fn followers_changed(&self, now_ms: u64) {
        let max_lag_s = self.min_replicas_max_lag_s();
        let good = self
            .followers()
            .iter()
            // Redis's rule: online, and the last ACK at most max-lag seconds old, counted in
            // whole seconds (1,999 ms is "1 s", as INFO's `lag=` shows it).
            .filter(|f| {
                f.state == "online" && now_ms.saturating_sub(f.last_ack_ms) / 1000 <= max_lag_s
            })
            .count() as u64;
        self.good_followers.store(good, Ordering::Relaxed);
        self.acks.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Followers online whose last acknowledged offset is at least `offset`: what `WAIT`
    /// answers.
    pub fn acked_count(&self, offset: u64) -> u64 {
        self.followers()
            .iter()
            .filter(|f| f.state == "online" && f.ack_offset >= offset)
            .count() as u64
    }

    /// Rung at every acknowledgement (`WAIT` waits on it).
    pub fn watch_acks(&self) -> watch::Receiver<u64> {
        self.acks.subscribe()
    }

    /// Asks every follower to acknowledge now (`REPLCONF GETACK *` in the stream), rather
    /// than at its next once-a-second ACK: a `WAIT` is answered as soon as the followers have
    /// applied what it waits for.
    pub fn request_acks(&self) {
        self.with_frame(&[b"REPLCONF", b"GETACK", b"*"], || ());
    }

    /// `--min-replicas-to-write` (0: off).
    pub fn min_replicas_to_write(&self) -> u64 {
        self.min_to_write.load(Ordering::Relaxed)
    }

    pub fn min_replicas_max_lag_s(&self) -> u64 {
        self.max_lag_s.load(Ordering::Relaxed)
    }

    /// `CONFIG SET min-replicas-to-write` / `min-replicas-max-lag`.
    pub fn set_min_replicas(&self, to_write: Option<u64>, max_lag_s: Option<u64>) {
        if let Some(n) = to_write {
            self.min_to_write.store(n, Ordering::Relaxed);
        }
        if let Some(s) = max_lag_s {
            self.max_lag_s.store(s, Ordering::Relaxed);
        }
        self.followers_changed(crate::clock::now_ms());
    }

    /// Whether both knobs are set (Redis shows `min_slaves_good_slaves` then).
    pub fn min_replicas_enabled(&self) -> bool {
        self.min_replicas_to_write() > 0 && self.min_replicas_max_lag_s() > 0
    }

    pub fn good_followers(&self) -> u64 {
        self.good_followers.load(Ordering::Relaxed)
    }

    /// A leader with the knobs set and too few good followers: writes are refused with
    /// `-NOREPLICAS`, and no user is declared offline (an isolated old leader must not
    /// publish offline events that the side that carries on will not agree with). One relaxed
    /// load when the knob is off.
    pub fn too_few_good_followers(&self) -> bool {
        let min = self.min_replicas_to_write();
        min > 0
            && self.min_replicas_max_lag_s() > 0
            && !self.is_follower()
            && self.good_followers() < min
    }
}
