//! The front that holds empty fetches (`broker::long_poll`), between real librdkafka
//! clients and the real dev broker.

use std::time::{Duration, Instant};

use broker::DevBroker;
use broker::admin::{TopicSpec, ensure_topics};
use broker::client;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

/// Waits for a condition the test observes; panics with `what` after a minute.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(60), "gave up waiting: {what}");
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

#[test]
fn empty_fetches_wait_and_a_committed_record_still_arrives() {
    let broker = DevBroker::start().expect("dev broker starts");
    let b = broker.bootstrap();
    // Two partitions: librdkafka rotates their order from one fetch to the next.
    let spec = TopicSpec { name: "t".into(), partitions: 2, replication: 1, configs: vec![] };
    ensure_topics(&b, &[spec]).unwrap();

    let consumer: BaseConsumer = client::consumer_config(&b, "g").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("t", 0, Offset::Beginning).unwrap();
    tpl.add_partition_offset("t", 1, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let reader = std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                return m.payload().map(<[u8]>::to_vec);
            }
        }
        None
    });
    // Idle, nearly every fetch follows an empty one and waits (a broker that answers at
    // once would see thousands a second); counted, not timed.
    until("forty fetches", || broker.fetch_holds().is_some_and(|s| s.fetches >= 40));
    let idle = broker.fetch_holds().unwrap();
    assert!(idle.held * 10 >= idle.fetches * 9, "an idle consumer's fetches wait: {idle:?}");

    let producer: ThreadedProducer<_> = client::producer_config(&b)
        .set("transactional.id", "writer")
        .set("transaction.timeout.ms", "10000")
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(10)).unwrap();
    producer.begin_transaction().unwrap();
    client::send_waiting(&producer, BaseRecord::to("t").partition(0).key("k").payload("x"))
        .unwrap();
    producer.commit_transaction(Duration::from_secs(10)).unwrap();

    assert_eq!(reader.join().unwrap().as_deref(), Some(&b"x"[..]));
}

#[test]
fn without_the_front_clients_talk_to_the_broker_itself() {
    let broker = DevBroker::start_with(broker::DevBrokerConfig {
        hold_fetches: false,
        ..Default::default()
    })
    .expect("dev broker starts");
    assert_eq!(broker.fetch_holds(), None);
    let spec = TopicSpec { name: "t".into(), partitions: 2, replication: 1, configs: vec![] };
    ensure_topics(&broker.bootstrap(), &[spec]).unwrap();
    assert_eq!(broker::admin::partition_count(&broker.bootstrap(), "t").unwrap(), 2);
}

/// Another process took the port picked for the broker behind the front (here a second
/// dev broker told to use the first one's): the broker moves to another port, and the
/// front does not relay to the process that holds the old one, which shows once it is
/// gone.
#[test]
fn a_private_port_taken_by_another_broker_is_replaced() {
    let first = DevBroker::start().expect("dev broker starts");
    let second = DevBroker::start_with(broker::DevBrokerConfig {
        broker_port: Some(first.broker_port()),
        hold_fetches: true,
        ..Default::default()
    })
    .expect("the second broker starts on another port");
    assert_ne!(second.broker_port(), first.broker_port());
    let spec =
        TopicSpec { name: "only-second".into(), partitions: 3, replication: 1, configs: vec![] };
    ensure_topics(&second.bootstrap(), &[spec]).unwrap();
    drop(first);
    assert_eq!(broker::admin::partition_count(&second.bootstrap(), "only-second").unwrap(), 3);
}
