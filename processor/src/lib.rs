//! The processor: a consumer-group member on the commands topic with one single writer
//! per assigned partition. [`batch`] is its core step, free of Kafka: decode a batch of
//! one partition's records, apply them through `state`, and return the store batch and
//! every output record as data, each with a stable identity. The Kafka side (consumer
//! group, transactions, restore, ticks, metrics) is issue 5's remaining work.

pub mod batch;
pub mod produce;
pub mod restore;

pub use batch::{Applied, BatchError, InRecord, OutRecord, apply_batch};
