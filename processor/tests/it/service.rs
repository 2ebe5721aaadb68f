//! The processor against the real dev broker: commands in, exactly one reply per command.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use broker::DevBroker;
use broker::admin::ensure_topics;
use processor::{Processor, ProcessorConfig, topic_specs};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use topics::codec::{from_json, to_json};
use topics::*;

const PARTITIONS: i32 = 4;

fn request(sku: &str, id: &str, command: Command) -> (String, Vec<u8>) {
    let r = Request {
        tenant: TenantId::new("acme").unwrap(),
        command_id: CommandId::new(id).unwrap(),
        command,
    };
    (sku.to_owned(), to_json(&Envelope::command(LogCommand::Request(r))).unwrap())
}

/// Every committed payload of `topic`, from the beginning to the end of each partition.
fn read_all(bootstrap: &str, topic: &str) -> Vec<Vec<u8>> {
    broker::read::read_all(bootstrap, topic, Duration::from_secs(60))
        .unwrap()
        .into_iter()
        .map(|r| r.payload.unwrap_or_default())
        .collect()
}

#[test]
fn commands_in_exactly_one_reply_per_command_out() {
    let broker = DevBroker::start().expect("dev broker starts");
    let b = broker.bootstrap();
    let topics = Topics::default();
    ensure_topics(&b, &topic_specs(&topics, PARTITIONS, 1)).unwrap();

    let skus: Vec<String> = (0..8).map(|i| format!("sku-{i}")).collect();
    let mut commands = Vec::new();
    for s in &skus {
        let restock = Command::Restock(Restock {
            sku: Sku::new(s).unwrap(),
            warehouse: WarehouseId::new("w").unwrap(),
            quantity: Quantity::new(10).unwrap(),
        });
        commands.push(request(s, &format!("stock-{s}"), restock));
    }
    for i in 0..120 {
        let s = &skus[i % skus.len()];
        let reserve = Command::Reserve(Reserve {
            sku: Sku::new(s).unwrap(),
            quantity: Quantity::new(1).unwrap(),
            warehouse: None,
            strategy: None,
            allow_partial: false,
            ttl_ms: None,
        });
        commands.push(request(s, &format!("hold-{i}"), reserve));
    }
    // Client retries of ten earlier requests.
    let retries: Vec<_> = commands[8..18].to_vec();
    commands.extend(retries);

    let producer: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(&b).set("enable.idempotence", "true").create().unwrap();
    let commands_topic = topics.name(Topic::Commands);
    for (key, payload) in &commands {
        producer
            .send(BaseRecord::to(&commands_topic).key(key).payload(payload))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let data = tempfile::tempdir().unwrap();
    let shutdown = Arc::new(AtomicBool::new(false));
    let mut config = ProcessorConfig::new(&b, "test-0", data.path());
    // No ticks: the assigned-partitions gauge must not depend on them.
    config.tick_interval = None;
    let stop = shutdown.clone();
    let health = processor::Health::new();
    assert!(health.ready().is_err(), "not ready before it has joined");
    let reported = health.clone();
    let registry = prometheus::Registry::new();
    let metrics = registry.clone();
    let worker = std::thread::spawn(move || {
        Processor::with_health(config, &metrics, reported).unwrap().run(&stop)
    });

    let replies_topic = topics.name(Topic::Replies);
    let started = Instant::now();
    let mut replies = read_all(&b, &replies_topic);
    while replies.len() < commands.len() && started.elapsed() < Duration::from_secs(60) {
        replies = read_all(&b, &replies_topic);
    }
    // Ready once assigned and nothing restores (the watchdog looks once a second).
    while health.ready().is_err() && started.elapsed() < Duration::from_secs(60) {
        std::thread::yield_now();
    }
    assert_eq!(health.ready(), Ok(()), "ready after answering every command");
    let assigned = registry
        .gather()
        .iter()
        .find(|f| f.name() == "skuflow_processor_assigned_partitions")
        .map(|f| f.get_metric()[0].get_gauge().get_value());
    assert_eq!(assigned, Some(f64::from(PARTITIONS)), "the gauge counts the assignment, ticks off");
    shutdown.store(true, Ordering::Relaxed);
    worker.join().unwrap().unwrap();
    let replies = read_all(&b, &replies_topic);

    assert_eq!(replies.len(), commands.len(), "one reply per command record");
    let mut by_id: BTreeMap<String, Vec<Reply>> = BTreeMap::new();
    for bytes in &replies {
        let reply = from_json::<Reply>(Some(bytes)).unwrap().body;
        by_id.entry(reply.command_id.to_string()).or_default().push(reply);
    }
    assert_eq!(by_id.len(), 128, "every command id answered");
    for (id, rs) in &by_id {
        assert!(rs.windows(2).all(|w| w[0] == w[1]), "{id}: retries got another reply");
    }
    let held =
        by_id.values().filter(|rs| matches!(rs[0].outcome, Outcome::Reserved { .. })).count();
    assert_eq!(held, 80, "10 units for each of 8 SKUs, 15 asks each");
}
