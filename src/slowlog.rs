//! The slow log (`SLOWLOG`): the newest commands that ran for at least
//! `slowlog-log-slower-than` microseconds, at most `slowlog-max-len` of them, newest first,
//! each with Redis's truncation of long argument lists and long arguments. In memory only, as
//! Redis's.
//!
//! It never reads the clock and never sees a client or a command table: the dispatcher hands it
//! the arguments, the duration, the time and who sent them. Only slow commands take its lock;
//! the dispatcher's per-command question, `threshold_ticks`, is one relaxed load.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::clock;
use crate::limits::{SLOWLOG_ARG_BYTES_MAX, SLOWLOG_ARGS_MAX};

/// What an entry shows in place of a secret argument (an `AUTH` password), as Redis does.
pub const REDACTED: &[u8] = b"(redacted)";

/// One logged command, as `SLOWLOG GET` shows it.
#[derive(Debug, PartialEq, Eq)]
pub struct SlowEntry {
    /// Unique and increasing for the life of the process; `SLOWLOG RESET` does not reset it.
    pub id: u64,
    /// When the command was logged, in Unix seconds.
    pub time_s: u64,
    pub duration_us: u64,
    /// The arguments as `entry_args` keeps them.
    pub args: Vec<Bytes>,
    /// The client's `ip:port`.
    pub peer: String,
    /// The client's name when the command ended (empty if it has none).
    pub client_name: String,
}

/// What the dispatcher hands over for a command slow enough to log.
pub struct SlowCommand<'a> {
    pub args: &'a [Bytes],
    /// Bit `i` set: argument `i` is a secret, shown as `(redacted)`.
    pub redacted_args: u64,
    pub time_s: u64,
    pub duration_us: u64,
    pub peer: String,
    pub client_name: String,
}

#[derive(Debug, Default)]
struct Entries {
    newest_first: VecDeque<Arc<SlowEntry>>,
    next_id: u64,
}

#[derive(Debug)]
pub struct SlowLog {
    /// `slowlog-log-slower-than`: negative logs nothing, 0 logs every command.
    slower_than_us: AtomicI64,
    /// The same in `clock::ticks`, which the dispatcher measures in; `u64::MAX` when off.
    slower_than_ticks: AtomicU64,
    /// `slowlog-max-len`.
    len_max: AtomicU64,
    entries: Mutex<Entries>,
}

impl SlowLog {
    pub fn new(slower_than_us: i64, len_max: u64) -> SlowLog {
        SlowLog {
            slower_than_us: AtomicI64::new(slower_than_us),
            slower_than_ticks: AtomicU64::new(threshold_ticks(slower_than_us)),
            len_max: AtomicU64::new(len_max),
            entries: Mutex::new(Entries::default()),
        }
    }

    /// How long a command must run to be logged, or `None` when the log is off.
    pub fn threshold_us(&self) -> Option<u64> {
        u64::try_from(self.slower_than_us.load(Ordering::Relaxed)).ok()
    }

    /// The threshold in `clock::ticks`: a command that ran fewer is not slow (`u64::MAX` when
    /// the log is off). The dispatcher asks after every command; `threshold_us` settles the
    /// rounding of the few that pass.
    #[inline]
    pub fn threshold_ticks(&self) -> u64 {
        self.slower_than_ticks.load(Ordering::Relaxed)
    }

    pub fn slower_than_us(&self) -> i64 {
        self.slower_than_us.load(Ordering::Relaxed)
    }

    pub fn len_max(&self) -> u64 {
        self.len_max.load(Ordering::Relaxed)
    }

    /// `CONFIG SET slowlog-log-slower-than`.
    pub fn set_slower_than_us(&self, slower_than_us: i64) {
        self.slower_than_us.store(slower_than_us, Ordering::Relaxed);
        self.slower_than_ticks
            .store(threshold_ticks(slower_than_us), Ordering::Relaxed);
        self.trim();
    }

