//! Publishing a batch's outputs with its consumed offsets, and what to do when that fails.
//!
//! Exactly-once (the default): one Kafka transaction holds every output record and the
//! consumed offsets (`send_offsets_to_transaction`). At-least-once (for comparison and
//! for brokers without transactions): produce, wait for every delivery, then commit the
//! offsets; a crash in between re-produces records with the same ids, which readers drop.
//!
//! A failed transaction is classified the way librdkafka's transactional API asks:
//! - **fenced**: another producer with our transactional id exists, so this process is a
//!   zombie of its own instance; it must stop, not fight back by re-initialising.
//! - **abortable**: abort, and the same producer goes on.
//! - anything else (a fatal error, or a retriable one such as a timed-out commit, whose
//!   outcome is unknown): never retry it blindly; a new producer with the same
//!   transactional id fences the old one and completes (aborts) whatever it left open.
//!
//! In every case the caller rewinds to the store's applied offset (the committed one) and
//! reloads the partitions.
//!
//! **One transactional id per producer, never reused after an abort.** Each producer this
//! processor creates gets a fresh transactional id, `<group>-<instance>-<incarnation>-<n>`
//! ([`crate::identity`]). The previous producers of the same instance are fenced (and
//! whatever transaction they left open aborted) before the new one works: the ids are
//! found in the data directory and in the metadata of the group's committed offsets,
//! which every transaction writes. A fresh id means a fresh producer id, so no committed
//! record is ever written by a producer id after one of its transactions was aborted;
//! the dev broker needs that (BROKERS.md: it lists an aborted transaction to fetches that
//! start after its abort marker, and librdkafka then drops every later batch of that
//! producer id as aborted). On Kafka it is what KIP-447 made the normal way: fencing by the
//! group's generation, transactional ids per process.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use state::store::keys;
use topics::Topic;

use crate::batch::Applied;
use crate::config::{Delivery, ProcessorConfig};
use crate::identity::{Identity, OutputError};
use crate::produce;

/// The codes that mean another producer with our transactional id took over.
fn is_fenced(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// Counts failed deliveries, which at-least-once mode must notice before committing, and
/// notes the changelog offsets of the META records it was asked about (by a tag other
/// than 0), for the store's checkpoints.
#[derive(Debug, Default, Clone)]
pub struct DeliveryContext {
    failed: Arc<AtomicU64>,
    metas: Arc<Mutex<HashMap<usize, i64>>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        match result {
            // Counted, not logged one by one: a failed batch purges thousands of records,
            // and the batch's failure is logged once by the processor.
            Err((e, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::debug!(error = %e, "output record not delivered");
                }
            }
            Ok(m) if tag != 0 => {
                self.metas.lock().unwrap_or_else(|p| p.into_inner()).insert(tag, m.offset());
            }
            Ok(_) => {}
        }
    }
}

/// Where a published batch's changelog records landed: the offsets of its first record
/// and of its META (the last), from their delivery reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangelogSpan {
    pub first: i64,
    pub meta: i64,
}

impl ChangelogSpan {
    /// Whether this span of `records` records lies right after the META at `previous`,
    /// with nothing of anyone else before or inside it: its records are consecutive, and
    /// only the previous transaction's commit marker (exactly-once) or nothing
    /// (at-least-once) separates it from `previous`. Then the changelog up to this META
    /// is the changelog up to `previous` and this batch: the store's state, if the store
    /// was that at `previous`.
    pub fn follows(&self, previous: i64, records: usize, delivery: Delivery) -> bool {
        let gap = Self::gap(delivery);
        let consecutive = i64::try_from(records).is_ok_and(|n| self.meta - self.first == n - 1);
        consecutive && previous.checked_add(gap) == Some(self.first)
    }

    /// Offsets from one batch's META to the next batch's first changelog record.
    pub fn gap(delivery: Delivery) -> i64 {
        match delivery {
            Delivery::ExactlyOnce => 2,
            Delivery::AtLeastOnce => 1,
        }
    }
}

/// The span of each partition's batch whose two delivery reports both came.
pub type Spans = BTreeMap<i32, ChangelogSpan>;

