//! When snapshots are taken and what `INFO persistence` says about them: periodic saves,
//! `SAVE`, `BGSAVE`, saves at shutdown, and the load at start. At most one save runs at a time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::{LoadReport, ReplicationMark, SaveReport, SnapshotError};
use crate::store::Store;

#[derive(Debug, Default, Clone)]
pub struct PersistenceStatus {
    pub last_save: Option<SaveReport>,
    pub last_save_ok: bool,
    pub last_error: Option<String>,
    pub saves_total: u64,
    pub loaded: Option<LoadReport>,
    /// Snapshots found damaged at start, each named with the region that failed.
    pub rejected: Vec<String>,
}

/// Why a save did not happen.
#[derive(Debug)]
pub enum SaveError {
    /// A running save did not finish in time (the save at shutdown waits for it).
    StillRunning,
    /// The save ran and failed.
    Failed(SnapshotError),
}

impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaveError::StillRunning => f.write_str("a running snapshot did not finish"),
            SaveError::Failed(err) => err.fmt(f),
        }
    }
}

pub struct Persistence {
    pub dir: PathBuf,
    /// `None`: no periodic saves, and no save at shutdown unless asked (`SHUTDOWN SAVE`).
    pub interval: Option<Duration>,
    key_pattern: String,
    in_progress: AtomicBool,
    /// Signalled (under `released_lock`) when a save releases its claim, for `begin_waiting`.
    released: Condvar,
    released_lock: Mutex<()>,
    /// Wakes the background saver for `BGSAVE`.
    pub background_request: Notify,
    status: Mutex<PersistenceStatus>,
}

impl Persistence {
    pub fn new(dir: PathBuf, interval: Option<Duration>, key_pattern: String) -> Self {
        Self {
            dir,
            interval,
            key_pattern,
            in_progress: AtomicBool::new(false),
            released: Condvar::new(),
            released_lock: Mutex::new(()),
            background_request: Notify::new(),
            status: Mutex::new(PersistenceStatus {
                last_save_ok: true,
                ..PersistenceStatus::default()
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.interval.is_some()
    }

    pub fn status(&self) -> MutexGuard<'_, PersistenceStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn in_progress(&self) -> bool {
        self.in_progress.load(Ordering::Acquire)
    }

    /// Claims the right to save; false if a save is already running.
    pub fn try_begin(&self) -> bool {
        !self.in_progress.swap(true, Ordering::AcqRel)
    }

    /// Saves now on this thread (the caller claimed `try_begin`), records the outcome, and
    /// releases the claim.
    pub fn save_claimed(
        &self,
        store: &Store,
        started_ms: u64,
        replication: Option<ReplicationMark>,
    ) -> Result<SaveReport, SaveError> {
        let result =
            super::save_marked(store, &self.key_pattern, &self.dir, started_ms, replication);
        let mut status = self.status();
        let outcome = match result {
            Ok(report) => {
                tracing::info!(
                    file = %report.file.display(),
                    bytes = report.bytes,
                    duration_ms = report.duration_ms,
                    "snapshot saved"
                );
                status.last_save = Some(report.clone());
                status.last_save_ok = true;
                status.last_error = None;
                status.saves_total += 1;
                Ok(report)
            }
            Err(err) => {
                tracing::error!(%err, "snapshot failed");
                status.last_save_ok = false;
                status.last_error = Some(err.to_string());
                Err(SaveError::Failed(err))
            }
        };
        drop(status);
        // Released under the lock `begin_waiting` checks under, so no waiter misses it.
        let released = self.released_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.in_progress.store(false, Ordering::Release);
        self.released.notify_all();
        drop(released);
        outcome
    }

    /// Waits (up to `timeout`) for a running save to finish, then claims the right to save. It
    /// waits on a condition variable the finishing save signals, not by polling in a sleep.
    pub fn begin_waiting(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut guard = self.released_lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.try_begin() {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                return false;
            };
            guard = self
                .released
                .wait_timeout(guard, left)
                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
    }

    /// Waits for a running save, then saves (SHUTDOWN and the signal handlers).
    pub fn save_for_shutdown(
        &self,
        store: &Store,
        now_ms: u64,
        replication: Option<ReplicationMark>,
    ) -> Result<SaveReport, SaveError> {
        if !self.begin_waiting(Duration::from_secs(600)) {
            return Err(SaveError::StillRunning);
        }
        self.save_claimed(store, now_ms, replication)
    }

    pub fn record_load(&self, loaded: Option<LoadReport>, rejected: Vec<String>) {
        let mut status = self.status();
        status.loaded = loaded;
        status.rejected = rejected;
    }
}

/// Runs blocking snapshot work from inside the runtime (SAVE, SHUTDOWN): on the multi-threaded
/// runtime the worker hands its other tasks to its peers first; a per-core runtime has no
/// peers, so the work simply runs (that core pauses, the others keep serving).
pub fn run_blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}
