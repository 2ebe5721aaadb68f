//! State rebuilt from the changelog topic on the real dev broker equals the live state,
//! whether the restore reads the whole partition or only what follows the store's
//! checkpoint.

use std::time::Duration;

use broker::DevBroker;
use broker::admin::{TopicSpec, ensure_topics};
use processor::restore::{Progress, Restored, Source, restore_partition};
use processor::{apply_batch, produce};
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use state::store::keys::{self, Key};
use state::store::{Batch, Change, Store, values};
use state::{Machine, MachineConfig, PartitionState};
use topics::codec::to_json;
use topics::*;

const P: i32 = 1;

/// Entry `i`: restocks, holds, releases, purchases and ticks that expire holds, so the
/// changelog carries updates and tombstones.
fn entry(i: u64) -> (Vec<u8>, LogTime, Vec<u8>) {
    let sku = ["a", "b", "c"][(i % 3) as usize];
    let s = Sku::new(sku).unwrap();
    let earlier = ReservationId::new(s.clone(), i.saturating_sub(3));
    let command = match i % 7 {
        0 => Command::Restock(Restock {
            sku: s,
            warehouse: WarehouseId::new("w").unwrap(),
            quantity: Quantity::new(4).unwrap(),
        }),
        1..=3 => Command::Reserve(Reserve {
            sku: s,
            quantity: Quantity::new(1).unwrap(),
            warehouse: None,
            strategy: None,
            allow_partial: false,
            ttl_ms: Some(5_000),
        }),
        4 => Command::Release(Release { reservation: earlier }),
        5 => Command::Purchase(Purchase { reservation: earlier, quantity: None }),
        _ => {
            return (
                sku.as_bytes().to_vec(),
                LogTime(i * 1_000),
                to_json(&Envelope::command(LogCommand::Tick)).unwrap(),
            );
        }
    };
    let request = Request {
        tenant: TenantId::new("t").unwrap(),
        command_id: CommandId::new(format!("c{i}")).unwrap(),
        command,
    };
    (
        sku.as_bytes().to_vec(),
        LogTime(i * 1_000),
        to_json(&Envelope::command(LogCommand::Request(request))).unwrap(),
    )
}

/// A changelog topic on a dev broker of its own, and the live state whose batches it
/// holds.
struct Changelog {
    broker: DevBroker,
    topic: String,
    machine: Machine,
    live: PartitionState,
    producer: ThreadedProducer<DefaultProducerContext>,
    /// Records produced, and how many were tombstones.
    records: u64,
    tombstones: u64,
    /// The offset of every META record produced.
    metas: Vec<i64>,
    /// The offset the next record gets.
    next_offset: i64,
    /// Every record produced, in order.
    changes: Vec<Change>,
}

impl Changelog {
    fn new() -> Self {
        let broker = DevBroker::start().expect("dev broker starts");
        let topic = Topics::default().name(Topic::Changelog);
        let spec = TopicSpec {
            name: topic.clone(),
            partitions: 2,
            replication: 1,
            configs: vec![("cleanup.policy".into(), "compact".into())],
        };
        ensure_topics(&broker.bootstrap(), &[spec]).unwrap();
        let producer = broker::client::producer_config(&broker.bootstrap())
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        let machine = Machine::new(MachineConfig {
            reservation_retention_ms: 20_000,
            ..MachineConfig::default()
        });
        Changelog {
            broker,
            topic,
            machine,
            live: PartitionState::new(),
            producer,
            records: 0,
            tombstones: 0,
            metas: Vec::new(),
            next_offset: 0,
            changes: Vec::new(),
        }
    }

    /// Apply log entries `from..to` in batches of 50 and produce their changelog records
    /// (one producer: offsets follow one another, except where a test writes others).
    fn apply(&mut self, from: u64, to: u64) {
        let log: Vec<_> = (from..to).map(entry).collect();
        for (n, chunk) in log.chunks(50).enumerate() {
            let batch: Vec<processor::InRecord<'_>> = chunk
                .iter()
                .enumerate()
                .map(|(i, (key, at, payload))| processor::InRecord {
                    offset: from as i64 + (n * 50 + i) as i64,
                    timestamp: *at,
                    key: Some(key),
                    payload: Some(payload),
                    trace: None,
                })
                .collect();
            let applied = apply_batch(&self.machine, &mut self.live, P, &batch).unwrap();
            for out in applied.records.iter().filter(|r| r.topic == Topic::Changelog) {
                self.producer.send(produce::record(out, &self.topic)).map_err(|(e, _)| e).unwrap();
                if keys::decode(&out.key) == Ok(Key::Meta) {
                    self.metas.push(self.next_offset);
                }
                self.next_offset += 1;
                self.changes.push(Change { key: out.key.clone(), value: out.payload.clone() });
                self.records += 1;
                self.tombstones += u64::from(out.payload.is_none());
            }
        }
        self.producer.flush(Duration::from_secs(30)).unwrap();
    }

    fn restore(&self, store: &Store, reported: &mut Vec<Progress>) -> Restored {
        let source = Source {
            bootstrap: self.broker.bootstrap(),
            changelog: self.topic.clone(),
            idle_timeout: Duration::from_secs(60),
            checkpoint_max_age: Duration::from_secs(12 * 3600),
        };
        restore_partition(&source, P, store, &Default::default(), &mut |p| reported.push(*p))
            .unwrap()
    }
}