    /// `CONFIG SET slowlog-max-len`: a shorter log drops its oldest entries now.
    pub fn set_len_max(&self, len_max: u64) {
        self.len_max.store(len_max, Ordering::Relaxed);
        self.trim();
    }

    /// Redis trims the log to its length after every command while the log is on (and leaves
    /// it alone while it is off); the only commands that can make it too long are these
    /// settings, so trimming when they change (and on every push) leaves the same entries.
    fn trim(&self) {
        if self.threshold_us().is_none() {
            return;
        }
        let len_max = usize::try_from(self.len_max()).unwrap_or(usize::MAX);
        self.lock().newest_first.truncate(len_max);
    }

    /// Logs one command, dropping the oldest entries past `slowlog-max-len`.
    pub fn push(&self, command: SlowCommand<'_>) {
        let args = entry_args(command.args, command.redacted_args);
        let len_max = usize::try_from(self.len_max()).unwrap_or(usize::MAX);
        let mut entries = self.lock();
        let id = entries.next_id;
        entries.next_id += 1;
        entries.newest_first.push_front(Arc::new(SlowEntry {
            id,
            time_s: command.time_s,
            duration_us: command.duration_us,
            args,
            peer: command.peer,
            client_name: command.client_name,
        }));
        entries.newest_first.truncate(len_max);
    }

