//! presenced-fuzz: fuzz targets for the request decoder, the inline splitter and snapshot
//! verification/import, with a small mutational fuzzer that runs on stable Rust.
//! docs/FUZZING.md says how to run it, what each target checks and what runs found.
//!
//! A workspace member of its own: it depends on the server crate, never the reverse.

pub mod abort_guard;
pub mod alloc;
pub mod coverage;
pub mod mutate;
pub mod rng;
pub mod runner;
pub mod targets;

// Counts each thread's allocations, for the targets' memory bounds (in this crate's tests
// too: the counters are per thread, so parallel tests do not disturb each other).
#[global_allocator]
static ALLOCATOR: alloc::CountingAllocator = alloc::CountingAllocator;

/// Where the seed corpus and crash files live: the fuzz crate's own directory.
pub fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
