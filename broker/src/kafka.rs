//! Small blocking rdkafka helpers shared by the dev-broker readiness probe and the
//! conformance checks. Blocking on purpose: the checks are sequential scripts, and the
//! admin futures are driven by rdkafka's own background thread.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::client;

/// True when the broker at `bootstrap` answers a metadata request within `timeout`.
pub(crate) fn metadata_answers(bootstrap: &str, timeout: Duration) -> bool {
    let consumer: Result<BaseConsumer, _> = client::base_config(bootstrap)
        .set_log_level(RDKafkaLogLevel::Emerg)
        .set("log.connection.close", "false")
        .create();
    match consumer {
        Ok(c) => c.fetch_metadata(None, timeout).is_ok_and(|m| !m.brokers().is_empty()),
        Err(_) => false,
    }
}

pub(crate) fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    client::base_config(bootstrap).create()
}

/// Create `name` with `partitions` partitions and topic-level `configs`; an existing
/// topic is an error (checks use fresh names).
pub(crate) fn create_topic(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<(), KafkaError> {
    let admin = admin(bootstrap)?;
    // The broker's default replication (-1, Kafka >= 2.4): a cluster that requires
    // min.insync.replicas 2 refuses writes to a topic with one replica.
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures::executor::block_on(admin.create_topics([&topic], &opts))?;
    for r in results {
        r.map_err(|(_, code)| KafkaError::AdminOp(code))?;
    }
    Ok(())
}

pub(crate) fn partition_count(bootstrap: &str, topic: &str) -> Result<usize, KafkaError> {
    let consumer: BaseConsumer = client::base_config(bootstrap).create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(md.topics().first().map_or(0, |t| t.partitions().len()))
}

pub(crate) fn high_watermarks(bootstrap: &str, topic: &str) -> Result<Vec<i64>, KafkaError> {
    let consumer: BaseConsumer = client::base_config(bootstrap).create()?;
    let n = partition_count(bootstrap, topic)?;
    (0..n as i32)
        .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).map(|(_, hi)| hi))
        .collect()
}

pub(crate) fn idempotent_producer(
    bootstrap: &str,
) -> Result<ThreadedProducer<DefaultProducerContext>, KafkaError> {
    client::producer_config(bootstrap).set("enable.idempotence", "true").create()
}

pub(crate) fn transactional_producer(
    bootstrap: &str,
    transactional_id: &str,
) -> Result<ThreadedProducer<DefaultProducerContext>, KafkaError> {
    transactional_config(bootstrap, transactional_id).create()
}

fn transactional_config(bootstrap: &str, transactional_id: &str) -> rdkafka::config::ClientConfig {
    let mut cfg = client::producer_config(bootstrap);
    cfg.set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "10000")
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        .set("message.timeout.ms", "10000");
    cfg
}

/// Produce `records` (partition, key, value) and wait until all are acknowledged.
pub(crate) fn produce_all(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    records: impl IntoIterator<Item = (i32, String, Vec<u8>)>,
) -> Result<(), KafkaError> {
    for (partition, key, value) in records {
        let record = BaseRecord::to(topic).partition(partition).key(&key).payload(&value);
        client::send_waiting(producer, record)?;
    }
    producer.flush(Duration::from_secs(30))
}

/// A record as read back by a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub value: Vec<u8>,
}

impl Read {
    pub(crate) fn from_message(msg: &rdkafka::message::BorrowedMessage<'_>) -> Self {
        Self {
            partition: msg.partition(),
            offset: msg.offset(),
            key: String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
            value: msg.payload().unwrap_or_default().to_vec(),
        }
    }
}

/// Isolation level of a reading consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isolation {
    Committed,
    Uncommitted,
}

/// Read `topic` from the beginning of every partition until `done` says the records
/// collected so far are enough, or `deadline` passes (then the records read so far are
/// returned and the caller's assertion reports what is missing).
pub(crate) fn read_from_start(
    bootstrap: &str,
    topic: &str,
    isolation: Isolation,
    deadline: Duration,
    done: impl FnMut(&[Read]) -> bool,
) -> Result<Vec<Read>, KafkaError> {
    read_from(bootstrap, topic, isolation, Offset::Beginning, deadline, done)
}

/// [`read_from_start`] from `start` in every partition.
pub(crate) fn read_from(
    bootstrap: &str,
    topic: &str,
    isolation: Isolation,
    start: Offset,
    deadline: Duration,
    mut done: impl FnMut(&[Read]) -> bool,
) -> Result<Vec<Read>, KafkaError> {
    let level = match isolation {
        Isolation::Committed => "read_committed",
        Isolation::Uncommitted => "read_uncommitted",
    };
    let consumer: BaseConsumer = client::reader_config(bootstrap, "skuflow-reader")
        .set("isolation.level", level)
        .create()?;
    let n = partition_count(bootstrap, topic)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..n as i32 {
        tpl.add_partition_offset(topic, p, start)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut out = Vec::new();
    while !done(&out) && started.elapsed() < deadline {
        if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
            out.push(Read::from_message(&msg?));
        }
    }
    Ok(out)
}

/// Count how often each key occurs.
pub(crate) fn key_counts(reads: &[Read]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for r in reads {
        *counts.entry(r.key.as_str()).or_insert(0) += 1;
    }
    counts
}

/// The value of one topic-level config as the broker describes it.
pub(crate) fn topic_config(
    bootstrap: &str,
    topic: &str,
    key: &str,
) -> Result<Option<String>, KafkaError> {
    let admin = admin(bootstrap)?;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = futures::executor::block_on(
        admin.describe_configs([&rdkafka::admin::ResourceSpecifier::Topic(topic)], &opts),
    )?;
    for r in results {
        let resource = r.map_err(KafkaError::AdminOp)?;
        if let Some(entry) = resource.get(key) {
            return Ok(entry.value.clone());
        }
    }
    Ok(None)
}

/// Produce one record with an explicit CreateTime.
pub(crate) fn produce_at(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    timestamp_ms: i64,
) -> Result<(), KafkaError> {
    let record = BaseRecord::to(topic).partition(0).key("k").payload("v").timestamp(timestamp_ms);
    producer.send(record).map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(30))
}

/// The timestamps of partition 0 of `topic`, read from the beginning until at least one
/// record arrives or `deadline` passes.
pub(crate) fn read_timestamps(
    bootstrap: &str,
    topic: &str,
    deadline: Duration,
) -> Result<Vec<rdkafka::message::Timestamp>, KafkaError> {
    let consumer: BaseConsumer = client::reader_config(bootstrap, "skuflow-reader").create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let started = Instant::now();
    while started.elapsed() < deadline {
        if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
            return Ok(vec![msg?.timestamp()]);
        }
    }
    Ok(Vec::new())
}
