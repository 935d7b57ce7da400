//! Which users some client `WATCH`es, and a version per watched user that every change to it
//! moves (`EXEC` compares versions to know whether a watched key changed).
//!
//! Derived from change records like everything else the door keeps: `door.rs` bumps the
//! version of a watched user on each commit. Empty unless someone watches, so a commit pays one
//! `is_empty` check; this module never decides what a change is.

use hashbrown::HashMap;

use crate::store::extra::{OwnedKey, ShardKey};

/// What `WATCH` saw of a user's version; `EXEC` proceeds only if it is still current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchMark {
    version: u64,
}

#[derive(Debug)]
struct Watched {
    version: u64,
    watchers: u32,
}

#[derive(Debug, Default)]
pub(super) struct WatchTable {
    entries: HashMap<OwnedKey, Watched>,
    /// Moves on `FLUSHALL`, so that every mark taken before it reads as changed, and keeps
    /// versions of a user watched again after being unwatched from repeating old values.
    epoch: u64,
}

impl WatchTable {
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One more watcher of `key`; the mark to compare with later.
    pub(super) fn watch(
        &mut self,
        key: ShardKey<'_>,
        owned: impl FnOnce() -> OwnedKey,
    ) -> WatchMark {
        if let Some(watched) = self.entries.get_mut(&key) {
            watched.watchers += 1;
            return WatchMark {
                version: watched.version,
            };
        }
        self.epoch += 1;
        let version = self.epoch << 32;
        self.entries.insert(
            owned(),
            Watched {
                version,
                watchers: 1,
            },
        );
        WatchMark { version }
    }

    /// One watcher fewer; the entry goes with the last.
    pub(super) fn unwatch(&mut self, key: ShardKey<'_>) {
        let Some(watched) = self.entries.get_mut(&key) else {
            return;
        };
        watched.watchers = watched.watchers.saturating_sub(1);
        if watched.watchers == 0 {
            self.entries.remove(&key);
        }
    }

    /// Whether `key` is unchanged since `mark` was taken.
    pub(super) fn intact(&self, key: ShardKey<'_>, mark: WatchMark) -> bool {
        self.entries
            .get(&key)
            .is_some_and(|watched| watched.version == mark.version)
    }

    /// A change to `key` (called by the door for every commit while anyone watches).
    #[inline]
    pub(super) fn touch(&mut self, key: ShardKey<'_>) {
        if let Some(watched) = self.entries.get_mut(&key) {
            watched.version += 1;
        }
    }

    /// Every watched user for whom `existed` holds changed at once (`FLUSHALL`: as in Redis,
    /// a watched key that did not exist is not changed by emptying the database).
    pub(super) fn touch_where(&mut self, existed: impl Fn(ShardKey<'_>) -> bool) {
        for (key, watched) in self.entries.iter_mut() {
            let key = match key {
                OwnedKey::Dense(index) => ShardKey::Dense(*index),
                OwnedKey::Side(id) => ShardKey::Side(id),
            };
            if existed(key) {
                watched.version += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mark stays intact until its user is touched; two watchers share one entry, which
    /// goes when both unwatch; re-watching starts from a version no old mark can match.
    #[test]
    fn marks_track_changes() {
        let mut table = WatchTable::default();
        let key = ShardKey::Dense(7);
        let a = table.watch(key, || OwnedKey::Dense(7));
        let b = table.watch(key, || OwnedKey::Dense(7));
        assert_eq!(a, b);
        assert!(table.intact(key, a));
        table.touch(ShardKey::Dense(8));
        assert!(table.intact(key, a), "another user's change");
        table.touch(key);
        assert!(!table.intact(key, a));
        table.unwatch(key);
        assert!(!table.is_empty());
        table.unwatch(key);
        assert!(table.is_empty());
        let c = table.watch(key, || OwnedKey::Dense(7));
        assert_ne!(c, a);
        table.touch_where(|_| false);
        assert!(
            table.intact(key, c),
            "a key that did not exist is not flushed"
        );
        table.touch_where(|_| true);
        assert!(!table.intact(key, c));
    }
}
