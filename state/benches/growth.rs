//! Batch apply rate and memory as the store grows: the processor's apply path (prefetch
//! from RocksDB into a view, apply, one WriteBatch, evict to the cache bound) driven
//! without Kafka, on a store that fills with live idempotency records.
//!
//! The workload is a flash sale over 100,000 SKUs with plenty of stock: every command
//! has a new id (one more live idempotency record and its forget timer; the window is
//! 24 h of log time and the run lasts minutes of it), half are reserves of one unit and
//! half release an earlier hold, whose reservation is forgotten a minute of log time
//! later (timers fire in every batch). At every checkpoint it measures the rate of the
//! next `SKUFLOW_GROWTH_WINDOW` commands and prints the process's resident memory.
//!
//! ```text
//! cargo bench -p state --bench growth                      # checkpoints 1M, 10M
//! SKUFLOW_GROWTH_STEPS=1000000,10000000,50000000 cargo bench -p state --bench growth
//! ```
//! Environment: `SKUFLOW_GROWTH_DIR` (store directory, default a temporary one),
//! `SKUFLOW_GROWTH_CACHE_ROWS` (default 100,000), `SKUFLOW_GROWTH_BATCH` (1,000).

use std::time::Instant;

use state::store::{self, Needs, Store};
use state::{LogEntry, Machine, MachineConfig};
use topics::*;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SKUS: u64 = 100_000;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn memory() -> (u64, u64) {
    let m = state::store::process_memory();
    (m.rss_mib, m.peak_mib)
}

fn disk_mib(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        total += entry.metadata().map_or(0, |m| m.len());
    }
    total >> 20
}

struct Gen {
    tenant: TenantId,
    next: u64,
    open: std::collections::VecDeque<ReservationId>,
}

impl Gen {
    fn entry(&mut self) -> (Position, LogTime, LogCommand) {
        let offset = self.next;
        self.next += 1;
        let sku = Sku::new(format!("sku-{}", offset.wrapping_mul(2_654_435_761) % SKUS)).unwrap();
        let command = if offset.is_multiple_of(2) || self.open.len() < 1_000 {
            self.open.push_back(ReservationId::new(sku.clone(), offset));
            Command::Reserve(Reserve {
                sku,
                quantity: Quantity::new(1).unwrap(),
                warehouse: None,
                strategy: None,
                allow_partial: false,
                ttl_ms: None,
            })
        } else {
            let reservation = self.open.pop_front().unwrap();
            Command::Release(Release { reservation })
        };
        let request = Request {
            tenant: self.tenant.clone(),
            command_id: CommandId::new(format!("order-{offset:012}")).unwrap(),
            command,
        };
        // 10,000 commands per second of log time.
        let at = LogTime(1_000_000 + offset / 10);
        (Position { partition: 0, offset: offset as i64 }, at, LogCommand::Request(request))
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the arguments.
    let steps: Vec<u64> = std::env::var("SKUFLOW_GROWTH_STEPS")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let window: u64 = env("SKUFLOW_GROWTH_WINDOW", 200_000);
    let cache_rows: usize = env("SKUFLOW_GROWTH_CACHE_ROWS", 100_000);
    let batch: usize = env("SKUFLOW_GROWTH_BATCH", 1_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var("SKUFLOW_GROWTH_DIR").map_or(tmp.path().to_path_buf(), Into::into);
    let store = Store::open(&dir, false).unwrap();
    let config = MachineConfig { reservation_retention_ms: 60_000, ..MachineConfig::default() };
    let machine = Machine::new(config);
    let mut view = store.view(0).unwrap();
    let mut g = Gen { tenant: TenantId::new("bench").unwrap(), next: 0, open: Default::default() };

    // Stock for every SKU first.
    let wh = WarehouseId::new("w1").unwrap();
    for i in 0..SKUS {
        let restock = Command::Restock(Restock {
            sku: Sku::new(format!("sku-{i}")).unwrap(),
            warehouse: wh.clone(),
            quantity: Quantity::new(1_000_000_000).unwrap(),
        });
        let request = Request {
            tenant: g.tenant.clone(),
            command_id: CommandId::new(format!("stock-{i}")).unwrap(),
            command: restock,
        };
        let position = Position { partition: 0, offset: g.next as i64 };
        g.next += 1;
        let command = LogCommand::Request(request);
        let mut needs = Needs::new();
        needs.entry(LogTime(1_000_000), &command);
        store.prefetch(0, &mut view, needs).unwrap();
        machine
            .apply(&mut view, LogEntry { position, at: LogTime(1_000_000), command: &command })
            .unwrap();
        if i % 1000 == 999 {
            store.write(&store::batch(0, &mut view).unwrap()).unwrap();
            view.evict(cache_rows);
        }
    }
    store.write(&store::batch(0, &mut view).unwrap()).unwrap();
    view.evict(cache_rows);

    println!(
        "store {} | cache_rows {cache_rows} | batch {batch} | window {window} commands",
        dir.display()
    );
    println!(
        "| commands applied | live idempotency records | rate (commands/s) | RSS MiB | peak RSS MiB | store on disk MiB | live rows (estimate) | changelog records written | changelog MB written |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // What the changelog receives: the store batches' records (tombstones included).
    let written = std::cell::Cell::new((0u64, 0u64));
    let run = |n: u64, g: &mut Gen, view: &mut state::PartitionState| -> f64 {
        let started = Instant::now();
        let mut left = n;
        let mut entries = Vec::with_capacity(batch);
        while left > 0 {
            let k = (batch as u64).min(left);
            entries.clear();
            entries.extend((0..k).map(|_| g.entry()));
            let mut needs = Needs::new();
            for (_, at, command) in &entries {
                needs.entry(*at, command);
            }
            store.prefetch(0, view, needs).unwrap();
            for (position, at, command) in &entries {
                std::hint::black_box(
                    machine
                        .apply(view, LogEntry { position: *position, at: *at, command })
                        .unwrap(),
                );
            }
            let b = store::batch(0, view).unwrap();
            let (records, bytes) = written.get();
            let size: usize =
                b.changes.iter().map(|c| c.key.len() + c.value.as_ref().map_or(0, Vec::len)).sum();
            written.set((records + b.changes.len() as u64, bytes + size as u64));
            store.write(&b).unwrap();
            view.evict(cache_rows);
            left -= k;
        }
        n as f64 / started.elapsed().as_secs_f64()
    };
    let mut applied = 0u64;
    let report = |applied: u64, rate: f64| {
        let (rss, hwm) = memory();
        let (records, bytes) = written.get();
        println!(
            "| {applied} | {applied} | {rate:.0} | {rss} | {hwm} | {} | {} | {records} | {} |",
            disk_mib(&dir),
            store.estimate_keys().unwrap_or(0),
            bytes >> 20
        );
        if let Ok(m) = store.memory() {
            eprintln!(
                "  store memory: block cache {} MiB, memtables {} MiB, table readers {} MiB",
                m.block_cache >> 20,
                m.memtables >> 20,
                m.table_readers >> 20
            );
        }
    };
    let rate = run(window, &mut g, &mut view);
    applied += window;
    report(applied, rate);
    for step in steps {
        if step > applied {
            let fill_started = Instant::now();
            let filled = step - applied;
            let fill_rate = run(filled, &mut g, &mut view);
            applied = step;
            eprintln!(
                "filled {filled} commands in {:.0} s ({fill_rate:.0}/s)",
                fill_started.elapsed().as_secs_f64()
            );
        }
        let rate = run(window, &mut g, &mut view);
        applied += window;
        report(applied, rate);
    }
}