    pub fn len(&self) -> usize {
        self.lock().newest_first.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `count` newest entries, newest first. Shared, so that the reply is written without
    /// holding the lock slow commands need.
    pub fn newest(&self, count: usize) -> Vec<Arc<SlowEntry>> {
        self.lock()
            .newest_first
            .iter()
            .take(count)
            .cloned()
            .collect()
    }

    /// `SLOWLOG RESET`: every entry forgotten; ids keep increasing.
    pub fn reset(&self) {
        self.lock().newest_first.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Entries are whole values pushed or dropped in one step: a panic elsewhere while the
        // lock was held leaves nothing half-written.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn threshold_ticks(slower_than_us: i64) -> u64 {
    match u64::try_from(slower_than_us) {
        // One tick less than the threshold rounded up: a duration at the threshold passes this
        // test whatever the rounding, and `threshold_us` decides.
        Ok(us) => clock::ns_to_ticks(us.saturating_mul(1000)).saturating_sub(1),
        Err(_) => u64::MAX,
    }
}

/// The arguments as an entry keeps them, copied (so that an entry does not pin the client's
/// input buffer): at most `SLOWLOG_ARGS_MAX`, the last of which then says how many more there
/// were (`... (N more arguments)`); each at most `SLOWLOG_ARG_BYTES_MAX` bytes followed by
/// `... (N more bytes)`; secrets as `(redacted)`. Redis's `slowlogCreateEntry` does the same.
pub fn entry_args(args: &[Bytes], redacted_args: u64) -> Vec<Bytes> {
    let kept = args.len().min(SLOWLOG_ARGS_MAX);
    let truncated = kept < args.len();
    let redacted = |i: usize| i < 64 && redacted_args & (1 << i) != 0;
    args.iter()
        .take(kept)
        .enumerate()
        .map(|(i, arg)| {
            if truncated && i == kept - 1 {
                Bytes::from(format!("... ({} more arguments)", args.len() - kept + 1))
            } else if redacted(i) {
                Bytes::from_static(REDACTED)
            } else if arg.len() > SLOWLOG_ARG_BYTES_MAX {
                let mut cut = arg[..SLOWLOG_ARG_BYTES_MAX].to_vec();
                let more = arg.len() - SLOWLOG_ARG_BYTES_MAX;
                cut.extend_from_slice(format!("... ({more} more bytes)").as_bytes());
                Bytes::from(cut)
            } else {
                Bytes::copy_from_slice(arg)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&[u8]]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::copy_from_slice(w)).collect()
    }

    fn command(args: &[Bytes]) -> SlowCommand<'_> {
        SlowCommand {
            args,
            redacted_args: 0,
            time_s: 1,
            duration_us: 2,
            peer: "127.0.0.1:1".into(),
            client_name: String::new(),
        }
    }

    /// Redis's truncation, case by case: argument counts at and around 32, argument lengths at
    /// and around 128 bytes, and redaction (which the argument-count note wins over).
    #[test]
    fn entry_args_truncate_as_redis_does() {
        let many =
            |n: usize| -> Vec<Bytes> { (0..n).map(|i| Bytes::from(i.to_string())).collect() };
        assert_eq!(entry_args(&many(32), 0), many(32));
        let kept = entry_args(&many(33), 0);
        assert_eq!(kept.len(), 32);
        assert_eq!(&kept[..31], &many(31)[..]);
        assert_eq!(&kept[31][..], b"... (2 more arguments)");
        let kept = entry_args(&many(1000), 0);
        assert_eq!(&kept[31][..], b"... (969 more arguments)");

        let long = |n: usize| Bytes::from(vec![b'x'; n]);
        assert_eq!(entry_args(&[long(128)], 0), [long(128)]);
        let mut cut = vec![b'x'; 128];
        cut.extend_from_slice(b"... (1 more bytes)");
        assert_eq!(entry_args(&[long(129)], 0), [Bytes::from(cut)]);
        let kept = entry_args(&[long(1000)], 0);
        assert!(kept[0].ends_with(b"x... (872 more bytes)"));
        assert_eq!(kept[0].len(), 128 + b"... (872 more bytes)".len());

        let auth = args(&[b"AUTH", b"user", b"secret"]);
        assert_eq!(
            entry_args(&auth, 0b110),
            args(&[b"AUTH", REDACTED, REDACTED])
        );
        let mut hidden = many(40);
        hidden[31] = long(500);
        let kept = entry_args(&hidden, 1 << 31 | 1 << 2);
        assert_eq!(&kept[2][..], REDACTED);
        assert_eq!(&kept[31][..], b"... (9 more arguments)");
        assert_eq!(
            entry_args(&many(70), u64::MAX)[31],
            "... (39 more arguments)"
        );
    }

    /// Entries come out newest first with increasing ids; the log keeps `len_max` of them,
    /// a shorter length drops the oldest at once, RESET empties it without resetting ids, and
    /// a log that is off is left alone until it is on again.
    #[test]
    fn keeps_the_newest_entries() {
        let log = SlowLog::new(0, 3);
        for word in [&b"a"[..], b"b", b"c", b"d"] {
            log.push(command(&args(&[word])));
        }
        let newest: Vec<(u64, Bytes)> = log
            .newest(10)
            .iter()
            .map(|e| (e.id, e.args[0].clone()))
            .collect();
        assert_eq!(newest, [(3, "d".into()), (2, "c".into()), (1, "b".into())]);
        assert_eq!(log.newest(1).len(), 1);
        log.set_len_max(2);
        assert_eq!(log.len(), 2);
        log.reset();
        assert!(log.is_empty());
        log.push(command(&args(&[b"e"])));
        assert_eq!(log.newest(1)[0].id, 4);

        log.set_slower_than_us(-1);
        assert_eq!(log.threshold_us(), None);
        assert_eq!(log.threshold_ticks(), u64::MAX);
        log.set_len_max(5);
        log.push(command(&args(&[b"f"])));
        log.push(command(&args(&[b"g"])));
        log.set_len_max(1);
        assert_eq!(log.len(), 3, "no trimming while the log is off");
        log.set_slower_than_us(10);
        assert_eq!(log.threshold_us(), Some(10));
        assert!(clock::ticks_to_ns(log.threshold_ticks()) < 10_000);
        assert_eq!(log.len(), 1);
        log.set_len_max(0);
        assert!(log.is_empty());
    }
}
