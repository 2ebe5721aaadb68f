//! `skuflow processor`: one processor instance, configured by flags or `SKUFLOW_*`
//! environment variables, with its metrics on its own HTTP port.
//!
//! Exit codes: 0 after Ctrl-C / SIGTERM, 3 when fenced (another incarnation of this
//! instance name took over: this one is a zombie and must not fight back), 1 otherwise.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use processor::{Delivery, Health, Processor, ProcessorConfig};
use topics::Topics;

/// Exit code of a fenced processor.
pub const EXIT_FENCED: u8 = 3;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub cluster: crate::cluster_args::ClusterArgs,
    #[command(flatten)]
    pub processor: ProcessorArgs,
}

/// How a processor runs, whoever starts it (`skuflow processor`, `skuflow up`).
#[derive(Debug, clap::Args)]
pub struct ProcessorArgs {
    /// Stable, unique name of this instance (a StatefulSet pod name). The transactional
    /// id derives from it: a restart under the same name fences the previous incarnation.
    #[arg(long, env = "SKUFLOW_INSTANCE", default_value = "processor-0")]
    pub instance: String,
    /// Where the RocksDB store lives [default: $SKUFLOW_HOME/data/<instance>].
    #[arg(long, env = "SKUFLOW_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Consumer group of the processors.
    #[arg(long, env = "SKUFLOW_GROUP", default_value_t = defaults().group_id)]
    pub group: String,
    /// Most commands applied in one transaction.
    #[arg(long, env = "SKUFLOW_BATCH_MAX", default_value_t = defaults().batch_max)]
    pub batch_max: usize,
    /// How long a batch waits for more commands after its first, in milliseconds (0: it
    /// takes what arrived while the previous transaction committed; measured best).
    #[arg(long, env = "SKUFLOW_BATCH_WAIT_MS", default_value_t = ms(defaults().batch_wait))]
    pub batch_wait_ms: u64,
    /// Interval of tick commands on owned partitions, in milliseconds; 0 turns ticks off.
    #[arg(long, env = "SKUFLOW_TICK_INTERVAL_MS", default_value_t = ms(defaults().tick_interval.unwrap_or_default()))]
    pub tick_interval_ms: u64,
    /// exactly-once (one transaction per batch) or at-least-once (produce, then commit).
    #[arg(long, env = "SKUFLOW_DELIVERY", default_value = "exactly-once", value_parser = parse_delivery)]
    pub delivery: Delivery,
    /// Consumer group session timeout, in milliseconds.
    #[arg(long, env = "SKUFLOW_SESSION_TIMEOUT_MS", default_value_t = ms(defaults().session_timeout))]
    pub session_timeout_ms: u64,
    /// Longest time between two polls of the group, in milliseconds; also how long a
    /// rebalance waits for a member that does not rejoin.
    #[arg(long, env = "SKUFLOW_MAX_POLL_INTERVAL_MS", default_value_t = ms(defaults().max_poll_interval))]
    pub max_poll_interval_ms: u64,
    /// fsync the store's write-ahead log on every batch.
    #[arg(long, env = "SKUFLOW_SYNC_STORE")]
    pub sync_store: bool,
    /// Address of the metrics endpoint (GET /metrics, /healthz).
    #[arg(long, env = "SKUFLOW_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,
    /// Milliseconds a partition with records waiting may apply nothing before the watchdog
    /// reports it stalled: an error in the log, /healthz 503, the consumer recreated.
    #[arg(long, env = "SKUFLOW_STALL_TIMEOUT_MS", default_value_t = ms(defaults().stall_timeout))]
    pub stall_timeout_ms: u64,
    /// Milliseconds a partition whose changelog ends before the group's committed offset
    /// is restored again before it is halted as a gap (a transaction left open on the
    /// changelog hides its end until it commits or is aborted after the 60 s transaction
    /// timeout).
    #[arg(long, env = "SKUFLOW_GAP_PATIENCE_MS", default_value_t = ms(defaults().gap_patience))]
    pub gap_patience_ms: u64,
    /// Restore a partition this processor's store held before by reading only the
    /// changelog records written since (its checkpoint), instead of the whole partition.
    /// Off by default: not yet shown safe under repeated broker restarts (RELIABILITY.md).
    #[arg(long, env = "SKUFLOW_RESTORE_FROM_CHECKPOINT")]
    pub restore_from_checkpoint: bool,
    /// Milliseconds the group coordinator's description of the group may stay wrong (a
    /// rebalance that does not end, an assignment this member does not hold, partitions
    /// held by no member or by two) before this member rejoins the group.
    #[arg(long, env = "SKUFLOW_GROUP_PATIENCE_MS", default_value_t = ms(defaults().group_patience))]
    pub group_patience_ms: u64,
    /// How long a command id is remembered, in milliseconds of log time: a retry within it
    /// gets the first reply; after it the same id is a new command. Every processor of a
    /// deployment must use the same value (it is part of the state machine's input).
    #[arg(long, env = "SKUFLOW_IDEMPOTENCY_WINDOW_MS", default_value_t = defaults().machine.dedup_window_ms)]
    pub idempotency_window_ms: u64,
    /// How long a finished (released, purchased, expired) reservation stays readable, in
    /// milliseconds of log time; after it, commands naming it get not_found.
    #[arg(long, env = "SKUFLOW_RESERVATION_RETENTION_MS", default_value_t = defaults().machine.reservation_retention_ms)]
    pub reservation_retention_ms: u64,
    /// Rows (stock rows, reservations, idempotency records) kept in memory between
    /// batches, shared by the owned partitions; 0 keeps none.
    #[arg(long, env = "SKUFLOW_CACHE_ROWS", default_value_t = defaults().cache_rows)]
    pub cache_rows: usize,
    /// The store's block cache, in MiB.
    #[arg(long, env = "SKUFLOW_BLOCK_CACHE_MB", default_value_t = defaults().block_cache_bytes >> 20)]
    pub block_cache_mb: usize,
}

