//! The consumer-group side: rebalance callbacks and per-partition lag from librdkafka's
//! statistics.

use std::collections::BTreeSet;
use std::sync::Mutex;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;

use crate::metrics::Metrics;

pub struct GroupContext {
    /// Partitions revoked (or lost) since the processor last looked.
    revoked: Mutex<BTreeSet<i32>>,
    metrics: Metrics,
    commands_topic: String,
}

impl GroupContext {
    pub fn new(metrics: Metrics, commands_topic: String) -> Self {
        Self { revoked: Mutex::default(), metrics, commands_topic }
    }

    /// The partitions revoked since the last call.
    pub fn take_revoked(&self) -> BTreeSet<i32> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.commands_topic) else { return };
        for (p, partition) in &topic.partitions {
            if *p >= 0 && partition.consumer_lag >= 0 {
                self.metrics.lag.with_label_values(&[p.to_string()]).set(partition.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions revoked");
                for p in &partitions {
                    let _ = self.metrics.lag.remove_label_values(&[&p.to_string()]);
                }
                self.revoked.lock().unwrap_or_else(|e| e.into_inner()).extend(partitions);
            }
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}