/// The delivery tags of one batch's first changelog record and META (equal when the
/// META is its only record).
#[derive(Debug, Clone, Copy)]
struct Tags {
    first: usize,
    meta: usize,
    partition: i32,
}

pub type OutputProducer = ThreadedProducer<DeliveryContext>;

/// Why publishing a batch failed, and so what recovers from it.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("fenced by a newer producer with the same transactional id: {0}")]
    Fenced(KafkaError),
    #[error("abortable: {0}")]
    Abortable(KafkaError),
    /// The batch could not be completed for a reason of its own (a record's delivery
    /// failed, the consumer is not in the group): recovered like an abortable error.
    #[error("batch not completed: {0}")]
    Incomplete(&'static str),
    #[error("producer must be recreated: {0}")]
    Recreate(KafkaError),
    /// A new producer could not be set up for a reason outside Kafka (its id not
    /// recorded on disk): the processor cannot go on.
    #[error("{0}")]
    Local(String),
}

impl Failure {
    /// Fenced only when librdkafka says so with a fatal error: a transaction the
    /// coordinator aborted because it ran past `transaction.timeout.ms` also reports an
    /// epoch error, but as an abortable one, and must not end the process as a zombie.
    /// (`Outputs::recover` also checks the producer's own fatal error, whatever call
    /// reported the failure.)
    pub fn classify(e: KafkaError) -> Self {
        match &e {
            KafkaError::Transaction(t) if t.is_fatal() && is_fenced(t.code()) => Failure::Fenced(e),
            KafkaError::Transaction(t) if t.txn_requires_abort() => Failure::Abortable(e),
            KafkaError::Transaction(_) => Failure::Recreate(e),
            _ => Failure::Abortable(e),
        }
    }

    /// Metric label of the recovery this failure gets.
    pub fn recovery(&self) -> &'static str {
        match self {
            Failure::Fenced(_) => "fenced",
            Failure::Abortable(_) | Failure::Incomplete(_) => "abort",
            Failure::Recreate(_) => "recreate",
            Failure::Local(_) => "stop",
        }
    }
}

impl From<KafkaError> for Failure {
    fn from(e: KafkaError) -> Self {
        Failure::classify(e)
    }
}

/// The producer side of the processor.
pub struct Outputs {
    config: ProcessorConfig,
    producer: OutputProducer,
    commands_topic: String,
    ids: Identity,
    /// The delivery tag of the next META record (never 0, which means "not asked").
    next_tag: usize,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs").field("delivery", &self.config.delivery).finish_non_exhaustive()
    }
}

impl Outputs {
    /// Fence every earlier producer of this instance that the data directory remembers,
    /// then start a producer under a fresh transactional id.
    pub fn new(config: &ProcessorConfig) -> Result<Self, OutputError> {
        let mut ids = Identity::open(config)?;
        let producer = ids.fresh_producer(config)?;
        let commands_topic = config.topics.name(Topic::Commands);
        Ok(Self { config: config.clone(), producer, commands_topic, ids, next_tag: 1 })
    }

    /// The transactional id of the current producer.
    pub fn transactional_id(&self) -> &str {
        self.ids.current()
    }

    /// Fence the earlier producers of this instance named in `committed` (the group's
    /// committed offsets with their metadata). Returns how many were fenced now.
    pub fn fence_predecessors(
        &mut self,
        committed: &TopicPartitionList,
    ) -> Result<usize, OutputError> {
        let found: Vec<String> =
            committed.elements().iter().map(|e| e.metadata().to_owned()).collect();
        self.ids.fence_all(&self.config, found.iter().map(String::as_str))
    }

