//! Reading a whole topic as it stands: every partition from its beginning to its end
//! (read_committed), for auditors, tests and tools. Not for serving traffic.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{self, QuietEof};

/// One record as read, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch (create or append time, as the topic keeps it).
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ReadRecord {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| &v[..])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {0} does not exist")]
    NoTopic(String),
    #[error("{topic}: not read to its end within {waited:?}")]
    Timeout { topic: String, waited: Duration },
}

/// How many partitions `topic` has (an error if it does not exist).
pub fn partition_count<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<i32, ReadError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    metadata
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .filter(|n| *n > 0)
        .ok_or_else(|| ReadError::NoTopic(topic.to_owned()))
}

/// Every committed record of `topic`, partition by partition in offset order.
pub fn read_all(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<ReadRecord>, ReadError> {
    let consumer: BaseConsumer<QuietEof> = client::reader_config(bootstrap, "skuflow-reader")
        .set("enable.partition.eof", "true")
        .create_with_context(QuietEof)?;
    let partitions = partition_count(&consumer, topic, timeout)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let (mut out, mut ends) = (Vec::new(), std::collections::BTreeSet::new());
    while (ends.len() as i32) < partitions {
        if started.elapsed() > timeout {
            return Err(ReadError::Timeout { topic: topic.to_owned(), waited: started.elapsed() });
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ends.insert(p);
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                let timestamp = match m.timestamp() {
                    Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
                    Timestamp::NotAvailable => -1,
                };
                let headers = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(ReadRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp,
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}
