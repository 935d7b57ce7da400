//! A global allocator that counts the bytes each thread holds, so a target can assert that
//! what it allocates for an input is bounded by the input's size: a declared length of 500 MB
//! in 30 bytes of input must not become a 500 MB buffer.
//!
//! Counts are per thread (the targets are single-threaded, and `cargo test` runs tests on
//! parallel threads that must not see each other's allocations). One allocation above
//! `SINGLE_ALLOCATION_MAX` is refused outright: the process then aborts in
//! `handle_alloc_error`, and `abort_guard` saves the input that caused it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Far beyond anything a target needs for an input of at most a few hundred KiB.
pub const SINGLE_ALLOCATION_MAX: usize = 1 << 30;

pub struct CountingAllocator;

thread_local! {
    // Const-initialised cells without destructors: reading them never allocates, so the
    // allocator can use them without recursing into itself.
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(delta: i64) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every call is forwarded to `System` with the caller's own layout and pointer; the
// bookkeeping around it touches only thread-local counters and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > SINGLE_ALLOCATION_MAX {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            note(layout.size() as i64);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > SINGLE_ALLOCATION_MAX {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            note(layout.size() as i64);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > SINGLE_ALLOCATION_MAX {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` and `layout` come from this allocator, which forwards to `System`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            note(new_size as i64 - layout.size() as i64);
        }
        new
    }
}

/// Runs `f` and returns its result with the most bytes this thread held during it beyond what
/// it held before. Nested calls keep the outer peak.
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let start = LIVE.with(Cell::get);
    let outer_peak = PEAK.with(|p| p.replace(start));
    let result = f();
    let peak = PEAK.with(|p| {
        let inner = p.get();
        p.set(inner.max(outer_peak));
        inner
    });
    (result, (peak - start).max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::peak_during;

    /// The peak sees an allocation that is freed before the measured code returns.
    #[test]
    fn peak_counts_transient_allocations() {
        let ((), peak) = peak_during(|| {
            let big = vec![1u8; 4 << 20];
            std::hint::black_box(&big);
        });
        assert!(peak >= 4 << 20, "peak {peak}");
        let ((), small) = peak_during(|| {
            std::hint::black_box(vec![0u8; 100]);
        });
        assert!(small < 4096, "peak {small}");
    }
}
