//! Restore rates: a changelog partition of `SKUFLOW_RESTORE_RECORDS` (2,000,000) records
//! read through the dev broker into an empty store (`restore_partition`, what a processor
//! does when it is handed a partition), then the same partition restored again into that
//! store after `SKUFLOW_RESTORE_SINCE` (10,000) more records were written (a partition
//! that comes back: only what follows the store's checkpoint), and the import path alone for
//! `SKUFLOW_IMPORT_RECORDS` (10,000,000) records generated on the fly (no broker). Prints
//! records/s, MB/s, wall time and the process's peak resident memory.
//!
//! ```text
//! cargo bench -p processor --bench restore
//! ```
//!
//! The records are what a busy partition's changelog holds: per reserve an idempotency
//! record (JSON, about 400 bytes), its forget timer, a reservation and a stock row; a
//! tenth of them tombstones of forgotten rows; META now and then. Every key is distinct
//! (the dev broker compacts, and a repeated key could be read fewer times than written).

use std::time::{Duration, Instant};

use broker::DevBroker;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use state::store::keys::{self, Key};
use state::store::{Change, Store, values};
use state::{DedupKey, DedupRecord, EntityKey, Timer, TimerKey};
use topics::*;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `VmHWM` (peak) and `VmRSS` (now) of this process, in MiB.
fn rss_mib() -> (u64, u64) {
    let m = state::store::process_memory();
    (m.peak_mib, m.rss_mib)
}

/// The `i`th changelog record of a busy partition.
fn record(i: u64) -> Change {
    let n = i / 4;
    let sku = Sku::new(format!("sku-{}", n % 100_000)).unwrap();
    let tenant = TenantId::new("acme").unwrap();
    let id = ReservationId::new(sku.clone(), n);
    let key = |k: EntityKey| keys::encode(&Key::Entity(k));
    // Every key is written once, so that the broker's compaction (which the dev broker
    // does) leaves all of them to read.
    if i % 10 == 9 {
        let gone = ReservationId::new(sku, n + (1 << 40));
        return Change { key: key(EntityKey::Reservation(gone)), value: None };
    }
    if i % 100_000 == 99_999 {
        let meta = values::Meta { log_time: LogTime(n), applied: Some(n as i64) };
        return Change { key: keys::encode(&Key::Meta), value: Some(values::meta(&meta)) };
    }
    match i % 4 {
        0 => {
            let command_id = CommandId::new(format!("order-{n:012}")).unwrap();
            let command = Command::Reserve(Reserve {
                sku: sku.clone(),
                quantity: Quantity::new(1).unwrap(),
                warehouse: None,
                strategy: None,
                allow_partial: false,
                ttl_ms: None,
            });
            let reply = Reply {
                tenant: tenant.clone(),
                command_id: command_id.clone(),
                position: Position { partition: 0, offset: n as i64 },
                at: LogTime(n),
                outcome: Outcome::Reserved {
                    reservation: id,
                    quantity: 1,
                    allocations: vec![Allocation {
                        warehouse: WarehouseId::new("w1").unwrap(),
                        quantity: 1,
                    }],
                    expires_at: LogTime(n + 600_000),
                },
            };
            let dedup = DedupKey { tenant, sku, command_id };
            let value = values::dedup(&DedupRecord { command, reply }).unwrap();
            Change { key: key(EntityKey::Dedup(dedup)), value: Some(value) }
        }
        1 => {
            let timer_key = TimerKey::forget_command(LogTime(n + 86_400_000), n as i64);
            let timer = Timer::ForgetCommand {
                tenant,
                sku,
                command_id: CommandId::new(format!("order-{n:012}")).unwrap(),
            };
            Change {
                key: key(EntityKey::Timer(timer_key)),
                value: Some(values::timer(&timer).unwrap()),
            }
        }
        2 => {
            let level = StockLevel { on_hand: 1_000_000, reserved: n % 1000, sold: 0, version: n };
            let wh = WarehouseId::new(format!("w{n}")).unwrap();
            Change { key: key(EntityKey::Stock(sku, wh)), value: Some(values::stock(&level)) }
        }
        _ => {
            let reservation = Reservation {
                id: id.clone(),
                tenant,
                quantity: 1,
                allocations: vec![Allocation {
                    warehouse: WarehouseId::new("w1").unwrap(),
                    quantity: 1,
                }],
                state: ReservationState::Active,
                created_at: LogTime(n),
                expires_at: LogTime(n + 600_000),
                purchased: 0,
                ended_at: None,
            };
            Change {
                key: key(EntityKey::Reservation(id)),
                value: Some(values::reservation(&reservation).unwrap()),
            }
        }
    }
}

