//! The 8-byte slot: one user's last-seen time, TTL and flags packed in a `u64`.
//!
//! ```text
//!  63                          22 21              5 4     0
//! +------------------------------+-----------------+-------+
//! | last_seen_ms - EPOCH_MS (42) |   ttl_s (17)    | flags |
//! +------------------------------+-----------------+-------+
//! ```
//! - A slot of all zeros is a user never seen: untouched (zero) pages need no initialisation.
//! - 42 bits of milliseconds from 2020-01-01 last until the year 2159.
//! - `ttl_s` is how long the last heartbeat keeps the user online; 0 means offline (logged out or
//!   expired). 17 bits hold up to 131,071 s, above the 86,400 s TTL maximum. The deadline is
//!   `last_seen_ms + ttl_s * 1000`: a user is online while `now_ms` is before it.
//! - `ARMED` says the user has an entry in its shard's timing wheel, so that a user who goes
//!   offline and comes back before that entry fires does not get a second one.

/// 2020-01-01T00:00:00Z in Unix milliseconds.
pub const EPOCH_MS: u64 = 1_577_836_800_000;

const LAST_SEEN_BITS: u32 = 42;
const TTL_BITS: u32 = 17;
const FLAG_BITS: u32 = 5;
const _: () = assert!(LAST_SEEN_BITS + TTL_BITS + FLAG_BITS == 64);

const TTL_SHIFT: u32 = FLAG_BITS;
const LAST_SEEN_SHIFT: u32 = FLAG_BITS + TTL_BITS;
const TTL_MASK: u64 = (1 << TTL_BITS) - 1;
const LAST_SEEN_OFFSET_MAX: u64 = (1 << LAST_SEEN_BITS) - 1;

/// The largest TTL a slot can hold.
pub const SLOT_TTL_S_MAX: u64 = TTL_MASK;

const FLAG_ARMED: u64 = 1;

/// One user's presence as stored. `Slot(0)` is a user never seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot(pub u64);

impl Slot {
    pub const NEVER_SEEN: Slot = Slot(0);

    pub fn is_never_seen(self) -> bool {
        self.0 == 0
    }

    /// Last-seen in Unix milliseconds, `None` for a user never seen.
    pub fn last_seen_ms(self) -> Option<u64> {
        if self.is_never_seen() {
            None
        } else {
            Some((self.0 >> LAST_SEEN_SHIFT) + EPOCH_MS)
        }
    }

    pub fn ttl_s(self) -> u64 {
        (self.0 >> TTL_SHIFT) & TTL_MASK
    }

    pub fn armed(self) -> bool {
        self.0 & FLAG_ARMED != 0
    }

    /// When the user goes offline, `None` when already marked offline.
    pub fn deadline_ms(self) -> Option<u64> {
        let ttl_s = self.ttl_s();
        if ttl_s == 0 {
            return None;
        }
        self.last_seen_ms().map(|seen| seen + ttl_s * 1000)
    }

    pub fn is_online(self, now_ms: u64) -> bool {
        self.deadline_ms().is_some_and(|deadline| now_ms < deadline)
    }

    /// A slot seen at `last_seen_ms`, online for `ttl_s` seconds (0: offline), with `armed`.
    pub fn new(last_seen_ms: u64, ttl_s: u64, armed: bool) -> Slot {
        debug_assert!(ttl_s <= SLOT_TTL_S_MAX);
        // Times before the epoch cannot come from a sane clock; clamp to 1 ms after it so the
        // slot never collides with NEVER_SEEN.
        let offset = last_seen_ms
            .saturating_sub(EPOCH_MS)
            .clamp(1, LAST_SEEN_OFFSET_MAX);
        Slot(
            (offset << LAST_SEEN_SHIFT)
                | ((ttl_s & TTL_MASK) << TTL_SHIFT)
                | if armed { FLAG_ARMED } else { 0 },
        )
    }

    pub fn with_armed(self, armed: bool) -> Slot {
        if self.is_never_seen() {
            return self;
        }
        Slot(if armed {
            self.0 | FLAG_ARMED
        } else {
            self.0 & !FLAG_ARMED
        })
    }

    /// The same last-seen, marked offline.
    pub fn offline(self) -> Slot {
        if self.is_never_seen() {
            return self;
        }
        Slot(self.0 & !(TTL_MASK << TTL_SHIFT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let now_ms = 1_764_000_000_123;
        let slot = Slot::new(now_ms, 30, true);
        assert_eq!(slot.last_seen_ms(), Some(now_ms));
        assert_eq!(slot.ttl_s(), 30);
        assert!(slot.armed());
        assert_eq!(slot.deadline_ms(), Some(now_ms + 30_000));
        assert!(slot.is_online(now_ms + 29_999));
        assert!(!slot.is_online(now_ms + 30_000));
        let off = slot.offline();
        assert_eq!(off.last_seen_ms(), Some(now_ms));
        assert!(!off.is_online(now_ms));
        assert!(off.armed());
        assert!(!off.with_armed(false).armed());
        assert_eq!(
            Slot::new(now_ms, SLOT_TTL_S_MAX, false).ttl_s(),
            SLOT_TTL_S_MAX
        );
        assert!(!Slot::new(0, 0, false).is_never_seen());
    }
}
