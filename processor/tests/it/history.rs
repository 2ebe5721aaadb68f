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
    let first = DevBroker::start().expect("dev broker starts");
    let b1 = first.bootstrap();
    ensure_topics(&b1, &topic_specs(&topics, 1, 1)).unwrap();
    produce(&b1, &commands, "old", 10);
    let b = b1.clone();
    let topics1 = topics.clone();
    run_until(&b1, data.path(), "the first history is answered", move |h| {
        h.ready().is_ok() && replies(&b, &topics1) == 10
    });
    drop(first);

    // The other history: fifteen other commands at the same offsets, and a group offset
    // that says the first ten were applied.
    let second = DevBroker::start().expect("dev broker starts");
    let b2 = second.bootstrap();
    ensure_topics(&b2, &topic_specs(&topics, 1, 1)).unwrap();
    produce(&b2, &commands, "new", 15);
    let group: BaseConsumer =
        broker::client::consumer_config(&b2, "skuflow-processor").create().unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(&commands, 0, Offset::Offset(10)).unwrap();
    group.commit(&offsets, CommitMode::Sync).unwrap();
    drop(group);

    let health = run_until(&b2, data.path(), "the partition halts", |h| h.check().is_err());
    let why = health.check().unwrap_err();
    assert!(why.contains("partition 0: halted"), "{why}");
    assert_eq!(replies(&b2, &topics), 0, "no command of the other history was answered");
}
