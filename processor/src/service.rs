//! The processor service: one consumer-group member, one writer per assigned partition.
//!
//! Per loop: poll a batch (up to `batch_max` records or `batch_wait`), drop records of
//! partitions revoked meanwhile, make sure each partition's state matches the committed
//! offset (else restore it from the changelog), apply with [`apply_batch`], then in one
//! Kafka transaction produce every output and the consumed offsets, commit, and only
//! then write each partition's RocksDB batch.
//!
//! Why commit before the store write: an aborted or failed transaction then needs no
//! repair beyond reloading the partitions from the store; a crash between commit and
//! store write leaves the store *behind* the committed offset, which the next assignment
//! detects (applied + 1 != committed) and repairs from the changelog, which the committed
//! transaction contains.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use state::store::Store;
use state::{Machine, PartitionState};
use topics::{LogTime, Topic};

use crate::batch::{Applied, BatchError, InRecord, apply_batch};
use crate::config::ProcessorConfig;
use crate::produce;
use crate::restore::{RestoreError, restore_partition};

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("store: {0}")]
    Store(#[from] state::store::StoreError),
    #[error("restore: {0}")]
    Restore(#[from] RestoreError),
    #[error("batch: {0}")]
    Batch(#[from] BatchError),
}

/// Records which partitions were revoked since the last look.
#[derive(Default)]
struct Revocations(Mutex<BTreeSet<i32>>);

struct GroupContext {
    revoked: Arc<Revocations>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.revoked.0.lock().unwrap_or_else(|e| e.into_inner());
            revoked.extend(tpl.elements().iter().map(|e| e.partition()));
        }
    }
}

/// An owned copy of a consumed record.
struct Owned {
    offset: i64,
    timestamp: LogTime,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

pub struct Processor {
    config: ProcessorConfig,
    machine: Machine,
    store: Store,
    consumer: BaseConsumer<GroupContext>,
    producer: ThreadedProducer<DefaultProducerContext>,
    revoked: Arc<Revocations>,
    states: BTreeMap<i32, PartitionState>,
    commands_topic: String,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor").field("instance", &self.config.instance).finish_non_exhaustive()
    }
}

impl Processor {
    pub fn new(config: ProcessorConfig) -> Result<Self, ProcessorError> {
        let store = Store::open(&config.data_dir, config.sync_store)?;
        let revoked = Arc::new(Revocations::default());
        let consumer: BaseConsumer<GroupContext> =
            broker::client::consumer_config(&config.bootstrap, &config.group_id)
                .set("partition.assignment.strategy", "cooperative-sticky")
                .create_with_context(GroupContext { revoked: revoked.clone() })?;
        let commands_topic = config.topics.name(Topic::Commands);
        consumer.subscribe(&[&commands_topic])?;
        let producer = transactional_producer(&config)?;
        Ok(Self {
            machine: Machine::new(config.machine),
            store,
            consumer,
            producer,
            revoked,
            states: BTreeMap::new(),
            commands_topic,
            config,
        })
    }

    /// Process until `shutdown` is set.
    pub fn run(&mut self, shutdown: &AtomicBool) -> Result<(), ProcessorError> {
        while !shutdown.load(Ordering::Relaxed) {
            let batch = self.poll_batch()?;
            if batch.is_empty() {
                continue;
            }
            self.process(batch)?;
        }
        Ok(())
    }

    fn poll_batch(&mut self) -> Result<BTreeMap<i32, Vec<Owned>>, ProcessorError> {
        let mut by_partition: BTreeMap<i32, Vec<Owned>> = BTreeMap::new();
        let started = Instant::now();
        let mut n = 0;
        while n < self.config.batch_max {
            let wait = self.config.batch_wait.saturating_sub(started.elapsed());
            if n > 0 && wait.is_zero() {
                break;
            }
            let Some(msg) = self.consumer.poll(wait.max(Duration::from_millis(1))) else {
                if n > 0 || started.elapsed() > Duration::from_millis(100) {
                    break;
                }
                continue;
            };
            let msg = msg?;
            let timestamp = match msg.timestamp() {
                Timestamp::LogAppendTime(t) | Timestamp::CreateTime(t) => LogTime(t.max(0) as u64),
                Timestamp::NotAvailable => LogTime(0),
            };
            by_partition.entry(msg.partition()).or_default().push(Owned {
                offset: msg.offset(),
                timestamp,
                key: msg.key().map(<[u8]>::to_vec),
                payload: msg.payload().map(<[u8]>::to_vec),
            });
            n += 1;
        }
        // Records of partitions revoked while we were polling belong to their new owner.
        let revoked =
            std::mem::take(&mut *self.revoked.0.lock().unwrap_or_else(|e| e.into_inner()));
        for p in revoked {
            by_partition.remove(&p);
            self.states.remove(&p);
        }
        Ok(by_partition)
    }

