//! `skuflow processor` as a child process against the real dev broker: killed, stopped,
//! fenced, and audited afterwards (invariants I1-I7 from the output topics).

use crate::support::*;
use nix::sys::signal::Signal;
use processor::restore::{Source, restore_partition};
use rdkafka::producer::Producer;
use state::store::Store;
use topics::Topic;

#[test]
fn kill9_mid_stream_and_restart_loses_nothing_and_applies_nothing_twice() {
    let cluster = Cluster::start();
    // The backlog is there before the processor starts, in transactions of 100, so the
    // kill lands in the middle of it.
    let phase1 = stock_and_holds("k", 16, 3000);
    cluster.produce(&phase1);
    let expected1 = answerable(&phase1);
    let a = cluster.processor_with("p-0", "store-0", &["--batch-max", "100"]);
    let partial = cluster.wait_replies(1);
    a.kill9();
    assert!(partial.len() < expected1, "the kill landed mid-stream");

    let a = cluster.processor("p-0", "store-0");
    let replies = cluster.wait_replies(expected1);
    let mut phase2 = release_and_purchase("k", &replies);
    // One rejection for the restarted incarnation's own metrics, wherever the kill landed.
    let too_much = topics::Command::Reserve(topics::Reserve {
        sku: sku(0),
        quantity: topics::Quantity::new(1_000).unwrap(),
        warehouse: None,
        strategy: None,
        allow_partial: false,
        ttl_ms: None,
    });
    phase2.push(request("k-too-much", too_much));
    cluster.produce(&phase2);
    cluster.wait_replies(expected1 + answerable(&phase2));
    let metrics = a.metrics();
    for family in [
        "skuflow_processor_batch_commands_count",
        "skuflow_processor_commit_seconds_bucket",
        "skuflow_processor_rejections_total{reason=\"insufficient_stock\"}",
        "skuflow_processor_applied_total",
        "skuflow_processor_ticks_total",
    ] {
        assert!(metrics.contains(family), "metrics lack {family}:\n{metrics}");
    }
    // Ticks go out every 200 ms once the ticker's producer is ready; the restarted
    // incarnation may answer everything sooner. Stop only once one is in the log.
    let commands = cluster.topics.name(Topic::Commands);
    let tick_in_log = || {
        broker::read::read_all(&cluster.bootstrap, &commands, WAIT).unwrap().iter().any(|r| {
            topics::codec::from_json::<topics::LogCommand>(r.payload.as_deref())
                .is_ok_and(|e| matches!(e.body, topics::LogCommand::Tick))
        })
    };
    wait_until(tick_in_log, "a tick in the commands log", &a);
    let data_dir = a.data_dir.clone();
    assert!(a.stop().success(), "a stopped processor exits 0");

    let report = cluster.audit();
    assert_clean(&report);
    assert_eq!(report.replies, expected1 + answerable(&phase2), "one reply per command:\n{report}");
    assert_eq!(report.dead_lettered, 2, "both poison records dead-lettered:\n{report}");
    assert!(report.ticks > 0, "the processor appended ticks:\n{report}\n{}", cluster.logs());

    // I6 against the live store: what the changelog rebuilds equals what the processor
    // holds in RocksDB.
    assert_store_is_the_changelog(&cluster, &data_dir);
}

/// What the changelog rebuilds equals what the processor with data directory `data_dir`
/// holds in RocksDB, partition by partition; where the store notes where its state ends
/// in the changelog (its checkpoint, from the delivery reports of its last batch or from
/// its last restore), that is the last META there. Returns the partitions with one.
fn assert_store_is_the_changelog(cluster: &Cluster, data_dir: &std::path::Path) -> usize {
    let mut with_checkpoint = 0;
    let live = Store::open(data_dir, false).unwrap();
    let rebuilt_dir = tempfile::tempdir().unwrap();
    let rebuilt = Store::open(rebuilt_dir.path(), false).unwrap();
    let source = Source {
        bootstrap: cluster.bootstrap.clone(),
        changelog: cluster.topics.name(Topic::Changelog),
        idle_timeout: WAIT,
        checkpoint_max_age: std::time::Duration::ZERO,
    };
    for p in 0..PARTITIONS {
        restore_partition(&source, p, &rebuilt, &Default::default(), &mut |_| {}).unwrap();
        assert_eq!(
            rebuilt.load(p).unwrap().snapshot(),
            live.load(p).unwrap().snapshot(),
            "partition {p}: changelog state equals the live store"
        );
        let at = |s: &Store| s.checkpoint(p).unwrap().map(|c| (c.offset, c.meta));
        if at(&live).is_some() {
            with_checkpoint += 1;
            assert_eq!(
                at(&live),
                at(&rebuilt),
                "partition {p}: the checkpoint is the changelog's last META"
            );
        }
    }
    with_checkpoint
}

