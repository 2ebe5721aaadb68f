//! The consumer-group side: rebalance callbacks, and librdkafka's per-partition fetch
//! statistics kept for the watchdog (what the fetcher is doing when nothing arrives).
//!
//! A partition the processor paused (restoring, halted) and then lost in a rebalance is
//! resumed on its way out and again when it comes back: librdkafka keeps a partition's
//! pause across revocation and re-assignment, so without that a partition revoked
//! mid-restore would, once assigned again, never be fetched (and never answered).
//!
//! librdkafka's own `consumer_lag` is not used: it counts from the consumer's committed
//! offset, which transactional commits (`send_offsets_to_transaction`) never update, so it
//! grows on a healthy processor. The watchdog computes lag from the processor's own
//! applied offset instead.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;

use crate::ProcessorConfig;
use crate::output::millis;

/// A consumer-group member on the commands topic: cooperative-sticky, static membership
/// under the instance name, subscribed.
pub fn join(
    config: &ProcessorConfig,
    commands_topic: &str,
) -> KafkaResult<BaseConsumer<GroupContext>> {
    let consumer = member(config, commands_topic)?;
    consumer.subscribe(&[commands_topic])?;
    Ok(consumer)
}

/// The same consumer, not yet subscribed. Until it subscribes it sends no JoinGroup, so
/// what it asks the coordinator first (committed offsets) is not queued behind a join
/// that waits for the whole group to rebalance, and a processor stopped before then never
/// becomes a member (a member that leaves before its join is answered cannot send its
/// LeaveGroup, and the dev broker then keeps it for ever, BROKERS.md).
pub fn member(
    config: &ProcessorConfig,
    commands_topic: &str,
) -> KafkaResult<BaseConsumer<GroupContext>> {
    // A client id of its own per consumer, starting with the instance name: how this
    // member finds itself in the coordinator's description of the group (`membership`;
    // Apache Kafka keeps a static member's first client id when a new consumer of the
    // same instance replaces it, so the instance part is what is compared then).
    static JOINS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = JOINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let client_id = format!("{}-{}-{n}", config.instance, std::process::id());
    let context = GroupContext::new(commands_topic.to_owned(), client_id.clone());
    BaseConsumer::from_config_and_context(
        broker::client::consumer_config(&config.bootstrap, &config.group_id)
            .set("client.id", &client_id)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("group.instance.id", &config.instance)
            .set("session.timeout.ms", millis(config.session_timeout))
            .set("max.poll.interval.ms", millis(config.max_poll_interval))
            .set("statistics.interval.ms", "1000"),
        context,
    )
}

/// Un-pause `tpl`'s partitions; a failure only means the partition was not assigned.
fn resume(consumer: &BaseConsumer<GroupContext>, tpl: &TopicPartitionList, when: &str) {
    if tpl.count() > 0
        && let Err(e) = consumer.resume(tpl)
    {
        tracing::debug!(error = %e, when, "resume after a rebalance");
    }
}

/// What librdkafka said last about fetching one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// `none`, `stopping`, `stopped`, `offset-query`, `offset-wait`, `validate-epoch-wait`,
    /// `active`: anything but `active` means the partition is not being fetched.
    pub fetch_state: String,
    /// The fetcher's next offset to fetch.
    pub next_offset: i64,
    /// One past the last record handed to the application.
    pub app_offset: i64,
    /// Records fetched and waiting in librdkafka's queue.
    pub fetchq_cnt: i64,
    /// Last stable offset: where `read_committed` reads end.
    pub ls_offset: i64,
    pub hi_offset: i64,
}

#[derive(Debug)]
pub struct GroupContext {
    /// Partitions revoked (or lost) since the processor last looked.
    revoked: Mutex<BTreeSet<i32>>,
    /// The group has given this member an assignment (possibly empty) since it joined.
    assigned: std::sync::atomic::AtomicBool,
    fetch: Mutex<BTreeMap<i32, FetchStats>>,
    commands_topic: String,
    client_id: String,
}

impl GroupContext {
    pub fn new(commands_topic: String, client_id: String) -> Self {
        Self {
            revoked: Mutex::default(),
            assigned: std::sync::atomic::AtomicBool::new(false),
            fetch: Mutex::default(),
            commands_topic,
            client_id,
        }
    }

    /// This consumer's `client.id`, unique to it.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The latest fetch statistics of every partition librdkafka reported.
    pub fn fetch_stats(&self) -> BTreeMap<i32, FetchStats> {
        self.fetch.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the group has assigned this member its partitions (none counts) yet.
    pub fn has_assignment(&self) -> bool {
        self.assigned.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The partitions revoked since the last call.
    pub fn take_revoked(&self) -> BTreeSet<i32> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.commands_topic) else { return };
        let mut fetch = self.fetch.lock().unwrap_or_else(|e| e.into_inner());
        for (p, partition) in topic.partitions.iter().filter(|(p, _)| **p >= 0) {
            fetch.insert(
                *p,
                FetchStats {
                    fetch_state: partition.fetch_state.clone(),
                    next_offset: partition.next_offset,
                    app_offset: partition.app_offset,
                    fetchq_cnt: partition.fetchq_cnt,
                    ls_offset: partition.ls_offset,
                    hi_offset: partition.hi_offset,
                },
            );
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions revoked");
                // Still assigned here: the last moment their pause can be lifted.
                resume(consumer, tpl, "revoked");
                // The partition's metrics go with it in the processor (`Watchdog::forget`).
                let mut fetch = self.fetch.lock().unwrap_or_else(|e| e.into_inner());
                for p in &partitions {
                    fetch.remove(p);
                }
                drop(fetch);
                self.revoked.lock().unwrap_or_else(|e| e.into_inner()).extend(partitions);
            }
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // A partition comes (back) unpaused: the processor has no state for it yet, and
        // pauses it itself if it must restore it first.
        if let Rebalance::Assign(tpl) = rebalance {
            resume(consumer, tpl, "assigned");
            self.assigned.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
