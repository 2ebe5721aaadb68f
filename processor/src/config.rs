//! The processor's configuration, loaded once at start and passed explicitly.

use std::path::PathBuf;
use std::time::Duration;

use state::MachineConfig;
use topics::Topics;

/// How a batch's outputs and its consumed offsets are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// One Kafka transaction with the outputs and the offsets (the default).
    #[default]
    ExactlyOnce,
    /// Produce and flush, then commit the offsets: a crash in between re-produces
    /// records with the same ids. For comparison, and for brokers without transactions.
    AtLeastOnce,
}

/// Rows a processor keeps cached between batches by default: about 30 MB of stock rows,
/// reservations and idempotency records, enough for every hot SKU of a flash sale.
pub const DEFAULT_CACHE_ROWS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub bootstrap: String,
    pub group_id: String,
    /// Stable name of this instance; the transactional id derives from it, so a restarted
    /// instance fences (and aborts the open transaction of) its previous incarnation.
    pub instance: String,
    /// Where the RocksDB store lives.
    pub data_dir: PathBuf,
    pub topics: Topics,
    /// Most commands applied in one transaction.
    pub batch_max: usize,
    /// How long a batch waits for more records after its first (records already
    /// fetched are always taken, up to `batch_max`).
    pub batch_wait: Duration,
    pub machine: MachineConfig,
    /// fsync the store's WAL on every batch.
    pub sync_store: bool,
    /// Rows (stock rows, reservations, idempotency records) kept in memory between
    /// batches, over all owned partitions' views; 0 keeps none. Beyond this, memory does
    /// not depend on how much the store holds.
    pub cache_rows: usize,
    /// The store's block cache (RocksDB), in bytes.
    pub block_cache_bytes: usize,
    /// Upper bound on any broker operation (transaction calls, restore).
    pub timeout: Duration,
    pub delivery: Delivery,
    /// How often a tick is appended to each owned partition; `None`: never.
    pub tick_interval: Option<Duration>,
    /// The group's session timeout: how long a silent member keeps its partitions.
    pub session_timeout: Duration,
    /// Kafka's `max.poll.interval.ms`, which is also the group's rebalance timeout: how
    /// long a rebalance waits for members that do not rejoin (the dev broker only drops a
    /// dead member then, not after the session timeout). Bounds the time one batch,
    /// restores included, may take.
    pub max_poll_interval: Duration,
    /// Kafka's `transaction.timeout.ms`: how long the coordinator lets a transaction stay
    /// open before aborting it (and the producer's delivery timeout). At least twice
    /// `timeout`, the most one batch's transaction stays open, so that a coordinator abort
    /// cannot happen to a live processor and be mistaken for fencing.
    pub transaction_timeout: Duration,
    /// How long a partition whose changelog still ends before the group's committed
    /// offset after a restore is restored again (with growing pauses) before it is
    /// halted as a gap: a transaction left open on the changelog hides its end until it
    /// commits or the coordinator aborts it (after `transaction_timeout`).
    pub gap_patience: Duration,
    /// Whether a restore may read only the changelog records after the store's
    /// checkpoint (`restore.rs`) instead of the whole partition. Off by default until the
    /// broker-restart campaign passes with it (RELIABILITY.md).
    pub restore_from_checkpoint: bool,
    /// How long the coordinator's description of the group may stay wrong (a rebalance
    /// that does not end, an assignment this member does not hold, partitions held by
    /// nobody or by two members) before this member rejoins the group. Longer than
    /// `max_poll_interval` by default, so that on Apache Kafka the coordinator's own
    /// rebalance timeout acts first and every member does not rejoin at once.
    pub group_patience: Duration,
    /// How long a partition with records waiting may apply nothing before the watchdog
    /// calls it stalled (logs an error, fails `/healthz`, recreates the consumer).
    pub stall_timeout: Duration,
    /// Refuse to start unless the commands topic is stamped with LogAppendTime. Off only
    /// for librdkafka's mock cluster, whose topics carry no configuration.
    pub require_log_append_time: bool,
    /// How envelopes are encoded: JSON, or Avro through a schema registry (registered
    /// before the processor starts). Every writer and reader of a deployment must agree.
    pub format: topics::codec::Format,
}

impl ProcessorConfig {
    pub fn new(
        bootstrap: impl Into<String>,
        instance: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            group_id: "skuflow-processor".into(),
            instance: instance.into(),
            data_dir: data_dir.into(),
            topics: Topics::default(),
            batch_max: 1000,
            batch_wait: Duration::ZERO,
            machine: MachineConfig::default(),
            sync_store: false,
            cache_rows: DEFAULT_CACHE_ROWS,
            block_cache_bytes: state::store::DEFAULT_BLOCK_CACHE_BYTES,
            timeout: Duration::from_secs(30),
            delivery: Delivery::ExactlyOnce,
            tick_interval: Some(Duration::from_secs(1)),
            session_timeout: Duration::from_secs(10),
            max_poll_interval: Duration::from_secs(60),
            group_patience: Duration::from_secs(90),
            transaction_timeout: Duration::from_secs(60),
            gap_patience: Duration::from_secs(65),
            restore_from_checkpoint: false,
            stall_timeout: Duration::from_secs(30),
            require_log_append_time: true,
            format: topics::codec::Format::Json,
        }
    }

    /// Refuse timeouts that would let the coordinator abort a transaction in progress.
    pub fn check(&self) -> Result<(), String> {
        if self.delivery == Delivery::ExactlyOnce && self.transaction_timeout < 2 * self.timeout {
            return Err(format!(
                "transaction timeout {:?} must be at least twice the operation timeout {:?}",
                self.transaction_timeout, self.timeout
            ));
        }
        Ok(())
    }

    /// The prefix of every transactional id of this instance.
    pub fn transactional_id(&self) -> String {
        format!("{}-{}", self.group_id, self.instance)
    }
}