/// Partitions that another processor worked on meanwhile come back to a store that
/// still holds them: the restore reads only what the other wrote after the store's
/// checkpoint, not the partitions' whole changelog.
#[test]
fn partitions_that_come_back_restore_from_the_stores_checkpoint() {
    let cluster = Cluster::start();
    let on = ["--restore-from-checkpoint"];
    let a = cluster.processor_with("p-0", "store-0", &on);
    let phase1 = stock_and_holds("m", 16, 600);
    cluster.produce(&phase1);
    let expected1 = answerable(&phase1);
    let replies = cluster.wait_replies(expected1);
    assert!(a.stop().success());

    let b = cluster.processor_with("p-1", "store-1", &on);
    let phase2 = release_and_purchase("m", &replies);
    cluster.produce(&phase2);
    let expected2 = expected1 + answerable(&phase2);
    cluster.wait_replies(expected2);
    let restores = b.metrics();
    assert!(b.stop().success());
    assert!(
        restores.contains(&format!(
            "skuflow_processor_restores_total{{from=\"beginning\"}} {PARTITIONS}"
        )),
        "an empty store reads every partition from the beginning:\n{restores}"
    );

    let a = cluster.processor_with("p-0", "store-0", &on);
    let phase3 = stock_and_holds("n", 16, 300);
    cluster.produce(&phase3);
    cluster.wait_replies(expected2 + answerable(&phase3));
    let metrics = a.metrics();
    let data_dir = a.data_dir.clone();
    assert!(a.stop().success());
    assert!(
        metrics.contains(&format!(
            "skuflow_processor_restores_total{{from=\"checkpoint\"}} {PARTITIONS}"
        )),
        "every partition came back to its checkpoint:\n{metrics}\n{}",
        cluster.logs()
    );
    assert!(!metrics.contains("skuflow_processor_restores_total{from=\"beginning\"}"), "{metrics}");
    let report = cluster.audit();
    assert_clean(&report);
    assert_eq!(report.replies, expected2 + answerable(&phase3), "one reply per command:\n{report}");
    let noted = assert_store_is_the_changelog(&cluster, &data_dir);
    assert_eq!(noted, PARTITIONS as usize, "every partition goes on noting its checkpoint");
}

