//! The processor: a consumer-group member on the commands topic with one single writer
//! per assigned partition. [`batch`] is its core step, free of Kafka: decode a batch of
//! one partition's records, apply them through `state`, and return the store batch and
//! every output record as data, each with a stable identity. [`service`] is the Kafka
//! side: the group member, [`output`] publishes each batch (one transaction with the
//! consumed offsets), [`restore`] rebuilds a partition from the changelog, [`tick`]
//! moves log time on quiet partitions, [`metrics`] says what it is doing.

pub mod batch;
pub mod config;
pub mod group;
pub mod health;
pub mod history;
mod identity;
pub mod membership;
pub mod metrics;
pub mod output;
pub mod produce;
pub mod restore;
pub mod restores;
pub mod service;
pub mod tick;
pub mod watchdog;

pub use batch::{Applied, BatchError, InRecord, OutRecord, Source, apply_batch, apply_routed};
pub use config::{Delivery, ProcessorConfig};
pub use health::Health;
pub use service::{Processor, ProcessorError};

/// skuflow's topics as creation specs for [`broker::admin::ensure_topics`].
pub fn topic_specs(
    topics: &topics::Topics,
    partitions: i32,
    replication: i32,
) -> Vec<broker::admin::TopicSpec> {
    topics
        .layout(partitions)
        .into_iter()
        .map(|t| broker::admin::TopicSpec {
            name: t.name,
            partitions: t.partitions,
            replication,
            configs: t.configs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        })
        .collect()
}
