//! Ticks: the owner of a partition appends a tick command to it at a fixed interval, so
//! log time moves (and holds expire) on a quiet partition too. Best effort: a tick that
//! cannot be queued is skipped, the next one comes an interval later.
//!
//! Each delivered tick also tells the watchdog where the partition's log ended at that
//! moment, independently of the consumer: a tick appended but never consumed is work the
//! processor should have done.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use topics::{Envelope, LogCommand};

/// Records the offset of the last delivered tick of each partition.
#[derive(Debug, Clone, Default)]
pub struct TickContext {
    delivered: Arc<Mutex<BTreeMap<i32, i64>>>,
}

impl ClientContext for TickContext {}

impl ProducerContext for TickContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            let mut delivered = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
            let last = delivered.entry(m.partition()).or_insert(m.offset());
            *last = (*last).max(m.offset());
        }
    }
}

pub struct Ticker {
    producer: ThreadedProducer<TickContext>,
    bootstrap: String,
    topic: String,
    payload: Vec<u8>,
    every: Duration,
    last: Instant,
}

impl std::fmt::Debug for Ticker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticker").field("topic", &self.topic).field("every", &self.every).finish()
    }
}

impl Ticker {
    pub fn new(
        bootstrap: &str,
        topic: String,
        every: Duration,
        format: &topics::codec::Format,
    ) -> Result<Self, KafkaError> {
        let producer = Self::producer(bootstrap, TickContext::default())?;
        let payload = format
            .encode(topics::Topic::Commands, &Envelope::command(LogCommand::Tick))
            .unwrap_or_else(|e| unreachable!("a tick always encodes: {e}"));
        let bootstrap = bootstrap.to_owned();
        Ok(Self { producer, bootstrap, topic, payload, every, last: Instant::now() })
    }

    fn producer(
        bootstrap: &str,
        context: TickContext,
    ) -> Result<ThreadedProducer<TickContext>, KafkaError> {
        broker::client::producer_config(bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .create_with_context(context)
    }

    /// An idempotent producer that hit a fatal error (a broker that lost its producer
    /// state on a restart answers out-of-order sequence numbers) never sends again: it
    /// is replaced by a fresh one (a new producer id), keeping what was delivered.
    fn replace_if_fatal(&mut self) {
        let Some((code, reason)) = self.producer.client().fatal_error() else { return };
        tracing::warn!(?code, %reason, "tick producer failed fatally; replacing it");
        let context = TickContext::clone(self.producer.context());
        match Self::producer(&self.bootstrap, context) {
            Ok(producer) => self.producer = producer,
            Err(e) => {
                tracing::warn!(error = %e, "tick producer not replaced; next tick tries again")
            }
        }
    }

    pub fn due(&self) -> bool {
        self.last.elapsed() >= self.every
    }

    /// One past the offset of the last tick delivered to each partition: the log reached
    /// at least that far.
    pub fn log_ends(&self) -> BTreeMap<i32, i64> {
        let delivered = self.producer.context().delivered.lock().unwrap_or_else(|e| e.into_inner());
        delivered.iter().map(|(p, o)| (*p, o + 1)).collect()
    }

    /// Queue one tick for each of `partitions`; returns how many were queued.
    pub fn tick(&mut self, partitions: &[i32]) -> usize {
        self.last = Instant::now();
        self.replace_if_fatal();
        let mut sent = 0;
        for &p in partitions {
            let record =
                BaseRecord::<[u8], [u8]>::to(&self.topic).partition(p).payload(&self.payload);
            match self.producer.send(record) {
                Ok(()) => sent += 1,
                Err((e, _)) => tracing::warn!(partition = p, error = %e, "tick not queued"),
            }
        }
        sent
    }
}