#[test]
fn two_processors_share_the_partitions_and_one_leaves() {
    let cluster = Cluster::start();
    let a = cluster.processor("p-0", "store-0");
    let b = cluster.processor("p-1", "store-1");
    // Sharing first: both own partitions (a member leaving in the middle of the
    // cooperative rebalance can stall the dev broker's group, BROKERS.md).
    let started = std::time::Instant::now();
    while !(a.assigned() > 0 && b.assigned() > 0 && a.assigned() + b.assigned() == PARTITIONS) {
        assert!(
            started.elapsed() < WAIT,
            "the two never shared the partitions:\n{}",
            cluster.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let phase1 = stock_and_holds("t", 16, 1500);
    cluster.produce(&phase1);
    cluster.wait_replies(100);
    assert!(a.stop().success(), "the leaving processor exits cleanly");

    let expected1 = answerable(&phase1);
    let replies = cluster.wait_replies(expected1);
    let phase2 = release_and_purchase("t", &replies);
    cluster.produce(&phase2);
    cluster.wait_replies(expected1 + answerable(&phase2));
    assert!(b.stop().success());

    let report = cluster.audit();
    assert_clean(&report);
    assert_eq!(report.replies, expected1 + answerable(&phase2), "one reply per command:\n{report}");
}

#[test]
fn a_zombie_is_fenced_and_none_of_its_output_is_visible() {
    let cluster = Cluster::start();
    let mut zombie = cluster.processor("p-0", "store-0");
    let phase1 = stock_and_holds("z", 16, 1500);
    cluster.produce(&phase1);
    cluster.wait_replies(100);
    // Frozen past the session timeout, while the same instance is started elsewhere
    // (a rescheduled pod): the new incarnation fences the old one's transactional id
    // and, once the group drops the frozen member, restores from the changelog.
    zombie.signal(Signal::SIGSTOP);
    let successor = cluster.processor("p-0", "store-1");
    let expected1 = answerable(&phase1);
    let replies = cluster.wait_replies(expected1);
    let phase2 = release_and_purchase("z", &replies);
    cluster.produce(&phase2);

    zombie.signal(Signal::SIGCONT);
    let status = zombie.wait(WAIT);
    assert_eq!(status.code(), Some(3), "the zombie stops as fenced:\n{}", zombie.log_text());
    assert!(zombie.log_text().contains("fenced"), "{}", zombie.log_text());

    cluster.wait_replies(expected1 + answerable(&phase2));
    assert!(successor.stop().success());
    let report = cluster.audit();
    assert_clean(&report);
    assert_eq!(report.replies, expected1 + answerable(&phase2), "one reply per command:\n{report}");
}

/// A partition that has work and makes no progress is reported: an open transaction of
/// another producer on the commands topic holds its last stable offset, so the processor
/// (read_committed) cannot read past it while its own ticks keep arriving behind it. The
/// watchdog must fail `/healthz` naming the partition and what the fetcher says, count the
/// stall, and the partition must recover once the transaction ends.
#[test]
fn a_stalled_partition_fails_healthz_and_recovers_when_the_cause_goes() {
    let cluster = Cluster::start();
    let p = cluster.processor_with("p-0", "store-0", &["--stall-timeout-ms", "2000"]);
    wait_until(|| p.assigned() == PARTITIONS, "partitions assigned", &p);
    wait_until(|| p.healthz().contains(" 200 "), "healthy at first", &p);

    let blocker = open_transaction(&cluster, "someone-else", Topic::Commands);

    wait_until(|| p.healthz().contains(" 503 "), "healthz fails while stalled", &p);
    let why = p.healthz();
    assert!(why.contains("partition 0: stalled"), "{why}");
    assert!(why.contains("last stable offset"), "names what the fetcher reports: {why}");
    assert!(!why.contains("partition 1:"), "only the blocked partition: {why}");
    let metrics = p.metrics();
    assert!(metrics.contains("skuflow_processor_stalls_total "), "{metrics}");
    assert!(!metrics.contains("skuflow_processor_stalls_total 0"), "{metrics}");
    assert!(p.log_text().contains("partition stalled"), "an error in the log");

    blocker.abort_transaction(WAIT).unwrap();
    wait_until(|| p.healthz().contains(" 200 "), "healthy once the transaction ended", &p);
    assert!(p.stop().success());
}

/// Another producer (transactional id `id`) with a transaction left open on partition 0
/// of `topic`, holding one record: read_committed readers see nothing past it until it
/// ends (`abort_transaction`).
fn open_transaction(
    cluster: &Cluster,
    id: &str,
    topic: Topic,
) -> rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    let producer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &cluster.bootstrap)
        .set("transactional.id", id)
        .create::<rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>>()
        .unwrap();
    producer.init_transactions(WAIT).unwrap();
    producer.begin_transaction().unwrap();
    let topic = cluster.topics.name(topic);
    let record = rdkafka::producer::BaseRecord::<[u8], [u8]>::to(&topic)
        .partition(0)
        .key(b"x")
        .payload(b"x");
    producer.send(record).map_err(|(e, _)| e).unwrap();
    producer.flush(WAIT).unwrap();
    producer
}