/// The processor's defaults, written once in its config.
fn defaults() -> ProcessorConfig {
    ProcessorConfig::new("", "", "")
}

pub(crate) fn ms(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

fn parse_delivery(s: &str) -> Result<Delivery, String> {
    match s {
        "exactly-once" => Ok(Delivery::ExactlyOnce),
        "at-least-once" => Ok(Delivery::AtLeastOnce),
        _ => Err(format!("{s:?}: expected exactly-once or at-least-once")),
    }
}

impl ProcessorArgs {
    pub fn config(&self, brokers: &str, topics: Topics) -> ProcessorConfig {
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| broker::dev::install_root().join("data").join(&self.instance));
        let mut config = ProcessorConfig::new(brokers, &self.instance, data_dir);
        config.topics = topics;
        config.group_id = self.group.clone();
        config.batch_max = self.batch_max.max(1);
        config.batch_wait = Duration::from_millis(self.batch_wait_ms);
        config.tick_interval =
            (self.tick_interval_ms > 0).then(|| Duration::from_millis(self.tick_interval_ms));
        config.delivery = self.delivery;
        config.session_timeout = Duration::from_millis(self.session_timeout_ms);
        config.max_poll_interval = Duration::from_millis(self.max_poll_interval_ms);
        config.sync_store = self.sync_store;
        config.stall_timeout = Duration::from_millis(self.stall_timeout_ms.max(1));
        config.gap_patience = Duration::from_millis(self.gap_patience_ms);
        config.restore_from_checkpoint = self.restore_from_checkpoint;
        config.group_patience = Duration::from_millis(self.group_patience_ms);
        config.machine.dedup_window_ms = self.idempotency_window_ms;
        config.machine.reservation_retention_ms = self.reservation_retention_ms;
        config.cache_rows = self.cache_rows;
        config.block_cache_bytes = self.block_cache_mb.saturating_mul(1 << 20);
        config
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let registry = prometheus::Registry::new();
    let health = Health::new();
    let metrics = crate::metrics_server::MetricsServer::start(
        args.processor.metrics_addr,
        registry.clone(),
        health.clone(),
    )?;
    tracing::info!(addr = %metrics.addr(), "metrics at http://{}/metrics", metrics.addr());
    let shutdown = Arc::new(AtomicBool::new(false));
    let mut config = args.processor.config(&args.cluster.brokers, args.cluster.topics());
    config.format = args.cluster.registry.format(&config.topics)?;
    let worker = spawn(config, registry, health, shutdown.clone())?;
    crate::wait_for_shutdown("the processor", || !worker.is_finished())?;
    shutdown.store(true, Ordering::Relaxed);
    let result = worker.join().map_err(|_| anyhow::anyhow!("the processor thread panicked"))?;
    metrics.stop();
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.is_fenced() => {
            tracing::error!("{e}; this process is a zombie of its instance and stops");
            Ok(ExitCode::from(EXIT_FENCED))
        }
        Err(e) => Err(e.into()),
    }
}

/// Run a processor on its own thread until `shutdown` is set.
pub fn spawn(
    config: ProcessorConfig,
    registry: prometheus::Registry,
    health: Health,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<Result<(), processor::ProcessorError>>> {
    Ok(std::thread::Builder::new()
        .name("processor".into())
        .spawn(move || Processor::with_health(config, &registry, health)?.run(&shutdown))?)
}
