//! Rebuilding one partition's store from the compacted changelog topic: read changelog
//! partition p from its beginning to its end (read_committed, so aborted batches never
//! count) and import the records in log order; later records win, tombstones delete.
//! The store writes META last, so a restore cut short is simply done again.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use state::store::{Change, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(
        "changelog partition {partition} not read to its end within {waited:?} ({records} records so far)"
    )]
    Timeout { partition: i32, waited: Duration, records: u64 },
}

/// What a restore did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub records: u64,
    pub elapsed: Duration,
}

/// How often (in records read) a restore reports progress.
pub const PROGRESS_EVERY: u64 = 10_000;

/// Replace `partition`'s state in `store` with what changelog partition `partition` of
/// `topic` holds. `progress` hears the number of records read so far, every
/// [`PROGRESS_EVERY`] records and once at the end.
pub fn restore_partition(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    store: &Store,
    timeout: Duration,
    progress: &mut dyn FnMut(u64),
) -> Result<Restored, RestoreError> {
    let started = Instant::now();
    let consumer: BaseConsumer = broker::client::consumer_config(bootstrap, "skuflow-restore")
        .set("enable.partition.eof", "true")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut changes = Vec::new();
    loop {
        if started.elapsed() > timeout {
            let records = changes.len() as u64;
            return Err(RestoreError::Timeout { partition, waited: started.elapsed(), records });
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                changes.push(Change {
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().map(<[u8]>::to_vec),
                });
                if (changes.len() as u64).is_multiple_of(PROGRESS_EVERY) {
                    progress(changes.len() as u64);
                }
            }
        }
    }
    progress(changes.len() as u64);
    let records = store.import(partition, changes)?;
    Ok(Restored { records, elapsed: started.elapsed() })
}
