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

/// Ticks of the cheapest clock fit to time one command (`INFO commandstats`, the slow log):
/// the CPU's time-stamp counter where the kernel itself keeps time with it, else the monotonic
/// clock in nanoseconds. Only differences of two readings mean anything; `ticks_to_ns` and
/// `ns_to_ticks` convert them.
///
/// Why not `Instant`: every command is timed, and a HEARTBEAT costs about half a microsecond.
/// `Instant::now` (a vDSO `clock_gettime`, which orders its TSC read and scales it) and the
/// `timespec` arithmetic of a difference cost ~25 ns on this project's machines, a raw TSC
/// read and a subtraction ~8 ns. The wall clock is no option either: it may step while a
/// command runs.
#[inline]
pub fn ticks() -> u64 {
    match tick_source() {
        #[cfg(target_arch = "x86_64")]
        TickSource::Tsc { .. } => rdtsc(),
        TickSource::Monotonic { start } => nanos(start.elapsed()),
    }
}

/// Nanoseconds in a difference of `ticks` readings.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    match tick_source() {
        #[cfg(target_arch = "x86_64")]
        TickSource::Tsc { ns_per_tick_q32 } => {
            saturate((u128::from(ticks) * u128::from(*ns_per_tick_q32)) >> 32)
        }
        TickSource::Monotonic { .. } => ticks,
    }
}

/// Ticks in `ns` nanoseconds (a threshold to compare differences of `ticks` with).
pub fn ns_to_ticks(ns: u64) -> u64 {
    match tick_source() {
        #[cfg(target_arch = "x86_64")]
        TickSource::Tsc { ns_per_tick_q32 } => {
            saturate((u128::from(ns) << 32) / u128::from((*ns_per_tick_q32).max(1)))
        }
        TickSource::Monotonic { .. } => ns,
    }
}

/// What `ticks` reads: the TSC at a measured rate, or nanoseconds since `start`.
#[derive(Clone, Copy, Debug)]
enum TickSource {
    #[cfg(target_arch = "x86_64")]
    Tsc {
        /// Nanoseconds per tick, times 2^32.
        ns_per_tick_q32: u64,
    },
    Monotonic {
        start: Instant,
    },
}

/// How long the TSC's rate is measured against the monotonic clock, once, at the first use
/// (the server's start: the slow log converts its threshold when it is built, before any
/// client is served). Over 10 ms the two readings' few tens of nanoseconds of skew are a few
/// parts per million.
#[cfg(target_arch = "x86_64")]
const TSC_CALIBRATION: std::time::Duration = std::time::Duration::from_millis(10);

/// Measures the tick rate now (a 10 ms sleep where the TSC is used). `main` calls it before
/// any runtime starts, so the calibration's sleep never happens on a runtime worker; without
/// the call, the first tick read calibrates.
pub fn calibrate_ticks() {
    tick_source();
}

fn tick_source() -> &'static TickSource {
    static SOURCE: std::sync::OnceLock<TickSource> = std::sync::OnceLock::new();
    SOURCE.get_or_init(calibrate)
}

fn calibrate() -> TickSource {
    let start = Instant::now();
    #[cfg(target_arch = "x86_64")]
    if kernel_keeps_time_with_tsc() {
        let first = rdtsc();
        std::thread::sleep(TSC_CALIBRATION);
        let (last, elapsed) = (rdtsc(), start.elapsed());
        if last > first {
            let ns_per_tick_q32 = (u128::from(nanos(elapsed)) << 32) / u128::from(last - first);
            return TickSource::Tsc {
                ns_per_tick_q32: saturate(ns_per_tick_q32),
            };
        }
    }
    TickSource::Monotonic { start }
}

/// The kernel chose the TSC as its clock source only if it found it constant-rate and in step
/// across CPUs (a thread may move between CPUs between two readings); any other source (a
/// VM's `kvm-clock`, `hpet`) says it is not to be trusted here.
#[cfg(target_arch = "x86_64")]
fn kernel_keeps_time_with_tsc() -> bool {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .is_ok_and(|source| source.trim() == "tsc")
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter: it touches no memory and every x86-64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn nanos(duration: std::time::Duration) -> u64 {
    saturate(duration.as_nanos())
}

fn saturate(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks convert to nanoseconds and back (within rounding), and 20 ms measured in ticks
    /// read as 20 ms (within the scheduling noise of a sleep).
    #[test]
    fn ticks_measure_time() {
        for ns in [0, 1_000, 10_000_000, 3_600_000_000_000] {
            let back = ticks_to_ns(ns_to_ticks(ns));
            assert!(back.abs_diff(ns) <= 1 + ns / 1_000_000, "{ns} ns -> {back}");
        }
        let first = ticks();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let elapsed_ns = ticks_to_ns(ticks() - first);
        assert!(
            (19_000_000..200_000_000).contains(&elapsed_ns),
            "{elapsed_ns} ns"
        );
    }
}