/// The last record of every generated changelog: META, so the import completes.
fn meta(records: u64) -> Change {
    let meta = values::Meta { log_time: LogTime(records), applied: Some(records as i64) };
    Change { key: keys::encode(&Key::Meta), value: Some(values::meta(&meta)) }
}

/// Produce records `from..to` of the generated changelog to partition 0, the last one a
/// META with applied offset `to`, and wait for them.
fn produce(
    producer: &ThreadedProducer<DefaultProducerContext>,
    changelog: &str,
    from: u64,
    to: u64,
) {
    for i in from..to {
        let c = if i + 1 == to { meta(to) } else { record(i) };
        let mut r = BaseRecord::to(changelog).partition(0).key(&c.key);
        if let Some(v) = &c.value {
            r = r.payload(v);
        }
        broker::client::send_waiting(producer, r).unwrap();
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

fn through_the_broker(records: u64) {
    let broker = DevBroker::start().expect("dev broker");
    let bootstrap = broker.bootstrap();
    let topics = Topics::default();
    broker::admin::ensure_topics(&bootstrap, &processor::topic_specs(&topics, 1, 1)).unwrap();
    let changelog = topics.name(Topic::Changelog);
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(&bootstrap).set("linger.ms", "20").create().unwrap();
    let started = Instant::now();
    produce(&producer, &changelog, 0, records);
    eprintln!("produced {records} changelog records in {:.1} s", started.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    let before = rss_mib().1;
    let source = processor::restore::Source {
        bootstrap: bootstrap.clone(),
        changelog: changelog.clone(),
        idle_timeout: Duration::from_secs(30),
        checkpoint_max_age: Duration::from_secs(12 * 3600),
    };
    let restored =
        processor::restore::restore_partition(&source, 0, &store, &Default::default(), &mut |_| {})
            .unwrap();
    let secs = restored.elapsed.as_secs_f64();
    assert_eq!((restored.records, restored.after), (records, None));
    assert_eq!(store.applied_offset(0).unwrap(), Some(records as i64));
    println!(
        "| restore through the dev broker | {records} | {:.1} | {:.0} | {:.1} | {before} | {} | {} |",
        secs,
        records as f64 / secs,
        restored.bytes as f64 / secs / 1e6,
        rss_mib().0,
        rss_mib().1
    );

    // The partition comes back after another owner wrote `since` records.
    let since = env("SKUFLOW_RESTORE_SINCE", 10_000);
    let total = records + since;
    produce(&producer, &changelog, records, total);
    let restored =
        processor::restore::restore_partition(&source, 0, &store, &Default::default(), &mut |_| {})
            .unwrap();
    let secs = restored.elapsed.as_secs_f64();
    assert_eq!(restored.after, Some(records as i64 - 1), "on from the checkpoint");
    assert_eq!(restored.records, since + 1, "its META and what follows");
    assert_eq!(store.applied_offset(0).unwrap(), Some(total as i64));
    println!(
        "| the same partition again, {since} records written since: from the checkpoint | {} | {secs:.2} | {:.0} | {:.1} | | {} | {} |",
        restored.records,
        restored.records as f64 / secs,
        restored.bytes as f64 / secs / 1e6,
        rss_mib().0,
        rss_mib().1
    );
}

fn import_alone(records: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    let before = rss_mib().1;
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut import = store.begin_import(0).unwrap();
    for i in 0..records {
        let c = if i + 1 == records { meta(records) } else { record(i) };
        bytes += (c.key.len() + c.value.as_ref().map_or(0, Vec::len)) as u64;
        import.push(c).unwrap();
    }
    import.finish().unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(store.applied_offset(0).unwrap(), Some(records as i64));
    println!(
        "| import alone (records generated on the fly) | {records} | {secs:.1} | {:.0} | {:.1} | {before} | {} | {} |",
        records as f64 / secs,
        bytes as f64 / secs / 1e6,
        rss_mib().0,
        rss_mib().1
    );
}

fn main() {
    println!(
        "| path | records | wall s | records/s | MB/s | RSS before MiB | peak RSS so far MiB | RSS after MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    // The import first, so that its peak is its own.
    import_alone(env("SKUFLOW_IMPORT_RECORDS", 10_000_000));
    through_the_broker(env("SKUFLOW_RESTORE_RECORDS", 2_000_000));
}
