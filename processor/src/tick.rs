//! Ticks: the owner of a partition appends a tick command to it at a fixed interval, so
//! log time moves (and holds expire) on a quiet partition too. Best effort: a tick that
//! cannot be queued is skipped, the next one comes an interval later.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use topics::{Envelope, LogCommand};

pub struct Ticker {
    producer: ThreadedProducer<DefaultProducerContext>,
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
    pub fn new(bootstrap: &str, topic: String, every: Duration) -> Result<Self, KafkaError> {
        let producer = broker::client::producer_config(bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .create()?;
        let payload = topics::codec::to_json(&Envelope::command(LogCommand::Tick))
            .unwrap_or_else(|e| unreachable!("a tick always encodes: {e}"));
        Ok(Self { producer, topic, payload, every, last: Instant::now() })
    }

    pub fn due(&self) -> bool {
        self.last.elapsed() >= self.every
    }

    /// Queue one tick for each of `partitions`; returns how many were queued.
    pub fn tick(&mut self, partitions: &[i32]) -> usize {
        self.last = Instant::now();
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
