//! Per-command counters (`INFO commandstats`): the calls, time, rejections and failures of
//! every command and subcommand, kept in one table per thread so that running a command writes
//! only memory its own thread owns. No shared atomic is incremented per command: a HEARTBEAT
//! costs about half a microsecond, and a locked add on a cache line that every core writes
//! would cost a good part of that under load. `INFO` sums the tables when it reads them.
//!
//! `cmd` numbers the rows (one per command and subcommand, in table order) and says what to
//! count; this module only counts.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::clock;
use crate::limits::{COMMAND_ROWS_MAX, COMMAND_TABLES_MAX};

/// One command's counters in one thread's table. Atomics only so that `INFO`, on another
/// thread, may read them; the owning thread writes them with a plain load and store.
#[derive(Debug, Default)]
struct RowCounters {
    calls: AtomicU64,
    /// In `clock::ticks`, converted when read.
    duration_ticks: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

/// One row's raw sums over the threads, time in ticks.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    calls: u64,
    duration_ticks: u64,
    rejected: u64,
    failed: u64,
}

/// One row's counts, summed over every thread (less what `CONFIG RESETSTAT` took away).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandTotals {
    /// Times the command ran (whether it answered an error or not).
    pub calls: u64,
    /// Time those calls took, in nanoseconds.
    pub duration_ns: u64,
    /// Times it was refused before it could run: wrong arity, no authentication, not allowed
    /// in a transaction or while subscribed.
    pub rejected: u64,
    /// Times it ran and answered an error.
    pub failed: u64,
}

impl CommandTotals {
    pub fn any(&self) -> bool {
        self.calls > 0 || self.rejected > 0 || self.failed > 0
    }
}

/// The table a thread writes to: the one it claimed, or the shared last one. Tables are never
/// freed (their counts outlive their threads), so a thread holds its own as `'static` and
/// reaches a row with one bounds check.
#[derive(Clone, Copy)]
pub struct LocalTable {
    rows: &'static [RowCounters],
    /// The shared table: other threads write it too.
    shared: bool,
}

impl std::fmt::Debug for LocalTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTable")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl LocalTable {
    /// A command that ran for `duration_ticks` (of `clock::ticks`), and whether it answered an
    /// error.
    #[inline]
    pub fn record_call(&self, row: usize, duration_ticks: u64, failed: bool) {
        let Some(counters) = self.rows.get(row) else {
            debug_assert!(false, "row {row} does not exist");
            return;
        };
        bump(&counters.calls, 1, self.shared);
        bump(&counters.duration_ticks, duration_ticks, self.shared);
        if failed {
            bump(&counters.failed, 1, self.shared);
        }
    }

    /// A command refused before it could run.
    pub fn record_rejected(&self, row: usize) {
        if let Some(counters) = self.rows.get(row) {
            bump(&counters.rejected, 1, self.shared);
        }
    }
}

/// The index of the table shared by threads that came after every private table was claimed.
const SHARED_TABLE: usize = COMMAND_TABLES_MAX;

/// Tells apart the `CommandStats` of one process (in-process tests build several servers).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The table this thread claimed, and in which `CommandStats` (by `id`); `(0, None)`
    /// before the first command. A thread that serves another `CommandStats` claims a table
    /// there.
    static CLAIMED: Cell<(u64, Option<LocalTable>)> = const { Cell::new((0, None)) };
}

/// Every thread's table of per-command counters.
pub struct CommandStats {
    id: u64,
    /// `COMMAND_TABLES_MAX` private tables and the shared one, each allocated when claimed
    /// and never freed: a process has one `CommandStats` (in-process tests a few), each with at
    /// most `COMMAND_TABLES_MAX + 1` tables of 8 KiB.
    tables: Box<[OnceLock<&'static [RowCounters]>]>,
    claimed: AtomicUsize,
    /// The sums `CONFIG RESETSTAT` saw, subtracted from every later read. Zeroing the tables
    /// instead would race with their owners' plain load-and-store updates and lose the reset.
    baseline: Mutex<Vec<Sums>>,
}

impl Default for CommandStats {
    fn default() -> Self {
        CommandStats {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            tables: (0..=COMMAND_TABLES_MAX).map(|_| OnceLock::new()).collect(),
            claimed: AtomicUsize::new(0),
            baseline: Mutex::new(vec![Sums::default(); COMMAND_ROWS_MAX]),
        }
    }
}

impl std::fmt::Debug for CommandStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandStats")
            .field("claimed", &self.claimed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn new_table() -> &'static [RowCounters] {
    let table: Box<[RowCounters]> = (0..COMMAND_ROWS_MAX)
        .map(|_| RowCounters::default())
        .collect();
    Box::leak(table)
}

impl CommandStats {
    /// This thread's table, claimed the first time the thread asks. Called once per batch of
    /// requests: a connection's task may move to another thread between batches, never within
    /// one (no await happens inside a batch).
    pub fn local(&self) -> LocalTable {
        if let (id, Some(table)) = CLAIMED.get()
            && id == self.id
        {
            return table;
        }
        let slot = self
            .claimed
            .fetch_add(1, Ordering::Relaxed)
            .min(SHARED_TABLE);
        let table = LocalTable {
            rows: self.tables[slot].get_or_init(new_table),
            shared: slot == SHARED_TABLE,
        };
        CLAIMED.set((self.id, Some(table)));
        table
    }