    /// Produce every output of `applied` and commit the consumed offsets with them.
    /// Returns where each partition's changelog records landed.
    pub fn publish<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        applied: &[Applied],
    ) -> Result<Spans, Failure> {
        let mut offsets = TopicPartitionList::new();
        for a in applied {
            // The metadata names the producer that committed: a successor fences it.
            let mut e = offsets.add_partition(&self.commands_topic, a.store.partition);
            e.set_offset(rdkafka::Offset::Offset(a.next_offset)).map_err(Failure::Abortable)?;
            e.set_metadata(self.ids.current());
        }
        // Tags of this batch's records; reports of earlier batches are dropped.
        let tags: Vec<Tags> = applied
            .iter()
            .map(|a| Tags { first: self.tag(), meta: self.tag(), partition: a.store.partition })
            .collect();
        let metas = Arc::clone(&self.producer.context().metas);
        metas.lock().unwrap_or_else(|p| p.into_inner()).clear();
        match self.config.delivery {
            Delivery::ExactlyOnce => self.transactional(consumer, applied, &tags, &offsets)?,
            Delivery::AtLeastOnce => self.at_least_once(consumer, applied, &tags, &offsets)?,
        }
        let mut metas = metas.lock().unwrap_or_else(|p| p.into_inner());
        let mut spans = Spans::new();
        for t in &tags {
            let meta = metas.remove(&t.meta);
            // A batch whose only changelog record is its META sent no first tag.
            let first = metas.remove(&t.first).or(meta);
            if let (Some(first), Some(meta)) = (first, meta) {
                spans.insert(t.partition, ChangelogSpan { first, meta });
            }
        }
        Ok(spans)
    }

    fn tag(&mut self) -> usize {
        self.next_tag = self.next_tag.checked_add(1).unwrap_or(1);
        self.next_tag
    }

    fn transactional<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        applied: &[Applied],
        tags: &[Tags],
        offsets: &TopicPartitionList,
    ) -> Result<(), Failure> {
        // One deadline for the whole transaction, so that it never stays open longer than
        // `timeout`; `transaction.timeout.ms` is at least twice that (checked at start), so
        // the coordinator never aborts a transaction this processor is still working on,
        // and an epoch error can only mean a newer producer.
        let deadline = Instant::now() + self.config.timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        self.producer.begin_transaction()?;
        self.send(applied, tags, |_| true, deadline)?;
        let group = consumer
            .group_metadata()
            .ok_or(Failure::Incomplete("the consumer has no group metadata (not in the group)"))?;
        self.producer.send_offsets_to_transaction(offsets, &group, left())?;
        // commit_transaction flushes first, through rdkafka's flush, which polls in
        // 100 ms slices; flushing here first leaves it nothing to wait for.
        broker::client::flush_quickly(&self.producer, left())?;
        Ok(self.producer.commit_transaction(left())?)
    }

    fn at_least_once<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        applied: &[Applied],
        tags: &[Tags],
        offsets: &TopicPartitionList,
    ) -> Result<(), Failure> {
        // The changelog only after every other output is delivered: a restore that finds
        // a batch in the changelog may then skip it without losing its replies.
        let failed = &self.producer.context().failed;
        for changelog in [false, true] {
            let failed_before = failed.load(Ordering::Relaxed);
            let deadline = Instant::now() + self.config.timeout;
            self.send(applied, tags, |t| (t == Topic::Changelog) == changelog, deadline)
                .map_err(Failure::Abortable)?;
            broker::client::flush_quickly(&self.producer, self.config.timeout)
                .map_err(Failure::Abortable)?;
            if failed.load(Ordering::Relaxed) != failed_before {
                return Err(Failure::Incomplete("a record of the batch was not delivered"));
            }
        }
        consumer.commit(offsets, CommitMode::Sync).map_err(Failure::Abortable)
    }

    /// Send the records of `applied` whose topic is `which`; the first changelog record
    /// of each batch and its META (the last) carry the batch's tags.
    fn send(
        &self,
        applied: &[Applied],
        tags: &[Tags],
        which: impl Fn(Topic) -> bool,
        deadline: Instant,
    ) -> Result<(), KafkaError> {
        for (a, tags) in applied.iter().zip(tags) {
            let first = a.records.iter().position(|o| o.topic == Topic::Changelog);
            let meta = a
                .records
                .iter()
                .rposition(|o| o.topic == Topic::Changelog && keys::is_meta(&o.key));
            for (i, out) in a.records.iter().enumerate().filter(|(_, o)| which(o.topic)) {
                let name = self.config.topics.name(out.topic);
                let tag = match Some(i) {
                    i if i == meta => tags.meta,
                    i if i == first => tags.first,
                    _ => 0,
                };
                let record = produce::record_tagged(out, &name, tag);
                broker::client::send_waiting_until(&self.producer, record, deadline)?;
            }
        }
        Ok(())
    }

    /// Leave the producer ready for the next batch after `failure`. A fenced producer is
    /// not recoverable: the error goes back to the caller.
    pub fn recover(&mut self, failure: Failure) -> Result<(), Failure> {
        // Whatever the call that failed said, a producer fenced underneath (its fatal
        // error) must never be replaced: a new one would fence the newer incarnation.
        if let Some((code, _)) = self.producer.client().fatal_error()
            && is_fenced(code)
        {
            return Err(Failure::Fenced(KafkaError::Global(code)));
        }
        match failure {
            Failure::Fenced(_) => Err(failure),
            Failure::Abortable(_) | Failure::Incomplete(_)
                if self.config.delivery == Delivery::ExactlyOnce =>
            {
                let e = failure.to_string();
                match self.producer.abort_transaction(self.config.timeout) {
                    // Aborted: this transactional id is retired (see the module docs).
                    Ok(()) => self.recreate(),
                    Err(abort) => {
                        let abort = Failure::classify(abort);
                        if let Failure::Fenced(_) = abort {
                            // Fenced while aborting: a newer incarnation exists; stop.
                            return Err(abort);
                        }
                        tracing::warn!(error = %e, %abort, "abort failed; recreating the producer");
                        self.recreate()
                    }
                }
            }
            Failure::Abortable(_) | Failure::Incomplete(_) => Ok(()),
            Failure::Recreate(_) => self.recreate(),
            Failure::Local(_) => Err(failure),
        }
    }

    /// Fence the current producer (which aborts whatever it left open) and continue under
    /// a fresh transactional id.
    fn recreate(&mut self) -> Result<(), Failure> {
        self.producer = self.ids.fresh_producer(&self.config).map_err(|e| match e {
            OutputError::Kafka(k) => Failure::classify(k),
            other => Failure::Local(other.to_string()),
        })?;
        Ok(())
    }
}

