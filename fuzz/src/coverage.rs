//! Optional coverage feedback. Built with LLVM's SanitizerCoverage (inline 8-bit counters,
//! available on stable Rust: see docs/FUZZING.md and `scripts/fuzz --coverage`), every edge of
//! the instrumented code increments a counter, and LLVM calls
//! `__sanitizer_cov_8bit_counters_init` with each module's counter array before `main`. After
//! each input the runner asks how many (edge, hit-count bucket) pairs are new, as AFL and
//! libFuzzer do, and keeps inputs that found any. Without instrumentation nothing calls the
//! init hook, there are no counters, and `collect_new` is always 0.
//!
//! The counters are process-wide: coverage feedback assumes one fuzzing thread (the CLI).

use std::sync::Mutex;

struct Region {
    start: *mut u8,
    len: usize,
}

// SAFETY: the counter arrays are static data of the loaded modules, valid for the whole
// process; they are only read and cleared through raw pointers by the fuzzing thread.
unsafe impl Send for Region {}

static REGIONS: Mutex<Vec<Region>> = Mutex::new(Vec::new());
/// Per counter, the hit-count buckets already seen (one bit per bucket).
static SEEN: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Called by the instrumentation's module constructors, once per module.
#[unsafe(no_mangle)]
pub extern "C" fn __sanitizer_cov_8bit_counters_init(start: *mut u8, stop: *mut u8) {
    let len = (stop as usize).saturating_sub(start as usize);
    if len == 0 {
        return;
    }
    let mut regions = REGIONS.lock().unwrap_or_else(|p| p.into_inner());
    if regions.iter().any(|r| r.start == start) {
        return;
    }
    regions.push(Region { start, len });
    SEEN.lock()
        .unwrap_or_else(|p| p.into_inner())
        .resize(regions.iter().map(|r| r.len).sum(), 0);
}

/// Called when `-sanitizer-coverage-pc-table` is on; the table is not needed here.
#[unsafe(no_mangle)]
pub extern "C" fn __sanitizer_cov_pcs_init(_start: *const usize, _stop: *const usize) {}

/// AFL's hit-count buckets: 1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+.
fn bucket(count: u8) -> u8 {
    match count {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 4,
        4..=7 => 8,
        8..=15 => 16,
        16..=31 => 32,
        32..=127 => 64,
        _ => 128,
    }
}

/// Zeroes every counter (before running an input).
pub fn clear() {
    let regions = REGIONS.lock().unwrap_or_else(|p| p.into_inner());
    for region in regions.iter() {
        // SAFETY: `start..start+len` is a module's counter array (see `Region`); writing zeros
        // through the raw pointer creates no reference the instrumented code could alias.
        unsafe { std::ptr::write_bytes(region.start, 0, region.len) };
    }
}

/// Forgets what was seen (a new target starts from nothing).
pub fn forget() {
    SEEN.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter_mut()
        .for_each(|s| *s = 0);
    clear();
}

/// How many (counter, bucket) pairs the last input reached for the first time; zeroes the
/// counters it read.
pub fn collect_new() -> usize {
    let regions = REGIONS.lock().unwrap_or_else(|p| p.into_inner());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let mut new = 0;
    let mut base = 0;
    for region in regions.iter() {
        let mut i = 0;
        while i < region.len {
            // Word at a time: almost every counter is zero.
            if i + 8 <= region.len {
                // SAFETY: `i + 8 <= len`, inside the counter array; an unaligned read.
                let word = unsafe { region.start.add(i).cast::<u64>().read_unaligned() };
                if word == 0 {
                    i += 8;
                    continue;
                }
            }
            // SAFETY: `i < len`, inside the counter array.
            let count = unsafe { region.start.add(i).read_volatile() };
            if count != 0 {
                let b = bucket(count);
                let slot = &mut seen[base + i];
                if *slot & b == 0 {
                    *slot |= b;
                    new += 1;
                }
                // SAFETY: as above.
                unsafe { region.start.add(i).write_volatile(0) };
            }
            i += 1;
        }
        base += region.len;
    }
    new
}

/// Counters ever hit since `forget` (0 without instrumentation).
pub fn edges_seen() -> usize {
    SEEN.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|&&s| s != 0)
        .count()
}

/// Counters in the instrumented code, hit or not.
pub fn counters_total() -> usize {
    SEEN.lock().unwrap_or_else(|p| p.into_inner()).len()
}

/// Whether this binary was built with coverage instrumentation.
pub fn instrumented() -> bool {
    !REGIONS.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
}
