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
//! - Flags: bit 0 `ARMED` says the user has an entry in its shard's timing wheel, so that a user
//!   who goes offline and comes back before that entry fires does not get a second one; bits
//!   1-2 hold the status the app last reported (`online`, `away`, `busy`); bit 3 `EXTRA` says
//!   the user has devices or a manual override in the shard's extras table (only then is that
//!   table consulted); bit 4 is free.
//! - A last-seen field of 0 means never seen; a slot can be non-zero with it (a user given a
//!   manual override before their first heartbeat).

use super::status::AppStatus;

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
const APP_SHIFT: u32 = 1;
const APP_MASK: u64 = 0b11 << APP_SHIFT;
const FLAG_EXTRA: u64 = 1 << 3;

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
        match self.0 >> LAST_SEEN_SHIFT {
            0 => None,
            offset => Some(offset + EPOCH_MS),
        }
    }

    pub fn app_status(self) -> AppStatus {
        AppStatus::from_bits((self.0 & APP_MASK) >> APP_SHIFT)
    }

    pub fn with_app_status(self, status: AppStatus) -> Slot {
        Slot((self.0 & !APP_MASK) | (status.bits() << APP_SHIFT))
    }

    pub fn has_extra(self) -> bool {
        self.0 & FLAG_EXTRA != 0
    }

    pub fn with_extra(self, extra: bool) -> Slot {
        Slot(if extra {
            self.0 | FLAG_EXTRA
        } else {
            self.0 & !FLAG_EXTRA
        })
    }

    /// The same slot with another last-seen (`None`: never seen) and TTL, flags kept.
    pub fn with_times(self, last_seen_ms: Option<u64>, ttl_s: u64) -> Slot {
        let flags = self.0 & ((1 << FLAG_BITS) - 1);
        let base = match last_seen_ms {
            Some(ms) => Slot::new(ms, ttl_s.min(SLOT_TTL_S_MAX), false).0,
            None => (ttl_s.min(SLOT_TTL_S_MAX) & TTL_MASK) << TTL_SHIFT,
        };
        Slot(base | flags)
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
        Slot(if armed {
            self.0 | FLAG_ARMED
        } else {
            self.0 & !FLAG_ARMED
        })
    }

    /// A plain slot (seen, no extras entry) as the replication stream packs it
    /// (`store::packed`): its last-seen offset from the epoch and its 19-bit tail (TTL and app
    /// status), the `ARMED` bit dropped. `None` for a slot that is not plain.
    pub fn packed_parts(self) -> Option<(u64, u32)> {
        let offset = self.0 >> LAST_SEEN_SHIFT;
        let flags = self.0 & ((1 << FLAG_BITS) - 1) & !FLAG_ARMED;
        if offset == 0 || flags & !APP_MASK != 0 {
            return None;
        }
        let tail = ((self.0 >> TTL_SHIFT) & TTL_MASK) << 2 | (flags >> APP_SHIFT);
        Some((offset, tail as u32))
    }

    /// The slot `packed_parts` split, unarmed; `None` for parts no plain slot has.
    pub fn from_packed_parts(offset: u64, tail: u32) -> Option<Slot> {
        if offset == 0 || offset > LAST_SEEN_OFFSET_MAX || tail >> (TTL_BITS + 2) != 0 {
            return None;
        }
        let tail = u64::from(tail);
        Some(Slot(
            (offset << LAST_SEEN_SHIFT) | ((tail >> 2) << TTL_SHIFT) | ((tail & 0b11) << APP_SHIFT),
        ))
    }

    /// The same last-seen, marked offline, with the app status back to its default.
    pub fn offline(self) -> Slot {
        Slot(self.0 & !(TTL_MASK << TTL_SHIFT) & !APP_MASK)
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
        let busy = slot.with_app_status(AppStatus::Busy).with_extra(true);
        assert_eq!(busy.app_status(), AppStatus::Busy);
        assert!(busy.has_extra() && busy.armed());
        assert_eq!(busy.last_seen_ms(), Some(now_ms));
        assert_eq!(busy.offline().app_status(), AppStatus::Online);
        // The stream's packing: plain slots only, every field back.
        let dnd = slot.with_app_status(AppStatus::Dnd);
        let (offset, tail) = dnd.packed_parts().expect("plain");
        assert_eq!(
            Slot::from_packed_parts(offset, tail),
            Some(dnd.with_armed(false))
        );
        assert_eq!(dnd.with_extra(true).packed_parts(), None);
        assert_eq!(Slot::NEVER_SEEN.packed_parts(), None);
        assert_eq!(Slot::from_packed_parts(0, tail), None);
        assert_eq!(Slot::from_packed_parts(offset, 1 << 19), None);
        let unseen = Slot::NEVER_SEEN.with_extra(true);
        assert!(!unseen.is_never_seen());
        assert_eq!(unseen.last_seen_ms(), None);
        let moved = busy.with_times(Some(now_ms + 5), 7);
        assert_eq!((moved.last_seen_ms(), moved.ttl_s()), (Some(now_ms + 5), 7));
        assert!(moved.has_extra() && moved.armed());
    }
}
