//! The only code that reads the time. Everything else is handed `now_ms`, so expiry and
//! last-seen logic can be tested with a controlled clock instead of sleeps.

use std::time::{SystemTime, UNIX_EPOCH};

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
