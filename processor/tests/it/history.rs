//! A processor whose state was built from a commands log the broker no longer has: the
//! broker lost the records the state applied and handed their offsets to other commands
//! (here: the same data directory pointed at a second broker whose log holds other
//! commands at those offsets, and whose group offset says they were applied). Applying
//! on would mix two histories, as the broker-restart campaign did before this check
//! (RELIABILITY.md). The processor must see that the log contradicts its state, restore,
//! and, since the second broker's changelog cannot give back what the group offset
//! claims, halt the partition without answering a single command of the other history.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use broker::DevBroker;
use broker::admin::ensure_topics;
use processor::{Health, Processor, ProcessorConfig, topic_specs};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use topics::codec::to_json;
use topics::*;

fn produce(bootstrap: &str, topic: &str, prefix: &str, n: usize) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(bootstrap).create().unwrap();
    for i in 0..n {
        let command = Command::Restock(Restock {
            sku: Sku::new("sku-1").unwrap(),
            warehouse: WarehouseId::new("w").unwrap(),
            quantity: Quantity::new(1).unwrap(),
        });
        let request = Request {
            tenant: TenantId::new("acme").unwrap(),
            command_id: CommandId::new(format!("{prefix}-{i}")).unwrap(),
            command,
        };
        let payload = to_json(&Envelope::command(LogCommand::Request(request))).unwrap();
        producer
            .send(BaseRecord::to(topic).partition(0).key("sku-1").payload(&payload))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn replies(bootstrap: &str, topics: &Topics) -> usize {
    broker::read::read_all(bootstrap, &topics.name(Topic::Replies), Duration::from_secs(60))
        .unwrap()
        .len()
}

/// Commit `offset` on commands partition 0 for the processors' group.
fn commit_group_offset(bootstrap: &str, commands: &str, offset: i64) {
    let group: BaseConsumer =
        broker::client::consumer_config(bootstrap, "skuflow-processor").create().unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(commands, 0, Offset::Offset(offset)).unwrap();
    group.commit(&offsets, CommitMode::Sync).unwrap();
}

/// Apply ten commands on a first broker with a processor on `data`; returns the broker
/// (still running) and its address.
fn first_history(topics: &Topics, data: &std::path::Path) -> (DevBroker, String) {
    let first = DevBroker::start().expect("dev broker starts");
    let b1 = first.bootstrap();
    ensure_topics(&b1, &topic_specs(topics, 1, 1)).unwrap();
    produce(&b1, &topics.name(Topic::Commands), "old", 10);
    let (b, t) = (b1.clone(), topics.clone());
    run_until(&b1, data, "the first history is answered", move |h| {
        h.ready().is_ok() && replies(&b, &t) == 10
    });
    (first, b1)
}

/// Run a processor on `data` against `bootstrap` until `done(health)` or 60 s.
fn run_until(
    bootstrap: &str,
    data: &std::path::Path,
    what: &str,
    done: impl Fn(&Health) -> bool,
) -> Health {
    let mut config = ProcessorConfig::new(bootstrap, "history-0", data);
    config.tick_interval = None;
    config.gap_patience = Duration::from_secs(1);
    let health = Health::new();
    let reported = health.clone();
    let shutdown = Arc::new(AtomicBool::new(false));
    let stop = shutdown.clone();
    let worker = std::thread::spawn(move || {
        Processor::with_health(config, &prometheus::Registry::new(), reported).unwrap().run(&stop)
    });
    let started = Instant::now();
    while !done(&health) && started.elapsed() < Duration::from_secs(60) {
        std::thread::yield_now();
    }
    shutdown.store(true, Ordering::Relaxed);
    worker.join().unwrap().unwrap();
    assert!(done(&health), "{what}: health {:?}", health.check());
    health
}

#[test]
fn a_state_the_commands_log_no_longer_holds_is_not_applied_on() {
    super::logs();
    let topics = Topics::default();
    let commands = topics.name(Topic::Commands);
    let data = tempfile::tempdir().unwrap();

    // The first history: ten commands, applied and answered.
    let (first, _) = first_history(&topics, data.path());
    drop(first);

    // The other history: fifteen other commands at the same offsets, and a group offset
    // that says the first ten were applied.
    let second = DevBroker::start().expect("dev broker starts");
    let b2 = second.bootstrap();
    ensure_topics(&b2, &topic_specs(&topics, 1, 1)).unwrap();
    produce(&b2, &commands, "new", 15);
    commit_group_offset(&b2, &commands, 10);

    let health = run_until(&b2, data.path(), "the partition halts", |h| h.check().is_err());
    let why = health.check().unwrap_err();
    assert!(why.contains("partition 0: halted"), "{why}");
    assert_eq!(replies(&b2, &topics), 0, "no command of the other history was answered");
}

/// The broker kept the changelog of the first history but lost its commands, and gave
/// their offsets to other commands: the state restored from the changelog is kept (it is
/// what the changelog holds, so nothing gets mixed), the commands at the reused offsets
/// are skipped like the rest of what the broker lost, and the ones after are applied on
/// it. Halting here would stop the partition for good over commands already lost.
#[test]
fn a_changelog_state_the_commands_log_contradicts_is_kept_and_applied_on() {
    super::logs();
    let topics = Topics::default();
    let commands = topics.name(Topic::Commands);
    let (first, b1) = first_history(&topics, tempfile::tempdir().unwrap().path());
    let changelog =
        broker::read::read_all(&b1, &topics.name(Topic::Changelog), Duration::from_secs(60))
            .unwrap();
    drop(first);
    assert!(!changelog.is_empty());

    let second = DevBroker::start().expect("dev broker starts");
    let b2 = second.bootstrap();
    ensure_topics(&b2, &topic_specs(&topics, 1, 1)).unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(&b2).create().unwrap();
    let changelog_topic = topics.name(Topic::Changelog);
    for r in &changelog {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(rdkafka::message::Header { key: k, value: Some(v) });
        }
        let mut record =
            BaseRecord::<Vec<u8>, Vec<u8>>::to(&changelog_topic).partition(0).headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        if let Some(p) = &r.payload {
            record = record.payload(p);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    produce(&b2, &commands, "new", 15);
    commit_group_offset(&b2, &commands, 10);

    // A fresh data directory: the state comes from the changelog.
    let data = tempfile::tempdir().unwrap();
    let (b, t) = (b2.clone(), topics.clone());
    run_until(&b2, data.path(), "the five commands after the state are answered", move |_| {
        replies(&b, &t) == 5
    });
    let last = broker::read::read_all(&b2, &topics.name(Topic::Replies), Duration::from_secs(60))
        .unwrap()
        .into_iter()
        .filter_map(|r| topics::codec::from_json::<Reply>(r.payload.as_deref()).ok())
        .map(|e| e.body)
        .find(|r| r.command_id.as_str() == "new-14")
        .expect("new-14 is answered");
    match last.outcome {
        Outcome::StockUpdated { level, .. } => {
            assert_eq!(level.on_hand, 15, "ten units of the kept state and five new ones")
        }
        other => panic!("{other:?}"),
    }
}