fn wait_until(mut f: impl FnMut() -> bool, what: &str, p: &Proc) {
    let started = std::time::Instant::now();
    while !f() {
        assert!(started.elapsed() < WAIT, "{what}: not within {WAIT:?}\n{}", p.log_text());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// On a real cluster an operator pre-creates the topics. A commands topic stamped with the
/// producer's clock (CreateTime) would let a record stamped two days ahead expire every
/// hold on its partition: the processor refuses to start and says why.
#[test]
fn a_commands_topic_with_create_time_is_refused() {
    let cluster = Cluster::start_with(|specs| {
        for s in specs.iter_mut() {
            for (k, v) in &mut s.configs {
                if k == "message.timestamp.type" {
                    *v = "CreateTime".into();
                }
            }
        }
    });
    let commands = cluster.topics.name(Topic::Commands);
    let ahead =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64
            + 2 * 24 * 3600 * 1000;
    let (key, payload) = request("ahead", restock_command("sku-0", 1));
    let producer: rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        broker::client::producer_config(&cluster.bootstrap).create().unwrap();
    producer
        .send(
            rdkafka::producer::BaseRecord::to(&commands)
                .key(&key)
                .payload(&payload)
                .timestamp(ahead),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(WAIT).unwrap();

    let mut p = cluster.processor("p-0", "store-0");
    let status = p.wait(WAIT);
    assert!(!status.success(), "the processor must not run on a CreateTime commands topic");
    let log = p.log_text();
    assert!(
        log.contains("message.timestamp.type=CreateTime") && log.contains("LogAppendTime"),
        "{log}"
    );
    assert!(cluster.replies().is_empty(), "nothing was applied");
}

/// The group's committed offset is ahead of everything the changelog holds (a broker that
/// lost committed changelog records, or an operator who moved the offset): resuming there
/// would skip commands. The commands log still holds them, so after its patience the
/// processor applies them from the changelog's state on ("replay") instead of skipping
/// them: every command of the partition is answered, once, and the partition goes on.
#[test]
fn a_gap_between_the_changelog_and_the_committed_offset_is_replayed_not_skipped() {
    let cluster = Cluster::start();
    let first: Vec<_> =
        (0..4).map(|i| request(&format!("a-{i}"), restock_command(&home_sku(0, i), 1))).collect();
    cluster.produce(&first);
    let p = cluster.processor("p-0", "store-0");
    cluster.wait_replies(first.len());
    let data_dir = p.data_dir.clone();
    assert!(p.stop().success());

    // Ten more commands on partition 0; the group's offset is then moved five past the
    // first of them, as if those five had been applied.
    let more: Vec<_> = (0..10)
        .map(|i| request(&format!("b-{i}"), restock_command(&home_sku(0, 100 + i), 1)))
        .collect();
    cluster.produce(&more);
    let store = state::store::Store::open(&data_dir, false).unwrap();
    let applied = store.applied_offset(0).unwrap().expect("partition 0 applied");
    drop(store);
    let commands = cluster.topics.name(Topic::Commands);
    let skip_to = applied + 1 + 5;
    commit_group_offset(&cluster, &commands, 0, skip_to);

    let p = cluster.processor_with("p-0", "store-0", &["--gap-patience-ms", "3000"]);
    let other = vec![request("c-1", restock_command(&home_sku(1, 0), 1))];
    cluster.produce(&other);
    let replies = cluster.wait_replies(first.len() + more.len() + other.len());
    let answered: std::collections::BTreeSet<&str> =
        replies.values().map(|r| r.command_id.as_str()).collect();
    for id in (0..10).map(|i| format!("b-{i}")).chain(["c-1".to_owned()]) {
        assert!(answered.contains(id.as_str()), "{id} is answered: {answered:?}");
    }
    let metrics = p.metrics();
    assert!(metrics.contains("skuflow_processor_replayed_commands_total 5"), "{metrics}");
    assert!(!p.healthz().contains(" 503 "), "no partition halted: {}", p.healthz());
    let log = p.log_text();
    assert!(log.contains(&format!("applying the 5 commands from offset {}", applied + 1)), "{log}");
}

fn restock_command(sku: &str, n: u32) -> topics::Command {
    topics::Command::Restock(topics::Restock {
        sku: topics::Sku::new(sku).unwrap(),
        warehouse: topics::WarehouseId::new("main").unwrap(),
        quantity: topics::Quantity::new(n).unwrap(),
    })
}

/// The `n`th SKU name that murmur2 places on `partition`.
fn home_sku(partition: i32, n: usize) -> String {
    (0..)
        .map(|i| format!("sku-{i}"))
        .filter(|s| topics::keys::partition_for(s.as_bytes(), PARTITIONS) == partition)
        .nth(n)
        .unwrap()
}

/// Commit `offset` for `partition` in the processors' group, as an operator's tool would.
fn commit_group_offset(cluster: &Cluster, topic: &str, partition: i32, offset: i64) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let consumer: BaseConsumer =
        broker::client::consumer_config(&cluster.bootstrap, "skuflow-processor").create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset)).unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

/// The group's committed offset is behind the store (a broker that lost committed offsets,
/// or an operator who rewound the group): the records in between are read again but never
/// applied twice, and everything after them is applied once.
#[test]
fn a_store_ahead_of_the_committed_offset_applies_nothing_twice() {
    let cluster = Cluster::start();
    let first: Vec<_> =
        (0..6).map(|i| request(&format!("a-{i}"), restock_command(&home_sku(0, i), 1))).collect();
    cluster.produce(&first);
    let p = cluster.processor("p-0", "store-0");
    cluster.wait_replies(first.len());
    assert!(p.stop().success());
    commit_group_offset(&cluster, &cluster.topics.name(Topic::Commands), 0, 0);

    let p = cluster.processor("p-0", "store-0");
    let more: Vec<_> =
        (0..3).map(|i| request(&format!("b-{i}"), restock_command(&home_sku(0, i), 1))).collect();
    cluster.produce(&more);
    cluster.wait_replies(first.len() + more.len());
    assert!(p.stop().success());
    let report = cluster.audit();
    assert_clean(&report);
    assert_eq!(report.replies, first.len() + more.len(), "one reply per command:\n{report}");
}

/// A processor handed a partition whose changelog is long restores it on a thread of its
/// own: the other partitions are answered meanwhile, and afterwards the partition carries
/// on from the restored state (stock that exists only in the changelog is reserved).
#[test]
fn a_partition_restoring_a_long_changelog_does_not_hold_up_the_others() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use state::store::keys::{self, Key};
    use state::store::values;
    const ROWS: usize = 400_000;
    let cluster = Cluster::start();
    // Partition 0's changelog: a stock row of a SKU that lives there, ROWS filler rows,
    // and META (offset 0 applied). Its commands topic holds that one record, committed.
    let here = home_sku(0, 0);
    let row = |sku: &str, on_hand: u64| {
        let key = keys::encode(&Key::Entity(state::EntityKey::Stock(
            topics::Sku::new(sku).unwrap(),
            topics::WarehouseId::new("main").unwrap(),
        )));
        let level = topics::StockLevel { on_hand, reserved: 0, sold: 0, version: 1 };
        (key, values::stock(&level))
    };
    let meta = values::meta(&values::Meta { log_time: topics::LogTime(1), applied: Some(0) });
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(&cluster.bootstrap).create().unwrap();
    let changelog = cluster.topics.name(Topic::Changelog);
    let send = |key: &[u8], value: &[u8]| {
        broker::client::send_waiting(
            &producer,
            BaseRecord::to(&changelog).partition(0).key(key).payload(value),
        )
        .unwrap();
    };
    let (key, value) = row(&here, 10);
    send(&key, &value);
    for i in 0..ROWS {
        let (key, value) = row(&format!("filler-{i}"), 1);
        send(&key, &value);
    }
    send(&keys::encode(&Key::Meta), &meta);
    producer.flush(std::time::Duration::from_secs(60)).unwrap();
    cluster.produce(&[request("old", restock_command(&here, 10))]);
    let commands = cluster.topics.name(Topic::Commands);
    commit_group_offset(&cluster, &commands, 0, 1);

    let p = cluster.processor("p-0", "store-0");
    let restoring = "skuflow_processor_restoring{partition=\"0\"} 1";
    wait_until(|| p.metrics().contains(restoring), "partition 0 starts restoring", &p);
    cluster.produce(&[request("other", restock_command(&home_sku(1, 0), 1))]);
    cluster.wait_replies(1);
    let metrics = p.metrics();
    assert!(
        metrics.contains(restoring),
        "partition 1 was answered while partition 0 was still restoring:\n{metrics}"
    );
    wait_until(
        || p.metrics().contains("skuflow_processor_restoring{partition=\"0\"} 0"),
        "the restore ends",
        &p,
    );
    let metrics = p.metrics();
    let want = format!("skuflow_processor_restore_records{{partition=\"0\"}} {}", ROWS + 2);
    assert!(metrics.contains(&want), "every changelog record was read: {want}\n{metrics}");
    assert!(metrics.contains("skuflow_processor_restore_remaining{partition=\"0\"} 0"));
    let reserve = topics::Command::Reserve(topics::Reserve {
        sku: topics::Sku::new(&here).unwrap(),
        quantity: topics::Quantity::new(10).unwrap(),
        warehouse: None,
        strategy: None,
        allow_partial: false,
        ttl_ms: None,
    });
    cluster.produce(&[request("after", reserve)]);
    let replies = cluster.wait_replies(2);
    let after = replies.values().find(|r| r.command_id.as_str() == "after").unwrap();
    assert!(
        matches!(after.outcome, topics::Outcome::Reserved { .. }),
        "the restored stock is there: {:?}",
        after.outcome
    );
    assert!(
        !replies.values().any(|r| r.command_id.as_str() == "old"),
        "the command before the committed offset is not applied again"
    );
}

