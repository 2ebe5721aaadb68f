//! The output of a deployment as the auditor reads it: every topic, read_committed.

use std::time::Duration;

use broker::read::{ReadError, ReadRecord, read_all};
use topics::{Topic, Topics};

/// Every committed record of skuflow's topics.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub commands: Vec<ReadRecord>,
    pub replies: Vec<ReadRecord>,
    pub events: Vec<ReadRecord>,
    pub availability: Vec<ReadRecord>,
    pub changelog: Vec<ReadRecord>,
    pub dead_letters: Vec<ReadRecord>,
}

impl Log {
    pub fn read(bootstrap: &str, topics: &Topics, timeout: Duration) -> Result<Self, ReadError> {
        let read = |t| read_all(bootstrap, &topics.name(t), timeout);
        Ok(Self {
            commands: read(Topic::Commands)?,
            replies: read(Topic::Replies)?,
            events: read(Topic::Events)?,
            availability: read(Topic::Availability)?,
            changelog: read(Topic::Changelog)?,
            dead_letters: read(Topic::DeadLetter)?,
        })
    }
}