pub(crate) fn create_producer(
    config: &ProcessorConfig,
    transactional_id: &str,
) -> Result<OutputProducer, KafkaError> {
    let mut client = broker::client::producer_config(&config.bootstrap);
    client
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", millis(config.transaction_timeout));
    if config.delivery == Delivery::ExactlyOnce {
        client
            .set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", millis(config.transaction_timeout))
            // On Kafka a transaction begun right after a commit can meet
            // CONCURRENT_TRANSACTIONS until the markers are written; librdkafka retries after
            // `retry.backoff.ms` (default 100 ms), the Java client after 20 ms (KAFKA-5477).
            // Not measured to matter on the dev broker: its 100 ms floor was rdkafka's
            // flush (see `broker::client::flush_quickly`).
            .set("retry.backoff.ms", "10");
    }
    let producer: OutputProducer = client.create_with_context(DeliveryContext::default())?;
    if config.delivery == Delivery::ExactlyOnce {
        producer.init_transactions(config.timeout)?;
    }
    Ok(producer)
}

pub(crate) fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_follows_only_right_after_the_previous_meta_and_whole() {
        let span = ChangelogSpan { first: 12, meta: 14 };
        assert!(span.follows(10, 3, Delivery::ExactlyOnce), "a commit marker at 11");
        assert!(span.follows(11, 3, Delivery::AtLeastOnce), "no marker");
        assert!(
            !span.follows(11, 3, Delivery::ExactlyOnce),
            "one offset is not a marker and a batch"
        );
        assert!(!span.follows(9, 3, Delivery::ExactlyOnce), "a record of someone else at 11");
        assert!(!span.follows(10, 2, Delivery::ExactlyOnce), "a record of someone else inside");
        assert!(!span.follows(i64::MAX, 3, Delivery::ExactlyOnce));
        let alone = ChangelogSpan { first: 12, meta: 12 };
        assert!(alone.follows(10, 1, Delivery::ExactlyOnce), "a META alone");
    }
}