    /// Every row's counts since the start (or the last `reset`), summed over the threads.
    pub fn totals(&self) -> Vec<CommandTotals> {
        let sums = self.sums();
        let baseline = self
            .baseline
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sums.iter()
            .zip(baseline.iter())
            .map(|(sum, base)| CommandTotals {
                calls: sum.calls.saturating_sub(base.calls),
                duration_ns: clock::ticks_to_ns(
                    sum.duration_ticks.saturating_sub(base.duration_ticks),
                ),
                rejected: sum.rejected.saturating_sub(base.rejected),
                failed: sum.failed.saturating_sub(base.failed),
            })
            .collect()
    }

    /// `CONFIG RESETSTAT`: every row reads zero from now on.
    pub fn reset(&self) {
        let sums = self.sums();
        *self
            .baseline
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = sums;
    }

    fn sums(&self) -> Vec<Sums> {
        let mut sums = vec![Sums::default(); COMMAND_ROWS_MAX];
        for table in self.tables.iter().filter_map(OnceLock::get) {
            for (sum, row) in sums.iter_mut().zip(table.iter()) {
                sum.calls += row.calls.load(Ordering::Relaxed);
                sum.duration_ticks += row.duration_ticks.load(Ordering::Relaxed);
                sum.rejected += row.rejected.load(Ordering::Relaxed);
                sum.failed += row.failed.load(Ordering::Relaxed);
            }
        }
        sums
    }
}

/// Adds `n` to a counter. A private table has one writer, its thread, so a load and a store
/// suffice (no locked instruction; a reader sees the old or the new value); the shared table
/// has several and takes an atomic add.
#[inline]
fn bump(counter: &AtomicU64, n: u64, shared: bool) {
    if shared {
        counter.fetch_add(n, Ordering::Relaxed);
    } else {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four threads each count 1,000 calls of row 3 in their own table; the totals are the
    /// sum, a reset makes them read zero, and later counts show from zero again.
    #[test]
    fn threads_count_apart_and_sum_on_read() {
        let stats = CommandStats::default();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        let table = stats.local();
                        table.record_call(3, clock::ns_to_ticks(10_000), false);
                    }
                    stats.local().record_call(3, 0, true);
                    stats.local().record_rejected(4);
                });
            }
        });
        let totals = stats.totals();
        assert_eq!(
            (totals[3].calls, totals[3].rejected, totals[3].failed),
            (4004, 0, 4)
        );
        let duration_ns = totals[3].duration_ns;
        // Each conversion of 10 µs to ticks rounds down by up to a tick (a fraction of a ns).
        assert!(duration_ns.abs_diff(40_000_000) < 10_000, "{duration_ns}");
        assert_eq!(totals[4].rejected, 4);
        assert!(!totals[5].any());
        assert_eq!(
            stats.claimed.load(Ordering::Relaxed),
            4,
            "one table a thread"
        );
        stats.reset();
        assert!(stats.totals().iter().all(|t| !t.any()));
        stats
            .local()
            .record_call(3, clock::ns_to_ticks(5_000), false);
        assert_eq!(stats.totals()[3].calls, 1);
        assert!(stats.totals()[3].duration_ns.abs_diff(5_000) < 10);
    }

    /// Threads that come after every private table was claimed share the last one, and lose no
    /// count there.
    #[test]
    fn threads_past_the_private_tables_share_one_exactly() {
        let stats = CommandStats::default();
        stats.claimed.store(COMMAND_TABLES_MAX, Ordering::Relaxed);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let table = stats.local();
                    assert!(table.shared);
                    for _ in 0..10_000 {
                        table.record_call(0, 1, false);
                    }
                });
            }
        });
        assert_eq!(stats.totals()[0].calls, 40_000);
    }

    /// Two `CommandStats` in one process (two in-process servers) keep apart counts that the
    /// same thread recorded.
    #[test]
    fn separate_stats_on_one_thread() {
        let (a, b) = (CommandStats::default(), CommandStats::default());
        a.local().record_call(1, 1, false);
        b.local().record_call(1, 1, false);
        a.local().record_call(1, 1, false);
        assert_eq!(a.totals()[1].calls, 2);
        assert_eq!(b.totals()[1].calls, 1);
    }
}