/// An idempotency window longer than the commands topic keeps its records is refused at
/// start, naming both numbers; one that fits starts (the other tests).
#[test]
fn an_idempotency_window_longer_than_the_commands_retention_is_refused() {
    let cluster = Cluster::start();
    let week: u64 = 7 * 24 * 3600 * 1000;
    let window = (week + 1).to_string();
    let mut p = cluster.processor_with("p-0", "store-0", &["--idempotency-window-ms", &window]);
    let status = p.wait(WAIT);
    assert!(!status.success(), "the processor must not start");
    let log = p.log_text();
    assert!(
        log.contains(&format!("retention.ms={week}")) && log.contains(&window),
        "the refusal names the retention and the window:\n{log}"
    );
}

/// A changelog that cannot be restored (a record whose key is not skuflow's) is tried a
/// few times, then the partition is halted with the reason, and the others go on.
#[test]
fn a_changelog_that_cannot_be_restored_halts_its_partition_after_retries() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let cluster = Cluster::start();
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(&cluster.bootstrap).create().unwrap();
    let changelog = cluster.topics.name(Topic::Changelog);
    broker::client::send_waiting(
        &producer,
        BaseRecord::to(&changelog).partition(0).key(&b"\xffnot a store key"[..]).payload(&b"x"[..]),
    )
    .unwrap();
    producer.flush(std::time::Duration::from_secs(30)).unwrap();
    cluster.produce(&[request("old", restock_command(&home_sku(0, 0), 1))]);
    commit_group_offset(&cluster, &cluster.topics.name(Topic::Commands), 0, 1);

    let p = cluster.processor("p-0", "store-0");
    cluster.produce(&[request("other", restock_command(&home_sku(1, 0), 1))]);
    wait_until(
        || p.healthz().contains("partition 0: halted: restore"),
        "partition 0 is given up",
        &p,
    );
    let why = p.healthz();
    assert!(
        why.contains("5 restores failed in a row") && why.contains("undecodable store key"),
        "{why}"
    );
    assert!(p.metrics().contains("skuflow_processor_halted{partition=\"0\"} 1"));
    let replies = cluster.wait_replies(1);
    assert!(replies.values().any(|r| r.command_id.as_str() == "other"), "partition 1 goes on");
}