    fn process(&mut self, batch: BTreeMap<i32, Vec<Owned>>) -> Result<(), ProcessorError> {
        let mut applied: Vec<Applied> = Vec::new();
        for (partition, records) in &batch {
            self.ensure_state(*partition)?;
            let state =
                self.states.get_mut(partition).unwrap_or_else(|| unreachable!("loaded above"));
            let ins: Vec<InRecord<'_>> = records
                .iter()
                .map(|r| InRecord {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.as_deref(),
                    payload: r.payload.as_deref(),
                })
                .collect();
            applied.push(apply_batch(&self.machine, state, *partition, &ins)?);
        }
        match self.commit(&applied) {
            Ok(()) => {
                for a in &applied {
                    self.store.write(&a.store)?;
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "transaction failed; rewinding to the committed offsets");
                self.recover(batch.keys().copied().collect())
            }
        }
    }

    fn commit(&mut self, applied: &[Applied]) -> Result<(), KafkaError> {
        let timeout = self.config.timeout;
        self.producer.begin_transaction()?;
        let mut offsets = TopicPartitionList::new();
        for a in applied {
            for out in &a.records {
                let name = self.config.topics.name(out.topic);
                broker::client::send_waiting(&self.producer, produce::record(out, &name))?;
            }
            offsets.add_partition_offset(
                &self.commands_topic,
                a.store.partition,
                Offset::Offset(a.next_offset),
            )?;
        }
        let group = self.consumer.group_metadata().ok_or(KafkaError::Canceled)?;
        self.producer.send_offsets_to_transaction(&offsets, &group, timeout)?;
        self.producer.commit_transaction(timeout)
    }

    /// After a failed transaction: abort it if possible, otherwise start a new producer
    /// (never retry a commit blindly); forget the in-memory state of the batch's
    /// partitions and rewind the consumer to the committed offsets.
    fn recover(&mut self, partitions: Vec<i32>) -> Result<(), ProcessorError> {
        if self.producer.abort_transaction(self.config.timeout).is_err() {
            self.producer = transactional_producer(&self.config)?;
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            self.states.remove(p);
            tpl.add_partition(&self.commands_topic, *p);
        }
        let committed = self.consumer.committed_offsets(tpl, self.config.timeout)?;
        for e in committed.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            self.consumer.seek(&self.commands_topic, e.partition(), offset, self.config.timeout)?;
        }
        Ok(())
    }

    /// Load `partition`'s state, restoring it from the changelog first if the store does
    /// not reflect exactly the committed offset.
    fn ensure_state(&mut self, partition: i32) -> Result<(), ProcessorError> {
        if self.states.contains_key(&partition) {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.commands_topic, partition);
        let committed = self.consumer.committed_offsets(tpl, self.config.timeout)?;
        let next = committed.find_partition(&self.commands_topic, partition).and_then(|e| match e
            .offset()
        {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
        let applied = self.store.applied_offset(partition)?;
        if applied.map(|a| a + 1) != next {
            let changelog = self.config.topics.name(Topic::Changelog);
            tracing::info!(
                partition,
                ?applied,
                ?next,
                "store does not match the committed offset; restoring"
            );
            let restored = restore_partition(
                &self.config.bootstrap,
                &changelog,
                partition,
                &self.store,
                self.config.timeout,
            )?;
            tracing::info!(partition, records = restored.records, elapsed = ?restored.elapsed, "restored");
        }
        self.states.insert(partition, self.store.load(partition)?);
        Ok(())
    }
}

fn transactional_producer(
    config: &ProcessorConfig,
) -> Result<ThreadedProducer<DefaultProducerContext>, KafkaError> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(&config.bootstrap)
            .set("transactional.id", config.transactional_id())
            .set("transaction.timeout.ms", "30000")
            .set("message.timeout.ms", "30000")
            .create()?;
    producer.init_transactions(config.timeout)?;
    Ok(producer)
}
