//! What each command cost: its duration, counted in this thread's row of `INFO commandstats`
//! with whether it failed, and its slow log entry when it ran long enough.
//!
//! One clock read per command (`clock::ticks`, a TSC read where the kernel trusts the TSC): a
//! command is taken to start where the previous one of its batch ended (the batch's start, for
//! the first), so decoding it is part of its time. Two reads per command (start and end) would
//! double a cost that matters on a path where a HEARTBEAT takes about half a microsecond; what
//! falls between two commands of a batch is a decode, a few hundred nanoseconds at most. The
//! counters are the thread's own (see `stats::CommandStats`): nothing shared is written per
//! command.

use bytes::Bytes;

use super::{Ctx, Entry};
use crate::clock;
use crate::slowlog::SlowCommand;
use crate::stats::{LocalTable, Stats};

/// Times and counts one batch of requests' commands.
#[derive(Debug)]
pub struct Meter {
    /// This thread's table of per-command counters.
    table: LocalTable,
    /// When the previous command ended (`clock::ticks`): where the next one starts.
    last: u64,
}

impl Meter {
    /// At the start of a batch: a connection's task stays on one thread for a whole batch (no
    /// await happens inside one), so it looks up its thread's table once per batch.
    pub fn start(stats: &Stats) -> Meter {
        Meter {
            table: stats.commands.local(),
            last: clock::ticks(),
        }
    }

    /// The next command starts now, not when the previous one ended: after a wait that is no
    /// command's work (an `EXEC` waiting for every other client to finish its batch).
    pub fn restart(&mut self) {
        self.last = clock::ticks();
    }

    /// When the command about to run started.
    pub(super) fn command_start(&self) -> u64 {
        self.last
    }

    /// A command refused before it ran: counted, not timed.
    pub(super) fn rejected(&self, row: usize) {
        self.table.record_rejected(row);
    }
}

/// A command that ran (it started at `started`; `failed`: it answered an error): counted, and
/// logged if it was slow. An `EXEC` is counted with everything it ran, and what it ran is
/// counted too, each command by itself, as in Redis.
#[inline]
pub(super) fn finish(ctx: &mut Ctx<'_>, entry: Entry, started: u64, args: &[Bytes], failed: bool) {
    let ended = clock::ticks();
    ctx.meter.last = ended;
    // Saturating: readings on two CPUs may differ by a few ticks.
    let duration_ticks = ended.saturating_sub(started);
    ctx.meter
        .table
        .record_call(entry.row, duration_ticks, failed);
    if duration_ticks >= ctx.shared.slowlog.threshold_ticks() {
        log_if_slow(ctx, entry, args, duration_ticks);
    }
}

/// Out of line: only slow commands (or every command, with a threshold of 0) come here.
#[cold]
fn log_if_slow(ctx: &Ctx<'_>, entry: Entry, args: &[Bytes], duration_ticks: u64) {
    let duration_us = clock::ticks_to_ns(duration_ticks) / 1000;
    let Some(threshold_us) = ctx.shared.slowlog.threshold_us() else {
        return;
    };
    // Redis leaves out commands flagged `skip_slowlog` (EXEC: the commands it ran are logged).
    if duration_us < threshold_us || entry.spec.flags.contains(&"skip_slowlog") {
        return;
    }
    let client = &ctx.session.client;
    // The name as the command left it: `HELLO ... SETNAME x` is logged with `x`, as in Redis.
    let client_name = client.meta().name.clone();
    ctx.shared.slowlog.push(SlowCommand {
        args,
        redacted_args: ctx.redacted_args,
        time_s: clock::now_ms() / 1000,
        duration_us,
        peer: client.addr.to_string(),
        client_name,
    });
}