#[test]
fn restore_from_the_changelog_topic_equals_the_live_state() {
    let mut log = Changelog::new();
    log.apply(0, 400);
    assert!(log.tombstones > 0, "the log must exercise deletes");

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    let mut reported = Vec::new();
    let restored = log.restore(&store, &mut reported);
    assert_eq!(restored.records, log.records);
    assert_eq!(restored.after, None, "an empty store reads the whole partition");
    let last = reported.last().unwrap();
    assert_eq!((last.records, last.remaining, last.done), (log.records, 0, true));
    assert_eq!(last.bytes, restored.bytes);
    assert!(restored.bytes > log.records * 8, "keys and values are counted");
    assert_eq!(store.load(P).unwrap().snapshot(), log.live.snapshot());
    assert_eq!(store.applied_offset(P).unwrap(), Some(399));
    assert_eq!(store.checkpoint(P).unwrap().map(|c| c.offset), log.metas.last().copied());
    assert!(store.export(0).unwrap().is_empty(), "the other partition stays empty");
}

/// A store restored once catches up on what another owner wrote since by reading only
/// the records after its checkpoint, tombstones included; a checkpoint the changelog does
/// not hold unchanged makes the restore read the whole partition.
#[test]
fn a_restore_reads_only_what_follows_a_checkpoint_the_changelog_holds() {
    let mut log = Changelog::new();
    log.apply(0, 200);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    log.restore(&store, &mut Vec::new());
    let (checkpoint, before) = (*log.metas.last().unwrap(), log.records);

    let tombstones = log.tombstones;
    log.apply(200, 400);
    assert!(log.tombstones > tombstones, "deletes follow the checkpoint");
    let restored = log.restore(&store, &mut Vec::new());
    assert_eq!(restored.after, Some(checkpoint));
    assert_eq!(
        restored.records,
        log.records - before + 1,
        "the checkpoint's META and what follows"
    );
    assert_eq!(store.load(P).unwrap().snapshot(), log.live.snapshot());
    assert_eq!(store.applied_offset(P).unwrap(), Some(399));
    assert_eq!(store.checkpoint(P).unwrap().map(|c| c.offset), log.metas.last().copied());

    // Nothing new: the checkpoint's META alone.
    let restored = log.restore(&store, &mut Vec::new());
    assert_eq!((restored.after, restored.records), (log.metas.last().copied(), 1));
    assert_eq!(store.load(P).unwrap().snapshot(), log.live.snapshot());

    // A checkpoint naming another record (here an older META: the broker rewrote the
    // log, or the store is wrong) is not trusted.
    let meta = store.meta(P).unwrap().unwrap();
    let changes = vec![Change { key: keys::encode(&Key::Meta), value: Some(values::meta(&meta)) }];
    store.write_at(&Batch { partition: P, changes }, Some(log.metas[0])).unwrap();
    let restored = log.restore(&store, &mut Vec::new());
    assert_eq!((restored.after, restored.records), (None, log.records));
    assert_eq!(store.load(P).unwrap().snapshot(), log.live.snapshot());
}

/// A transaction left open on the changelog before the checkpoint hides it (read_committed
/// stops before the open transaction and reports no end): the restore waits a little for
/// the checkpoint's record, then reads the whole partition as far as it can. Once the
/// transaction is aborted, the next restore goes on from the checkpoint that one noted.
#[test]
fn a_transaction_open_before_the_checkpoint_makes_the_restore_read_all_it_can() {
    let mut log = Changelog::new();
    log.apply(0, 100);
    let before = *log.metas.last().unwrap();
    let open: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(&log.broker.bootstrap())
            .set("transactional.id", "open-before-the-checkpoint")
            .create()
            .unwrap();
    open.init_transactions(Duration::from_secs(30)).unwrap();
    open.begin_transaction().unwrap();
    let record = rdkafka::producer::BaseRecord::to(&log.topic).partition(P).key(&[0x01][..]);
    open.send::<[u8], [u8]>(record.payload(&[0u8; 16][..])).map_err(|(e, _)| e).unwrap();
    open.flush(Duration::from_secs(30)).unwrap();
    log.next_offset += 1;
    log.apply(100, 200);

    // A store that holds everything up to the last META, and knows it.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    store.import(P, log.changes.clone()).unwrap();
    let meta = store.meta(P).unwrap().unwrap();
    let last = *log.metas.last().unwrap();
    store.set_checkpoint(P, values::Checkpoint::now(last, meta)).unwrap();

    let restored = log.restore(&store, &mut Vec::new());
    assert_eq!(restored.after, None, "the checkpoint's record never came");
    assert_eq!(store.applied_offset(P).unwrap(), Some(99), "the changelog as far as it is stable");
    assert_eq!(store.checkpoint(P).unwrap().map(|c| c.offset), Some(before));

    open.abort_transaction(Duration::from_secs(30)).unwrap();
    let restored = log.restore(&store, &mut Vec::new());
    assert_eq!(restored.after, Some(before), "on from the checkpoint the last restore noted");
    assert_eq!(store.load(P).unwrap().snapshot(), log.live.snapshot());
    assert_eq!(store.applied_offset(P).unwrap(), Some(199));
}
