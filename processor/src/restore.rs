//! Rebuilding one partition's store from the compacted changelog topic: read changelog
//! partition p from its beginning to its end (read_committed, so aborted batches never
//! count) and stream the records into the store in log order, in chunks of bounded size
//! (later records win, tombstones delete). The store writes META last, so a restore cut
//! short is simply done again.
//!
//! **Only what came after, when the store can prove where it stands** (opt-in:
//! `ProcessorConfig::restore_from_checkpoint`, off by default; under a broker restart
//! every 12 s on the dev broker, states restored this way went wrong where whole restores
//! did not, RELIABILITY.md). The store notes
//! the changelog offset of the META record its state ends with (its checkpoint, written
//! with every batch and every restore). When the changelog still holds exactly that META
//! at that offset, the state is the changelog up to there (the broker has neither lost
//! nor rewritten it), and the restore reads only the records after it, onto the state it
//! keeps: a partition that moved away and back reads what the other owner wrote, not the
//! partition's whole history. Compaction cannot have taken anything it needs: a record
//! is removed only when a later one with the same key exists, which the restore reads,
//! and a tombstone only `delete.retention.ms` (24 h, set on the topic) after it was
//! cleaned, so a checkpoint older than half the topic's setting (read at start,
//! [`Source::checkpoint_max_age`]) is not used. Otherwise (no checkpoint, a different
//! record at its offset, compacted or deleted away, no record at it within
//! [`FIRST_RECORD_PATIENCE`]: a transaction still open before it) the restore reads the
//! whole partition, as it always could. The store writes a checkpoint only where it can
//! tell that nothing but its own batches lies between two of them (`processor::service`).
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

use broker::client::QuietEof;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use state::store::keys;
use state::store::values::{self, Checkpoint};
use state::store::{Change, Import, Store, StoreError};

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
    /// The changelog offset it read from (after its checkpoint), `None`: the whole
    /// partition.
    pub after: Option<i64>,
}

/// Where a partition's changelog is and how a restore reads it.
#[derive(Debug, Clone)]
pub struct Source {
    pub bootstrap: String,
    /// The changelog topic.
    pub changelog: String,
    /// A restore fails when no record has come for this long before the end.
    pub idle_timeout: Duration,
    /// The oldest checkpoint a restore reads on from: half the changelog's
    /// `delete.retention.ms`, so that no tombstone written after it can have been
    /// compacted away yet. Zero: every restore reads the whole partition.
    pub checkpoint_max_age: Duration,
}

