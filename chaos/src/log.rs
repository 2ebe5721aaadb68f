//! The output of a deployment as the auditor reads it: every topic, read_committed.

use std::time::Duration;

use broker::read::{ReadError, ReadRecord, partition_count, read_all};
use topics::codec::Format;
use topics::{Topic, Topics};

/// Every committed record of skuflow's topics.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// Partitions of the commands topic.
    pub partitions: i32,
    pub commands: Vec<ReadRecord>,
    pub replies: Vec<ReadRecord>,
    pub events: Vec<ReadRecord>,
    pub availability: Vec<ReadRecord>,
    pub changelog: Vec<ReadRecord>,
    pub dead_letters: Vec<ReadRecord>,
    /// How the envelopes are encoded (the deployment's format).
    pub format: Format,
}

impl Log {
    pub fn read(bootstrap: &str, topics: &Topics, timeout: Duration) -> Result<Self, ReadError> {
        let read = |t| read_all(bootstrap, &topics.name(t), timeout);
        let consumer: rdkafka::consumer::BaseConsumer =
            broker::client::base_config(bootstrap).create().map_err(ReadError::Kafka)?;
        let partitions = partition_count(&consumer, &topics.name(Topic::Commands), timeout)?;
        // Outputs first, the commands last: on a running deployment the commands read then
        // cover everything the outputs reflect (the replay stops where the changelog does).
        let (changelog, replies, events) =
            (read(Topic::Changelog)?, read(Topic::Replies)?, read(Topic::Events)?);
        let (availability, dead_letters) = (read(Topic::Availability)?, read(Topic::DeadLetter)?);
        Ok(Self {
            partitions,
            commands: read(Topic::Commands)?,
            replies,
            events,
            availability,
            changelog,
            dead_letters,
            format: Format::Json,
        })
    }

    /// This log, its envelopes read in `format`.
    pub fn in_format(self, format: Format) -> Self {
        Self { format, ..self }
    }
}
