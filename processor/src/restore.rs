//! Rebuilding one partition's store from the compacted changelog topic: read changelog
//! partition p from its beginning to its end (read_committed, so aborted batches never
//! count) and stream the records into the store in log order, in chunks of bounded size
//! (later records win, tombstones delete). The store writes META last, so a restore cut
//! short is simply done again.
//!
//! A restore has no wall-clock limit: it runs as long as records keep coming, and fails
//! only when none has come for `idle_timeout` (the broker is away). It reports progress
//! (records, bytes, rate, records left) every [`PROGRESS_EVERY`] records and every
//! [`PROGRESS_INTERVAL`]. The processor runs it on a thread of its own, so the other
//! partitions go on meanwhile (`service.rs`).
//!
//! Memory: one chunk of records (the store's import chunk) plus what librdkafka holds
//! fetched. The dev broker ignores fetch size limits (BROKERS.md), so one catch-up fetch
//! can be large; Kafka keeps it to `fetch.max.bytes`.

use std::sync::atomic::{AtomicBool, Ordering};
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
        "changelog partition {partition}: no record for {idle:?} before its end ({records} records read)"
    )]
    Stalled { partition: i32, idle: Duration, records: u64 },
    #[error("changelog partition {partition}: restore cancelled (partition revoked or stopping)")]
    Cancelled { partition: i32 },
}

/// What a restore did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Where a restore stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub partition: i32,
    pub records: u64,
    pub bytes: u64,
    /// Records per second since the restore started.
    pub rate: f64,
    /// Offsets left to the changelog's end as it was when the restore started (records
    /// of aborted transactions and markers count as offsets too).
    pub remaining: u64,
    pub done: bool,
}

/// How often (in records read) a restore reports progress, at the latest.
pub const PROGRESS_EVERY: u64 = 100_000;
/// The longest a restore waits for the changelog's watermarks before it fails (and is
/// tried again).
const WATERMARKS_TIMEOUT: Duration = Duration::from_secs(10);

/// How often (in time) a restore reports progress, at the latest.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// Replace `partition`'s state in `store` with what changelog partition `partition` of
/// `topic` holds. `progress` hears where the restore stands now and then and once at the
/// end; `cancel` stops it (the partition is left without META, to be restored again).
pub fn restore_partition(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    store: &Store,
    idle_timeout: Duration,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Restored, RestoreError> {
    let started = Instant::now();
    let consumer: BaseConsumer = broker::client::consumer_config(bootstrap, "skuflow-restore")
        .set("enable.partition.eof", "true")
        // At most this much fetched ahead of the import (librdkafka's default is 64 MiB
        // per consumer; several restores may run at once).
        .set("queued.max.messages.kbytes", "16384")
        .create()?;
    let (low, high) =
        consumer.fetch_watermarks(topic, partition, idle_timeout.min(WATERMARKS_TIMEOUT))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut import = store.begin_import(partition)?;
    let (mut bytes, mut position) = (0u64, low);
    let (mut last_record, mut last_report) = (Instant::now(), Instant::now());
    let report = |records: u64, bytes: u64, position: i64, done: bool| Progress {
        partition,
        records,
        bytes,
        rate: records as f64 / started.elapsed().as_secs_f64().max(1e-3),
        remaining: if done { 0 } else { (high - position).max(0) as u64 },
        done,
    };
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(RestoreError::Cancelled { partition });
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if last_record.elapsed() > idle_timeout {
                    let records = import.records();
                    return Err(RestoreError::Stalled { partition, idle: idle_timeout, records });
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            // Consumer errors (a broker away, a transport failure) are reports: librdkafka
            // retries underneath, and `idle_timeout` bounds how long that may take. A fatal
            // one ends the restore.
            Some(Err(e)) => {
                if consumer.client().fatal_error().is_some() {
                    return Err(e.into());
                }
                tracing::debug!(partition, error = %e, "while restoring");
            }
            Some(Ok(m)) => {
                last_record = Instant::now();
                position = m.offset() + 1;
                let (key, value) = (m.key().unwrap_or_default(), m.payload());
                bytes += (key.len() + value.map_or(0, <[u8]>::len)) as u64;
                import.push(Change { key: key.to_vec(), value: value.map(<[u8]>::to_vec) })?;
                if import.records().is_multiple_of(PROGRESS_EVERY) {
                    last_report = Instant::now();
                    progress(&report(import.records(), bytes, position, false));
                }
            }
        }
        if last_report.elapsed() >= PROGRESS_INTERVAL {
            last_report = Instant::now();
            progress(&report(import.records(), bytes, position, false));
        }
    }
    let records = import.finish()?;
    progress(&report(records, bytes, position, true));
    Ok(Restored { records, bytes, elapsed: started.elapsed() })
}
