//! `maxmemory`: the limit, and the used-memory figure it is compared with.
//!
//! Used memory is the process's resident set (RSS): the dense slot arrays are anonymous
//! mappings whose pages cost memory only once written, which no allocator counter sees, and
//! RSS is also what the kernel's OOM killer and an operator's dashboard judge. Reading it is a
//! `/proc` read, too slow for every command, so the gauge keeps the last reading and adds the
//! store's own count of what it added since (`store::Growth`: new dense pages, side-table and
//! extras entries, values). A timer refreshes the reading (`MEMORY_REFRESH_MS`), and so does
//! anything that may have changed it a lot (`FLUSHALL`, `CONFIG SET maxmemory`, `INFO`, a
//! snapshot load). Checking the limit is then three relaxed atomic loads, and none while no
//! limit is set.
//!
//! This module does the one `/proc/self/statm` read; it decides nothing about commands (`cmd`
//! turns `over_limit` into refusals, the store judges per user with `Room`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::{Growth, Room};

pub struct MemoryGauge {
    /// The limit in bytes; 0 is none (the default, as in Redis).
    maxmemory_bytes: AtomicU64,
    /// The resident size at the last refresh minus the store's growth count then (wrapping):
    /// adding the count now gives the resident size plus what the store added since. One
    /// atomic, so a reader never pairs one refresh's reading with another's count.
    baseline_bytes: AtomicU64,
    growth: Growth,
}

impl MemoryGauge {
    /// A gauge over the store's `growth`, with its first reading taken now.
    pub fn new(maxmemory_bytes: u64, growth: Growth) -> MemoryGauge {
        let gauge = MemoryGauge {
            maxmemory_bytes: AtomicU64::new(maxmemory_bytes),
            baseline_bytes: AtomicU64::new(0),
            growth,
        };
        gauge.refresh();
        gauge
    }

    /// Reads the resident size again; returns it. The growth count is read first: what the
    /// store adds between the two reads is then counted twice until the next refresh (an
    /// overestimate, which errs on the side of the limit), never missed.
    pub fn refresh(&self) -> u64 {
        let growth_bytes = self.growth.total_bytes();
        let resident_bytes = resident_bytes();
        self.baseline_bytes
            .store(resident_bytes.wrapping_sub(growth_bytes), Ordering::Relaxed);
        resident_bytes
    }

    /// The used-memory figure `maxmemory` is compared with (`INFO`'s `used_memory`).
    pub fn used_bytes(&self) -> u64 {
        self.baseline_bytes
            .load(Ordering::Relaxed)
            .wrapping_add(self.growth.total_bytes())
    }

    pub fn maxmemory_bytes(&self) -> u64 {
        self.maxmemory_bytes.load(Ordering::Relaxed)
    }

    /// `CONFIG SET maxmemory`: takes a fresh reading first, so that the next command is judged
    /// against the new limit with a current figure.
    pub fn set_maxmemory_bytes(&self, bytes: u64) {
        self.refresh();
        self.maxmemory_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Whether a limit is set and used memory is above it (Redis's `used > maxmemory`).
    #[inline]
    pub fn over_limit(&self) -> bool {
        let max = self.maxmemory_bytes.load(Ordering::Relaxed);
        max != 0 && self.used_bytes() > max
    }

    /// What the store is told about room for new users and values.
    #[inline]
    pub fn room(&self) -> Room {
        if self.over_limit() {
            Room::Full
        } else {
            Room::Available
        }
    }
}

/// The process's resident memory, from `/proc/self/statm` (size resident shared ... in pages).
/// 0 where there is no such file: then no limit is ever reached, which is said in the docs.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figure is the last reading plus what the store added since; a refresh folds the
    /// growth into a new reading; the limit is crossed strictly above it, and 0 is no limit.
    #[test]
    fn used_memory_is_the_reading_plus_growth() {
        let growth = Growth::default();
        let gauge = MemoryGauge::new(0, growth.clone());
        let resident = gauge.used_bytes();
        assert!(resident > 0, "a Linux process has a resident size");
        growth.add(1 << 20);
        assert_eq!(gauge.used_bytes(), resident + (1 << 20));
        assert!(!gauge.over_limit(), "no limit");
        assert_eq!(gauge.room(), Room::Available);
        gauge.set_maxmemory_bytes(1);
        assert!(gauge.over_limit());
        assert_eq!(gauge.room(), Room::Full);
        let refreshed = gauge.used_bytes();
        assert!(
            refreshed < resident + (1 << 20) + (64 << 20),
            "a refresh replaces the growth by a new reading: {refreshed}"
        );
        gauge.set_maxmemory_bytes(refreshed + (256 << 20));
        assert!(!gauge.over_limit());
        gauge.set_maxmemory_bytes(0);
        assert!(!gauge.over_limit());
    }
}
