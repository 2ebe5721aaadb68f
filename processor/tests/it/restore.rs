//! State rebuilt from the changelog topic on the real dev broker equals the live state.

use std::time::Duration;

use broker::DevBroker;
use broker::admin::{TopicSpec, ensure_topics};
use processor::{apply_batch, produce, restore::restore_partition};
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use state::store::Store;
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

#[test]
fn restore_from_the_changelog_topic_equals_the_live_state() {
    let broker = DevBroker::start().expect("dev broker starts");
    let b = broker.bootstrap();
    let topic = Topics::default().name(Topic::Changelog);
    let spec = TopicSpec {
        name: topic.clone(),
        partitions: 2,
        replication: 1,
        configs: vec![("cleanup.policy".into(), "compact".into())],
    };
    ensure_topics(&b, &[spec]).unwrap();

    let machine = Machine::new(MachineConfig {
        reservation_retention_ms: 20_000,
        ..MachineConfig::default()
    });
    let mut live = PartitionState::new();
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(&b).set("enable.idempotence", "true").create().unwrap();
    let log: Vec<_> = (0..400).map(entry).collect();
    let (mut records, mut tombstones) = (0, 0);
    for (n, chunk) in log.chunks(50).enumerate() {
        let batch: Vec<processor::InRecord<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(i, (key, at, payload))| processor::InRecord {
                offset: (n * 50 + i) as i64,
                timestamp: *at,
                key: Some(key),
                payload: Some(payload),
                trace: None,
            })
            .collect();
        let applied = apply_batch(&machine, &mut live, P, &batch).unwrap();
        for out in applied.records.iter().filter(|r| r.topic == Topic::Changelog) {
            producer.send(produce::record(out, &topic)).map_err(|(e, _)| e).unwrap();
            records += 1;
            tombstones += usize::from(out.payload.is_none());
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    assert!(tombstones > 0, "the log must exercise deletes");

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    let mut reported = Vec::new();
    let cancel = Default::default();
    let restored =
        restore_partition(&b, &topic, P, &store, Duration::from_secs(60), &cancel, &mut |p| {
            reported.push(*p)
        })
        .unwrap();
    assert_eq!(restored.records, records as u64);
    let last = reported.last().unwrap();
    assert_eq!((last.records, last.remaining, last.done), (records as u64, 0, true));
    assert_eq!(last.bytes, restored.bytes);
    assert!(restored.bytes > records as u64 * 8, "keys and values are counted");
    assert_eq!(store.load(P).unwrap().snapshot(), live.snapshot());
    assert_eq!(store.applied_offset(P).unwrap(), Some(399));
    assert!(store.export(0).unwrap().is_empty(), "the other partition stays empty");
}