/// A transaction of someone else's left open on the changelog hides the batches committed
/// after it from read_committed readers (the last stable offset stays at its first
/// record). A processor that loads the partition then must not take its own hidden batches
/// for a loss: the check cannot judge, and the state is loaded as it is.
#[test]
fn an_open_transaction_on_the_changelog_is_not_taken_for_a_loss() {
    let cluster = Cluster::start();
    let p = cluster.processor("p-0", "store-0");
    let first: Vec<_> =
        (0..4).map(|i| request(&format!("a-{i}"), restock_command(&home_sku(0, i), 1))).collect();
    cluster.produce(&first);
    cluster.wait_replies(first.len());

    let blocker = open_transaction(&cluster, "someone-else-on-the-changelog", Topic::Changelog);

    // Batches committed behind the open transaction, then a reload of the partition.
    let more: Vec<_> = (0..4)
        .map(|i| request(&format!("b-{i}"), restock_command(&home_sku(0, 10 + i), 1)))
        .collect();
    cluster.produce(&more);
    cluster.wait_replies(first.len() + more.len());
    assert!(p.stop().success());
    let p = cluster.processor("p-0", "store-0");
    let other = vec![request("c-0", restock_command(&home_sku(0, 20), 1))];
    cluster.produce(&other);
    wait_until(
        || p.log_text().contains("open transaction hides the end"),
        "the check says it cannot judge",
        &p,
    );
    let metrics = p.metrics();
    assert!(metrics.contains("skuflow_processor_changelog_losses_total 0"), "{metrics}");

    blocker.abort_transaction(WAIT).unwrap();
    let replies = cluster.wait_replies(first.len() + more.len() + other.len());
    assert!(replies.values().any(|r| r.command_id.as_str() == "c-0"), "the partition goes on");
    assert!(p.stop().success());
}
