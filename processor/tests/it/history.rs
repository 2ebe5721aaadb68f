//! A processor whose state the broker's logs no longer match: the broker lost records it
//! acknowledged (the commands the state applied, or the changelog batches it wrote) and
//! handed their offsets to other records. Here the same data directory is pointed at a
//! second broker holding another version of the logs. Applying on would mix two
//! histories, as the broker-restart campaign did before these checks (RELIABILITY.md).
//! The processor must see that a log contradicts its state, rebuild the state from what
//! the broker kept (the changelog, then the commands after it), and never apply a
//! command of one history on a state of the other.

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
    restock(bootstrap, topic, prefix, 0..n, |_| ("w".to_owned(), 1));
}

/// Restock commands `{prefix}-{i}` for `i` in `ids`, each at the warehouse and of the
/// quantity `what(i)` says, on commands partition 0.
fn restock(
    bootstrap: &str,
    topic: &str,
    prefix: &str,
    ids: std::ops::Range<usize>,
    what: impl Fn(usize) -> (String, u32),
) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(bootstrap).create().unwrap();
    for i in ids {
        let (warehouse, quantity) = what(i);
        let command = Command::Restock(Restock {
            sku: Sku::new("sku-1").unwrap(),
            warehouse: WarehouseId::new(warehouse).unwrap(),
            quantity: Quantity::new(quantity).unwrap(),
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

/// Copy `records` to partition 0 of `topic` on `bootstrap`, keys, headers and (when
/// `keep_time`) timestamps included.
fn copy(bootstrap: &str, topic: &str, records: &[broker::read::ReadRecord], keep_time: bool) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(bootstrap).create().unwrap();
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(rdkafka::message::Header { key: k, value: Some(v) });
        }
        let mut record = BaseRecord::<Vec<u8>, Vec<u8>>::to(topic).partition(0).headers(headers);
        if keep_time {
            record = record.timestamp(r.timestamp);
        }
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        if let Some(p) = &r.payload {
            record = record.payload(p);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn read(bootstrap: &str, topics: &Topics, topic: Topic) -> Vec<broker::read::ReadRecord> {
    broker::read::read_all(bootstrap, &topics.name(topic), Duration::from_secs(60)).unwrap()
}

/// The command ids answered on `bootstrap`, in log order.
fn answered(bootstrap: &str, topics: &Topics) -> Vec<String> {
    read(bootstrap, topics, Topic::Replies)
        .into_iter()
        .filter_map(|r| topics::codec::from_json::<Reply>(r.payload.as_deref()).ok())
        .map(|e| e.body.command_id.as_str().to_owned())
        .collect()
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
    run_with(ProcessorConfig::new(bootstrap, "history-0", data), what, done)
}

/// [`run_until`] with `config` (ticks off, one second of gap patience).
fn run_with(mut config: ProcessorConfig, what: &str, done: impl Fn(&Health) -> bool) -> Health {
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
fn a_state_the_commands_log_no_longer_holds_is_rebuilt_from_what_the_broker_kept() {
    super::logs();
    let topics = Topics::default();
    let commands = topics.name(Topic::Commands);
    let data = tempfile::tempdir().unwrap();

    // The first history: ten restocks of one unit, applied and answered.
    let (first, _) = first_history(&topics, data.path());
    drop(first);

    // The other history: fifteen restocks of two units at the same offsets, a group
    // offset that says the first ten were applied, and no changelog.
    let second = DevBroker::start().expect("dev broker starts");
    let b2 = second.bootstrap();
    ensure_topics(&b2, &topic_specs(&topics, 1, 1)).unwrap();
    restock(&b2, &commands, "new", 0..15, |_| ("w".to_owned(), 2));
    commit_group_offset(&b2, &commands, 10);

    let (b, t) = (b2.clone(), topics.clone());
    run_until(&b2, data.path(), "every command the broker kept is answered", move |_| {
        replies(&b, &t) == 15
    });
    let answered = answered(&b2, &topics);
    let expected: Vec<String> = (0..15).map(|i| format!("new-{i}")).collect();
    assert_eq!(answered, expected, "each command of the log answered once, in order");
    // Applied on the old state, the last five would leave 10 + 5 × 2 units.
    assert_eq!(on_hand_after(&b2, &topics, "new-14"), 30, "the state is the log's, from nothing");
}

/// The unit count the reply to `command_id` reports.
fn on_hand_after(bootstrap: &str, topics: &Topics, command_id: &str) -> u64 {
    let reply = read(bootstrap, topics, Topic::Replies)
        .into_iter()
        .filter_map(|r| topics::codec::from_json::<Reply>(r.payload.as_deref()).ok())
        .map(|e| e.body)
        .find(|r| r.command_id.as_str() == command_id)
        .unwrap_or_else(|| panic!("{command_id} is answered"));
    match reply.outcome {
        Outcome::StockUpdated { level, .. } => level.on_hand,
        other => panic!("{other:?}"),
    }
}

/// The broker kept the commands log and the group offset but lost the changelog's last
/// transactions (the dev broker loses each partition's recent writes on its own). The
/// processor's store is then ahead of the changelog: applying on from it would write the
/// next batches onto rows the changelog no longer holds, and whoever restores it next
/// gets a state with rows missing. The processor must see that the changelog does not
/// end with its state, restore from it, and apply the commands after it again.
///
/// Here a second broker holds the first broker's commands (with their times), its group
/// offset, and its changelog as it was after the first five of ten commands.
#[test]
fn a_changelog_that_lost_the_states_last_batches_is_rebuilt() {
    super::logs();
    let topics = Topics::default();
    let commands = topics.name(Topic::Commands);
    let data = tempfile::tempdir().unwrap();
    let warehouse = |i: usize| (format!("w{i}"), 1);

    let first = DevBroker::start().expect("dev broker starts");
    let b1 = first.bootstrap();
    ensure_topics(&b1, &topic_specs(&topics, 1, 1)).unwrap();
    let answered_on = |b: &str, n: usize| {
        let (b, t) = (b.to_owned(), topics.clone());
        move |h: &Health| h.ready().is_ok() && replies(&b, &t) == n
    };
    restock(&b1, &commands, "c", 0..5, warehouse);
    run_until(&b1, data.path(), "the first five are answered", answered_on(&b1, 5));
    let early_changelog = read(&b1, &topics, Topic::Changelog);
    restock(&b1, &commands, "c", 5..10, warehouse);
    run_until(&b1, data.path(), "the next five are answered", answered_on(&b1, 10));
    let log = read(&b1, &topics, Topic::Commands);
    drop(first);

    let second = DevBroker::start().expect("dev broker starts");
    let b2 = second.bootstrap();
    // Create time on the copy's commands topic, so that the copied commands keep the
    // times the state saw: the commands log is the same one, only the changelog is not.
    let specs = topic_specs(&topics, 1, 1)
        .into_iter()
        .map(|mut spec| {
            if spec.name == commands {
                spec.configs.retain(|(k, _)| k != "message.timestamp.type");
                spec.configs.push(("message.timestamp.type".into(), "CreateTime".into()));
            }
            spec
        })
        .collect::<Vec<_>>();
    ensure_topics(&b2, &specs).unwrap();
    copy(&b2, &commands, &log, true);
    copy(&b2, &topics.name(Topic::Changelog), &early_changelog, false);
    commit_group_offset(&b2, &commands, 10);
    restock(&b2, &commands, "c", 10..15, warehouse);

    let mut config = ProcessorConfig::new(b2.as_str(), "history-0", data.path());
    config.require_log_append_time = false;
    run_with(config, "the last five are answered", answered_on(&b2, 10));

    // What the changelog must hold, from the commands alone: one unit in each of the
    // fifteen warehouses.
    let mut rows = std::collections::BTreeMap::new();
    for r in read(&b2, &topics, Topic::Changelog) {
        let key = state::store::keys::decode(r.key.as_deref().unwrap_or_default()).unwrap();
        if let state::store::keys::Key::Entity(state::partition::EntityKey::Stock(_, w)) = key {
            let level = r.payload.map(|v| state::store::values::stock_from(&v).unwrap());
            rows.insert(w.as_str().to_owned(), level.map(|l| l.on_hand));
        }
    }
    let expected: std::collections::BTreeMap<String, Option<u64>> =
        (0..15).map(|i| (format!("w{i}"), Some(1))).collect();
    assert_eq!(rows, expected, "the changelog holds every warehouse's row");
    let answered = answered(&b2, &topics);
    let expected: Vec<String> = (5..15).map(|i| format!("c-{i}")).collect();
    assert_eq!(answered, expected, "c-5..c-9 answered again (same ids), then the new ones");
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
    let changelog = read(&b1, &topics, Topic::Changelog);
    drop(first);
    assert!(!changelog.is_empty());

    let second = DevBroker::start().expect("dev broker starts");
    let b2 = second.bootstrap();
    ensure_topics(&b2, &topic_specs(&topics, 1, 1)).unwrap();
    copy(&b2, &topics.name(Topic::Changelog), &changelog, false);
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
