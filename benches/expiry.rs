//! Offline-detection micro-benchmarks: the timing wheel on its own (insert, and draining one
//! full tick), and `Store::expire_due` declaring a crowd offline at once. Setup (filling the
//! wheel, bringing users online) runs outside the timing, through `iter_batched` with one
//! setup per iteration.
//!
//! Run by `cargo test --all-targets` (no `--bench` flag) each benchmark runs once as a smoke
//! test with 100 times fewer entries, so that the test suite stays quick.
//! Reference figures and the command that produced them are in `benches/README.md`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use presenced::expiry::{TICK_MS, TimingWheel};
use presenced::store::{Room, Store, UserKey};

/// A fixed "now" (2025-11-24), so nothing reads the clock.
const NOW_MS: u64 = 1_764_000_000_000;
const CAPACITY: u64 = 16 * 1024 * 1024;
/// The expiring users are spread over the IDs of a 10M-user deployment.
const ID_SPACE: u64 = 10_000_000;
/// One turn of the store's timing wheels (16,384 buckets of `TICK_MS`).
const WHEEL_TURN_MS: u64 = 16_384 * TICK_MS;
/// Coprime with `ID_SPACE`: `i * STRIDE % ID_SPACE` visits distinct, scattered IDs.
const STRIDE: u64 = 7_368_787;

fn benchmarking() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// `full` when benchmarking, a hundredth of it as a smoke test.
fn scaled(full: u64) -> u64 {
    if benchmarking() { full } else { full / 100 }
}

// Measures TimingWheel::insert of 1,000,000 entries into a new wheel, deadlines spread over 60 s.
fn wheel_insert(c: &mut Criterion) {
    let entries = scaled(1_000_000);
    let mut group = c.benchmark_group("timing_wheel");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.throughput(Throughput::Elements(entries));
    group.bench_function("insert_1m_spread_60s", |b| {
        b.iter_batched(
            || TimingWheel::<usize>::new(NOW_MS),
            |mut wheel| {
                for i in 0..entries {
                    let deadline_ms = NOW_MS + 30_000 + (i * 7_919) % 60_000;
                    black_box(wheel.insert(deadline_ms, i as usize));
                }
                wheel
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// A new wheel with `entries` entries all due in its first tick, and that tick's time.
fn wheel_due_in_one_tick(entries: u64) -> (TimingWheel<usize>, u64) {
    let mut wheel = TimingWheel::new(NOW_MS);
    let due_ms = wheel.next_fire_ms();
    for i in 0..entries {
        wheel.insert(due_ms, i as usize);
    }
    (wheel, due_ms)
}

fn wheel_advance(c: &mut Criterion) {
    let entries = scaled(100_000);
    let mut group = c.benchmark_group("timing_wheel");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.throughput(Throughput::Elements(entries));
    // Measures TimingWheel::advance draining 100,000 entries of one tick into a new Vec (as Shard does).
    group.bench_function("advance_100k_one_tick", |b| {
        b.iter_batched(
            || wheel_due_in_one_tick(entries),
            |(mut wheel, due_ms)| {
                let mut due = Vec::new();
                wheel.advance(due_ms, &mut due, usize::MAX);
                assert_eq!(due.len() as u64, entries);
                (wheel, due)
            },
            BatchSize::PerIteration,
        );
    });
    // Measures the same drain into a Vec kept from the previous iteration: the cost of growing `due`.
    group.bench_function("advance_100k_one_tick_reused_vec", |b| {
        let mut due = Vec::new();
        b.iter_batched(
            || wheel_due_in_one_tick(entries),
            |(mut wheel, due_ms)| {
                due.clear();
                wheel.advance(due_ms, &mut due, usize::MAX);
                assert_eq!(due.len() as u64, entries);
                wheel
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

// Measures Store::expire_due declaring 100,000 users offline whose 1 s TTLs ran out in one tick.
fn store_expire_due(c: &mut Criterion) {
    let users = scaled(100_000);
    let ids: Vec<UserKey<'static>> = (0..users)
        .map(|i| UserKey::Dense(i * STRIDE % ID_SPACE))
        .collect();
    // One store for all iterations, so its slot pages stay mapped. Each setup moves t0 on by
    // one turn of the wheel (16,384 ticks of 100 ms, so the same bucket, already grown, takes
    // the entries: memory does not pile up in drained buckets), runs the empty pass up to t0,
    // and brings the users back online with TTL 1 at t0; the routine expires them at t0 + 1.1 s.
    let store = Store::new(CAPACITY, 1, NOW_MS).expect("mapping the slot array");
    let mut t0_ms = NOW_MS;
    let mut group = c.benchmark_group("store_expire");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.throughput(Throughput::Elements(users));
    group.bench_function("expire_due_100k_same_tick", |b| {
        b.iter_batched(
            || {
                t0_ms += WHEEL_TURN_MS;
                assert_eq!(store.expire_due(t0_ms).expired_count, 0);
                for chunk in ids.chunks(10_000) {
                    store.heartbeat_many(chunk, 1, Room::Available, t0_ms);
                }
                assert_eq!(store.online_count(), users);
                t0_ms
            },
            |t0_ms| {
                let pass = store.expire_due(t0_ms + 1_100);
                assert_eq!(pass.expired_count, users);
                pass
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, wheel_insert, wheel_advance, store_expire_due);
criterion_main!(benches);
