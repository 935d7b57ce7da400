//! Store micro-benchmarks: heartbeats of users already online (the hot path) and MSTATUS-style
//! gathering, over a store of 10,000,000 online users (capacity 16M, 1 and 2 shards). The store
//! is populated once per shard count, outside the timed loops; every call uses a fixed `now_ms`.
//!
//! Run by `cargo test --all-targets` (no `--bench` flag) each benchmark runs once as a smoke
//! test, over 100,000 users instead of 10,000,000 so that the test suite stays quick.
//! Reference figures and the command that produced them are in `benches/README.md`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use presenced::store::{Room, Store, UserKey};

/// A fixed "now" (2025-11-24), so nothing reads the clock.
const NOW_MS: u64 = 1_764_000_000_000;
const CAPACITY: u64 = 16 * 1024 * 1024;
/// Long enough that every user stays online at `NOW_MS`: each heartbeat takes the hot path.
const TTL_S: u64 = 3_600;
const POPULATE_CHUNK: u64 = 10_000;

fn benchmarking() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

fn online_users() -> u64 {
    if benchmarking() { 10_000_000 } else { 100_000 }
}

/// splitmix64: a tiny deterministic generator, about a nanosecond per ID (see the
/// `random_ids_only` baseline).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (multiply-shift, no division).
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }

    fn fill(&mut self, keys: &mut Vec<UserKey<'static>>, n: usize, bound: u64) {
        keys.clear();
        keys.extend((0..n).map(|_| UserKey::Dense(self.below(bound))));
    }
}

/// A store whose users `0..users` are all online, brought online with `heartbeat_many` in
/// chunks of 10,000.
fn populated_store(shards: usize, users: u64) -> Store {
    let store = Store::new(CAPACITY, shards, NOW_MS).expect("mapping the slot arrays");
    let mut keys = Vec::with_capacity(POPULATE_CHUNK as usize);
    for start in (0..users).step_by(POPULATE_CHUNK as usize) {
        keys.clear();
        keys.extend((start..(start + POPULATE_CHUNK).min(users)).map(UserKey::Dense));
        store.heartbeat_many(&keys, TTL_S, Room::Available, NOW_MS);
    }
    assert_eq!(store.online_count(), users);
    store
}

fn store_benches(c: &mut Criterion) {
    let users = online_users();
    for shards in [1, 2] {
        let store = populated_store(shards, users);
        let plural = if shards == 1 { "" } else { "s" };
        let mut group = c.benchmark_group(format!("store_{shards}_shard{plural}"));

        group.throughput(Throughput::Elements(1));
        // Measures Store::heartbeat of an online user, IDs in order (0, 1, 2, ... wrapping).
        group.bench_function("heartbeat/sequential", |b| {
            let mut id = 0;
            b.iter(|| {
                let result = store.heartbeat(
                    UserKey::Dense(id),
                    TTL_S,
                    None,
                    None,
                    Room::Available,
                    NOW_MS,
                );
                id += 1;
                if id == users {
                    id = 0;
                }
                black_box(result)
            });
        });
        // Measures Store::heartbeat of an online user drawn uniformly from all online users.
        group.bench_function("heartbeat/random", |b| {
            let mut rng = Rng(1);
            b.iter(|| {
                let id = rng.below(users);
                black_box(store.heartbeat(
                    UserKey::Dense(id),
                    TTL_S,
                    None,
                    None,
                    Room::Available,
                    NOW_MS,
                ))
            });
        });

        group.throughput(Throughput::Elements(100));
        // Measures Store::heartbeat_many (MHEARTBEAT) of 100 random online users.
        group.bench_function("heartbeat_many/100_random", |b| {
            let mut rng = Rng(2);
            let mut keys = Vec::with_capacity(100);
            b.iter(|| {
                rng.fill(&mut keys, 100, users);
                black_box(store.heartbeat_many(&keys, TTL_S, Room::Available, NOW_MS))
            });
        });
        for n in [100, 1_000] {
            group.throughput(Throughput::Elements(n as u64));
            // Measures Store::view_many (MSTATUS gathering) of n random users.
            group.bench_function(format!("view_many/{n}_random"), |b| {
                let mut rng = Rng(3);
                let mut keys = Vec::with_capacity(n);
                b.iter(|| {
                    rng.fill(&mut keys, n, users);
                    black_box(store.view_many(&keys, NOW_MS))
                });
            });
        }
        if shards == 1 {
            // Measures Store::encode_changes of one full drain (4,096 random users marked by
            // heartbeats in the untimed setup): the time a replication drain holds the shard's
            // lock to sort and pack them (stream version 2).
            store.track_changes(true);
            group.throughput(Throughput::Elements(4096));
            group.bench_function("replication_drain/4096_random", |b| {
                let mut rng = Rng(4);
                let mut keys = Vec::with_capacity(4096);
                let (mut packed, mut records) = (Vec::new(), Vec::new());
                b.iter_batched(
                    || {
                        rng.fill(&mut keys, 4096, users);
                        store.heartbeat_many(&keys, TTL_S, Room::Available, NOW_MS);
                    },
                    |()| {
                        packed.clear();
                        records.clear();
                        black_box(store.encode_changes(0, 4096, &mut packed, &mut records))
                    },
                    criterion::BatchSize::SmallInput,
                );
            });
            store.track_changes(false);
        }
        group.finish();
    }

    let mut group = c.benchmark_group("baseline");
    group.throughput(Throughput::Elements(100));
    // Measures drawing 100 random IDs alone: the part of the batch figures that is not the store.
    group.bench_function("random_ids_only/100", |b| {
        let mut rng = Rng(2);
        let mut keys = Vec::with_capacity(100);
        b.iter(|| {
            rng.fill(&mut keys, 100, users);
            black_box(&keys);
        });
    });
    group.finish();
}

criterion_group!(benches, store_benches);
criterion_main!(benches);
