//! The only code that reads the time. Everything else is handed `now_ms`, so expiry and
//! last-seen logic can be tested with a controlled clock instead of sleeps.
//!
//! Presence time (`now_ms`) is the monotonic clock, anchored to the wall clock at start and
//! steered toward it at most 1% fast or slow (`discipline`, run every 100 ms by the server).
//! Deadlines are wall-clock milliseconds, so a step of the wall clock itself (an operator's
//! `date -s`, a VM resumed, NTP stepping after a long outage) would otherwise expire every
//! online user at once (a step forward past the TTL) or keep every user who left online (a
//! step back). Steered, a step of the wall clock moves presence time by at most 1% of the time
//! since — 10 ms a second — and never backwards. The price: after a large correction,
//! last-seen times are off by what is not yet caught up (an hour's step takes 100 hours; INFO
//! shows it as `clock_wall_offset_ms`). docs/RELIABILITY.md shows the clock nemesis.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Presence time in Unix milliseconds: what deadlines and last-seen times are measured in.
/// Never goes backwards; follows the wall clock within the 1% steering (see the module doc).
pub fn now_ms() -> u64 {
    presence_clock().now_us() / 1_000
}

/// The wall clock in Unix milliseconds, unsteered (for the steering and for reports).
#[allow(clippy::disallowed_methods)] // The one place allowed to read the wall clock.
pub fn wall_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Wall-clock time in Unix microseconds (for `TIME`, which Redis answers with the wall clock).
#[allow(clippy::disallowed_methods)] // The one place allowed to read the wall clock.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// How often the server calls `discipline`.
pub const DISCIPLINE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// The fastest presence time may run ahead of or behind the monotonic clock, in parts per
/// million: 1%.
pub const SLEW_MAX_PPM: i64 = 10_000;

/// An error is corrected over this long, capped at `SLEW_MAX_PPM`: one discipline interval,
/// so any error of a millisecond or more is corrected at the full 1% and an error of E ms is
/// gone after 100·E ms — no slow tail. A tail would matter: a node whose presence time is a
/// few milliseconds ahead expires users those milliseconds early. NTP's gradual slewing needs
/// no following, because it moves the monotonic clock as well; what is left to correct is a
/// step.
const CORRECTION_HORIZON_MS: i64 = 100;

/// Steers presence time toward the wall clock; returns the error before this step in
/// milliseconds (wall minus presence time). Called every `DISCIPLINE_INTERVAL`.
pub fn discipline() -> i64 {
    presence_clock().steer_toward(wall_now_ms())
}

/// Wall clock minus presence time, in milliseconds, as last measured by `discipline`.
pub fn wall_offset_ms() -> i64 {
    presence_clock().last_error_ms.load(Ordering::Relaxed)
}

/// The current steering rate in parts per million (positive: presence time runs fast).
pub fn slew_ppm() -> i64 {
    presence_clock().read().rate_ppm
}

/// A piecewise-linear clock: `anchor_us + elapsed * (1 + rate_ppm / 1e6)` since the anchor.
/// The steering re-anchors at the current reading before it changes the rate, so the clock is
/// continuous; the rate stays within ±1%, so it always moves forward. The three numbers
/// change together under a sequence lock: readers (every command) load them without a write
/// or a lock, and the single writer (the steering, ten times a second) never makes them wait
/// for long.
struct PresenceClock {
    start: Instant,
    seq: AtomicU64,
    anchor_us: AtomicU64,
    anchor_mono_us: AtomicU64,
    rate_ppm: AtomicI64,
    last_error_ms: AtomicI64,
    writer: Mutex<()>,
}

#[derive(Clone, Copy)]
struct Anchor {
    anchor_us: u64,
    anchor_mono_us: u64,
    rate_ppm: i64,
}

impl PresenceClock {
    fn mono_us(&self) -> u64 {
        saturate(self.start.elapsed().as_micros())
    }

