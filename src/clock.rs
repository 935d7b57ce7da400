//! The only code that reads the time. Everything else is handed `now_ms`, so expiry and
//! last-seen logic can be tested with a controlled clock instead of sleeps.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock time in Unix milliseconds. Last-seen times are shown to users as dates, so they
/// must be wall-clock, not monotonic.
#[allow(clippy::disallowed_methods)] // The one place allowed to read the wall clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Wall-clock time in Unix microseconds (for `TIME`).
#[allow(clippy::disallowed_methods)] // The one place allowed to read the wall clock.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The monotonic clock, for how long something took (a command's duration in `INFO
/// commandstats` and the slow log): the wall clock may step while a command runs. One read is
/// a vDSO call of ~20 ns where the kernel's clock source is the TSC.
pub fn monotonic() -> Instant {
    Instant::now()
}