/// How long a restore from a checkpoint waits for the record at it before it reads the
/// whole partition instead (a transaction open before the checkpoint hides it, and
/// read_committed then reports no end either).
pub const FIRST_RECORD_PATIENCE: Duration = Duration::from_secs(3);

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
/// `source` holds. `progress` hears where the restore stands now and then and once at the
/// end; `cancel` stops it (the partition is left without META, to be restored again).
pub fn restore_partition(
    source: &Source,
    partition: i32,
    store: &Store,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Restored, RestoreError> {
    let (bootstrap, topic, idle_timeout) =
        (&source.bootstrap, &source.changelog[..], source.idle_timeout);
    let started = Instant::now();
    let consumer: BaseConsumer<QuietEof> =
        broker::client::reader_config(bootstrap, "skuflow-restore")
            .set("enable.partition.eof", "true")
            // At most this much fetched ahead of the import (librdkafka's default is 64 MiB
            // per consumer; several restores may run at once).
            .set("queued.max.messages.kbytes", "16384")
            .create_with_context(QuietEof)?;
    let (low, high) =
        consumer.fetch_watermarks(topic, partition, idle_timeout.min(WATERMARKS_TIMEOUT))?;
    let max_age = source.checkpoint_max_age;
    let checkpoint = store.checkpoint(partition)?.filter(|c| usable(c, low, high, max_age));
    let mut tpl = TopicPartitionList::new();
    let start = checkpoint.map_or(Offset::Beginning, |c| Offset::Offset(c.offset));
    tpl.add_partition_offset(topic, partition, start)?;
    consumer.assign(&tpl)?;
    // Decided at the first record: on from the checkpoint if it is there unchanged.
    let mut import: Option<Import<'_>> = match checkpoint {
        Some(_) => None,
        None => Some(store.begin_import(partition)?),
    };
    let mut after = None;
    let (mut bytes, mut position) = (0u64, checkpoint.map_or(low, |c| c.offset));
    let (mut last_record, mut last_report) = (Instant::now(), Instant::now());
    let report = |records: u64, bytes: u64, position: i64, done: bool| Progress {
        partition,
        records,
        bytes,
        rate: records as f64 / started.elapsed().as_secs_f64().max(1e-3),
        remaining: if done { 0 } else { (high - position).max(0) as u64 },
        done,
    };
    let records = |import: &Option<Import<'_>>| import.as_ref().map_or(0, Import::records);
    let import = loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(RestoreError::Cancelled { partition });
        }
        match consumer.poll(Duration::from_millis(100)) {
            None if import.is_none() && last_record.elapsed() > FIRST_RECORD_PATIENCE => {
                let why = "no record at the checkpoint yet: a transaction open before it";
                import = Some(read_all_instead(&consumer, topic, partition, store, why)?);
                position = low;
            }
            None => {
                if last_record.elapsed() > idle_timeout {
                    let records = records(&import);
                    return Err(RestoreError::Stalled { partition, idle: idle_timeout, records });
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => match import.take() {
                Some(import) => break import,
                // The end came before the checkpoint's META (a transaction still open
                // before it hides it): nothing proves where the state stands.
                None => {
                    let why = "the end came before the checkpoint";
                    import = Some(read_all_instead(&consumer, topic, partition, store, why)?);
                    position = low;
                }
            },
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
                let (key, value) = (m.key().unwrap_or_default(), m.payload());
                if import.is_some() && m.offset() < position {
                    // The log went back under the restore (a broker that lost its end
                    // and answered "offset out of range", and librdkafka reset to the
                    // earliest offset): rows already imported may come from records that
                    // are gone, so the import starts again from nothing.
                    let why = format!("the changelog went back from {position} to {}", m.offset());
                    import = Some(read_all_instead(&consumer, topic, partition, store, &why)?);
                    after = None;
                    position = low;
                    continue;
                }
                if import.is_none() {
                    // The first record of a restore from the checkpoint: is it its META?
                    match checkpoint.filter(|c| m.offset() == c.offset && is_meta(key, value, c)) {
                        Some(c) => {
                            tracing::info!(
                                partition,
                                offset = c.offset,
                                "the changelog holds the store's checkpoint: reading what follows it"
                            );
                            after = Some(c.offset);
                            import = Some(store.begin_import_after(partition, c)?);
                        }
                        None => {
                            let why = format!(
                                "the checkpoint is not in the changelog: the first record is at offset {}",
                                m.offset()
                            );
                            import =
                                Some(read_all_instead(&consumer, topic, partition, store, &why)?);
                            position = low;
                            continue;
                        }
                    }
                }
                let Some(import) = import.as_mut() else { continue };
                position = m.offset() + 1;
                bytes += (key.len() + value.map_or(0, <[u8]>::len)) as u64;
                let change = Change { key: key.to_vec(), value: value.map(<[u8]>::to_vec) };
                import.push_at(m.offset(), change)?;
                if import.records().is_multiple_of(PROGRESS_EVERY) {
                    last_report = Instant::now();
                    progress(&report(import.records(), bytes, position, false));
                }
            }
        }
        if last_report.elapsed() >= PROGRESS_INTERVAL {
            last_report = Instant::now();
            progress(&report(records(&import), bytes, position, false));
        }
    };
    let records = import.finish()?;
    progress(&report(records, bytes, position, true));
    Ok(Restored { records, bytes, elapsed: started.elapsed(), after })
}

/// Whether `checkpoint` may be read on from: young enough (see the module docs) and
/// still inside the changelog partition's offsets.
fn usable(checkpoint: &Checkpoint, low: i64, high: i64, max_age: Duration) -> bool {
    (low..high).contains(&checkpoint.offset) && checkpoint.age().is_some_and(|age| age < max_age)
}

/// Whether a changelog record is the checkpoint's META, byte for byte.
fn is_meta(key: &[u8], value: Option<&[u8]>, checkpoint: &Checkpoint) -> bool {
    keys::is_meta(key) && value == Some(&values::meta(&checkpoint.meta)[..])
}

/// The checkpoint cannot be read on from, or the log went back under the import (`why`):
/// drop the partition's state and read the changelog partition from its beginning.
fn read_all_instead<'s>(
    consumer: &BaseConsumer<QuietEof>,
    topic: &str,
    partition: i32,
    store: &'s Store,
    why: &str,
) -> Result<Import<'s>, RestoreError> {
    tracing::info!(partition, "reading the whole changelog partition from its beginning: {why}");
    // A seek purges what was fetched before it.
    consumer.seek(topic, partition, Offset::Beginning, WATERMARKS_TIMEOUT)?;
    Ok(store.begin_import(partition)?)
}