    fn read(&self) -> Anchor {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            let anchor = Anchor {
                anchor_us: self.anchor_us.load(Ordering::Acquire),
                anchor_mono_us: self.anchor_mono_us.load(Ordering::Acquire),
                rate_ppm: self.rate_ppm.load(Ordering::Acquire),
            };
            std::sync::atomic::fence(Ordering::Acquire);
            if before.is_multiple_of(2) && self.seq.load(Ordering::Relaxed) == before {
                return anchor;
            }
            std::hint::spin_loop();
        }
    }

    fn at(anchor: Anchor, mono_us: u64) -> u64 {
        let elapsed = i128::from(mono_us.saturating_sub(anchor.anchor_mono_us));
        let steered = elapsed + elapsed * i128::from(anchor.rate_ppm) / 1_000_000;
        let us = i128::from(anchor.anchor_us) + steered;
        u64::try_from(us.max(0)).unwrap_or(u64::MAX)
    }

    fn now_us(&self) -> u64 {
        Self::at(self.read(), self.mono_us())
    }

    fn steer_toward(&self, wall_ms: u64) -> i64 {
        self.steer_at(wall_ms, self.mono_us())
    }

    /// Re-anchors at the reading for `mono_us` and sets the rate that corrects the error
    /// between it and `wall_ms`.
    fn steer_at(&self, wall_ms: u64, mono_us: u64) -> i64 {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now_us = Self::at(self.read(), mono_us);
        let error_ms =
            i64::try_from(i128::from(wall_ms) - i128::from(now_us / 1_000)).unwrap_or(i64::MAX);
        let rate_ppm = (error_ms.saturating_mul(1_000_000) / CORRECTION_HORIZON_MS)
            .clamp(-SLEW_MAX_PPM, SLEW_MAX_PPM);
        self.seq.fetch_add(1, Ordering::AcqRel);
        std::sync::atomic::fence(Ordering::Release);
        self.anchor_us.store(now_us, Ordering::Release);
        self.anchor_mono_us.store(mono_us, Ordering::Release);
        self.rate_ppm.store(rate_ppm, Ordering::Release);
        self.seq.fetch_add(1, Ordering::Release);
        self.last_error_ms.store(error_ms, Ordering::Relaxed);
        error_ms
    }
}

fn presence_clock() -> &'static PresenceClock {
    static CLOCK: std::sync::OnceLock<PresenceClock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(|| PresenceClock {
        start: Instant::now(),
        seq: AtomicU64::new(0),
        anchor_us: AtomicU64::new(now_us()),
        anchor_mono_us: AtomicU64::new(0),
        rate_ppm: AtomicI64::new(0),
        last_error_ms: AtomicI64::new(0),
        writer: Mutex::new(()),
    })
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

    fn clock_at(anchor_us: u64) -> PresenceClock {
        PresenceClock {
            start: Instant::now(),
            seq: AtomicU64::new(0),
            anchor_us: AtomicU64::new(anchor_us),
            anchor_mono_us: AtomicU64::new(0),
            rate_ppm: AtomicI64::new(0),
            last_error_ms: AtomicI64::new(0),
            writer: Mutex::new(()),
        }
    }

    /// A wall clock stepped 60 s forward, then back, moves presence time by at most 1% of the
    /// time since, never backwards; the steering converges once the wall clock is back.
    #[test]
    fn a_stepped_wall_clock_is_followed_at_one_percent() {
        let clock = clock_at(1_796_000_000_000_000);
        let anchor = clock.read();
        // The monotonic clock advances 100 ms per step; the wall clock is 60 s ahead.
        let mut previous_us = 0;
        for step in 1..=100u64 {
            let mono_us = step * 100_000;
            let now_us = PresenceClock::at(clock.read(), mono_us);
            assert!(now_us >= previous_us, "presence time went backwards");
            previous_us = now_us;
            let wall_ms = 1_796_000_000_000 + 60_000 + mono_us / 1_000;
            assert!(clock.steer_at(wall_ms, mono_us) > 59_000);
        }
        let after_10s = PresenceClock::at(clock.read(), 10_000_000);
        let ran_us = after_10s - anchor.anchor_us;
        // 10 s of monotonic time, steered at most 1% fast: 10.0 s to 10.1 s of presence time.
        assert!((10_000_000..=10_100_000).contains(&ran_us), "{ran_us} us");
        // The wall clock comes back: presence time (up to 100 ms ahead) slows, never reverses.
        for step in 101..=700u64 {
            let mono_us = step * 100_000;
            let now_us = PresenceClock::at(clock.read(), mono_us);
            assert!(now_us >= previous_us, "presence time went backwards");
            previous_us = now_us;
            let error_ms = clock.steer_at(1_796_000_000_000 + mono_us / 1_000, mono_us);
            // The last 100 ms ahead is corrected at 1%: gone 10 s after the wall clock came
            // back, and it stays gone.
            if step > 210 {
                assert!(
                    error_ms.abs() <= 1,
                    "still {error_ms} ms off at step {step}"
                );
            }
        }
    }

    /// The real steering: a reading never goes backwards across many re-anchorings.
    #[test]
    fn steering_keeps_presence_time_monotonic() {
        let clock = clock_at(now_us() + 5_000_000);
        let mut previous_us = 0;
        for _ in 0..10_000 {
            let now_us = clock.now_us();
            assert!(now_us >= previous_us);
            previous_us = now_us;
            let error_ms = clock.steer_toward(wall_now_ms());
            assert!(error_ms < 0, "presence time started 5 s ahead: {error_ms}");
        }
        assert_eq!(clock.read().rate_ppm, -SLEW_MAX_PPM);
    }

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
