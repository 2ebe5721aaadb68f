//! Apply rate of the pure machine, and apply + persist to RocksDB per batch size, for
//! spread SKUs and one hot SKU. Results and the command are in BENCHMARKS.md:
//! `cargo bench -p state --bench apply`. Also the changelog restore rate.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use state::store::{self, Needs, Store};
use state::{LogEntry, Machine, MachineConfig, PartitionState};

// The allocator the skuflow binary uses.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The processor's default cache bound.
const CACHE_ROWS: usize = 100_000;

mod workload;
use workload::{Shape, Workload, workload};

/// The store records of a whole state (stock rows and META): what a restore would write.
fn whole_state(state: &PartitionState) -> Vec<store::Change> {
    use state::store::keys::{self, Key};
    use state::store::values;
    let mut out: Vec<store::Change> = state
        .stock_rows()
        .into_iter()
        .map(|((sku, wh), level)| store::Change {
            key: keys::encode(&Key::Entity(state::EntityKey::Stock(sku, wh))),
            value: Some(values::stock(&level)),
        })
        .collect();
    let meta = values::Meta { log_time: state.log_time(), applied: state.applied_offset() };
    out.push(store::Change { key: keys::encode(&Key::Meta), value: Some(values::meta(&meta)) });
    out
}

fn pure(c: &mut Criterion) {
    let machine = Machine::new(MachineConfig::default());
    let mut group = c.benchmark_group("machine");
    const N: usize = 100_000;
    group.throughput(Throughput::Elements(N as u64));
    for (name, shape) in [("spread", Shape::Spread), ("hot", Shape::Hot)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let Workload { mut state, log } = workload(&machine, shape, N);
                    let started = Instant::now();
                    for (position, at, command) in &log {
                        std::hint::black_box(
                            machine
                                .apply(
                                    &mut state,
                                    LogEntry { position: *position, at: *at, command },
                                )
                                .unwrap(),
                        );
                    }
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

fn persisted(c: &mut Criterion) {
    let machine = Machine::new(MachineConfig::default());
    let mut group = c.benchmark_group("machine+rocksdb");
    const N: usize = 20_000;
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    for (name, shape) in [("spread", Shape::Spread), ("hot", Shape::Hot)] {
        for batch_size in [1usize, 100, 1000] {
            group.bench_with_input(BenchmarkId::new(name, batch_size), &batch_size, |b, &size| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = tempfile::tempdir().unwrap();
                        let store = Store::open(dir.path(), false).unwrap();
                        let Workload { state, log } = workload(&machine, shape, N);
                        // The processor's path: the stock is in the store, and every
                        // batch loads what it touches into a view, applies, writes and
                        // evicts down to the default cache bound.
                        store.import(0, whole_state(&state)).unwrap();
                        let mut view = store.view(0).unwrap();
                        let started = Instant::now();
                        for chunk in log.chunks(size) {
                            let mut needs = Needs::new();
                            for (_, at, command) in chunk {
                                needs.entry(*at, command);
                            }
                            store.prefetch(0, &mut view, needs).unwrap();
                            for (position, at, command) in chunk {
                                machine
                                    .apply(
                                        &mut view,
                                        LogEntry { position: *position, at: *at, command },
                                    )
                                    .unwrap();
                            }
                            store.write(&store::batch(0, &mut view).unwrap()).unwrap();
                            view.evict(CACHE_ROWS);
                        }
                        total += started.elapsed();
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

/// For comparison: the path before issue 12, the whole state in memory (nothing read
/// from the store), each batch's changes written; memory grows with the state.
fn persisted_whole(c: &mut Criterion) {
    let machine = Machine::new(MachineConfig::default());
    let mut group = c.benchmark_group("machine+rocksdb-whole-state");
    const N: usize = 20_000;
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    for (name, shape) in [("spread", Shape::Spread), ("hot", Shape::Hot)] {
        group.bench_function(BenchmarkId::new(name, 1000), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let store = Store::open(dir.path(), false).unwrap();
                    let Workload { mut state, log } = workload(&machine, shape, N);
                    let started = Instant::now();
                    for chunk in log.chunks(1000) {
                        for (position, at, command) in chunk {
                            let entry = LogEntry { position: *position, at: *at, command };
                            machine.apply(&mut state, entry).unwrap();
                        }
                        store.write(&store::batch(0, &mut state).unwrap()).unwrap();
                    }
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

/// Rebuild a partition from its changelog: the store changes of applying 50,000
/// commands (spread SKUs, batches of 1,000), imported into an empty store.
fn restore(c: &mut Criterion) {
    let machine = Machine::new(MachineConfig::default());
    let Workload { mut state, log } = workload(&machine, Shape::Spread, 50_000);
    let mut changelog = Vec::new();
    for chunk in log.chunks(1000) {
        for (position, at, command) in chunk {
            machine.apply(&mut state, LogEntry { position: *position, at: *at, command }).unwrap();
        }
        changelog.extend(store::batch(0, &mut state).unwrap().changes);
    }
    let mut group = c.benchmark_group("restore");
    group.throughput(Throughput::Elements(changelog.len() as u64));
    group.sample_size(10);
    group.bench_function("changelog", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(dir.path(), false).unwrap();
                let records = changelog.clone();
                let started = Instant::now();
                store.import(0, records).unwrap();
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, pure, persisted, persisted_whole, restore);
criterion_main!(benches);
