//! The processor's Prometheus metrics. Registered into a registry the caller owns (the
//! binary serves it on the processor's own HTTP port).

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Commands (and ticks) per transaction.
    pub batch_commands: Histogram,
    /// Seconds from `begin_transaction` to a successful commit (at-least-once: produce,
    /// flush and offset commit).
    pub commit_seconds: Histogram,
    /// How long each look at the group's description held the processing thread.
    pub group_describe_seconds: Histogram,
    /// Records applied; `rate()` of it is the apply rate.
    pub applied: IntCounter,
    /// Records waiting in each assigned partition: where its log is known to end (last
    /// delivered tick, last stable offset) minus one past the applied offset.
    pub lag: IntGaugeVec,
    /// Changelog records read by the restore running (or last run) per partition.
    pub restore_records: IntGaugeVec,
    /// Changelog bytes (keys and values) read by the restore running (or last run).
    pub restore_bytes: IntGaugeVec,
    /// Changelog offsets left for the running restore to read (0 when done).
    pub restore_remaining: IntGaugeVec,
    /// Records per second of the running (or last) restore.
    pub restore_rate: GaugeVec,
    /// The store's memory by kind (block cache, memtables, table readers), and the rows
    /// cached in the partitions' views.
    pub store_memory: IntGaugeVec,
    pub cached_rows: IntGauge,
    /// 1 while the partition is being restored.
    pub restoring: IntGaugeVec,
    /// Completed restores by where they read from: `beginning` (the whole changelog
    /// partition) or `checkpoint` (only what followed the store's checkpoint).
    pub restores: IntCounterVec,
    pub dead_letters: IntCounter,
    pub rejections: IntCounterVec,
    /// Failed batches by what was done about them: abort, recreate, fenced.
    pub transaction_failures: IntCounterVec,
    pub assigned_partitions: IntGauge,
    pub ticks: IntCounter,
    /// Seconds a partition with work waiting has made no progress (0: none waiting).
    pub seconds_since_progress: GaugeVec,
    /// Partitions found stalled by the watchdog.
    pub stalls: IntCounter,
    /// Consumers recreated to recover from a stall.
    pub stall_recoveries: IntCounter,
    /// 1 for a partition stopped (an invariant broken, a gap, a log that contradicts
    /// its state, a restore given up, undecodable store data).
    pub halted: IntGaugeVec,
    /// Times the commands log contradicted a partition's state (the broker lost records
    /// the state applied and reused their offsets).
    pub diverged: IntCounter,
    /// Times a partition's changelog no longer ended with its state's last batch.
    pub changelog_losses: IntCounter,
    /// Commands applied a second time after the changelog lost the state they built.
    pub replayed: IntCounter,
    /// Times this member rejoined its group because the coordinator's description of it
    /// stayed wrong (`membership`), by what was wrong.
    pub group_rejoins: IntCounterVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            batch_commands: Histogram::with_opts(
                HistogramOpts::new(
                    "skuflow_processor_batch_commands",
                    "Commands applied in one transaction",
                )
                .buckets(vec![
                    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
                ]),
            )?,
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "skuflow_processor_commit_seconds",
                    "Latency of producing a batch's outputs and committing its transaction",
                )
                .buckets(prometheus::exponential_buckets(0.000_5, 1.25, 40)?),
            )?,
            group_describe_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "skuflow_processor_group_describe_seconds",
                    "Time the processing thread spent asking the coordinator to describe the group (the membership audit, every few seconds)",
                )
                .buckets(prometheus::exponential_buckets(0.000_5, 2.0, 14)?),
            )?,
            applied: IntCounter::new(
                "skuflow_processor_applied_total",
                "Command log records applied (commands, ticks, dead letters)",
            )?,
            lag: IntGaugeVec::new(
                Opts::new("skuflow_processor_lag", "Records not yet applied per partition"),
                &["partition"],
            )?,
            restore_records: IntGaugeVec::new(
                Opts::new(
                    "skuflow_processor_restore_records",
                    "Changelog records read by the current or last restore of a partition",
                ),
                &["partition"],
            )?,
            restore_bytes: IntGaugeVec::new(
                Opts::new(
                    "skuflow_processor_restore_bytes",
                    "Changelog bytes read by the current or last restore of a partition",
                ),
                &["partition"],
            )?,
            restore_remaining: IntGaugeVec::new(
                Opts::new(
                    "skuflow_processor_restore_remaining",
                    "Changelog offsets the current restore of a partition has left to read",
                ),
                &["partition"],
            )?,
            restore_rate: GaugeVec::new(
                Opts::new(
                    "skuflow_processor_restore_records_per_second",
                    "Records per second of the current or last restore of a partition",
                ),
                &["partition"],
            )?,
            store_memory: IntGaugeVec::new(
                Opts::new(
                    "skuflow_processor_store_memory_bytes",
                    "RocksDB memory by kind: block_cache, memtables, table_readers",
                ),
                &["kind"],
            )?,
            cached_rows: IntGauge::new(
                "skuflow_processor_cached_rows",
                "Rows held between batches in the owned partitions' views",
            )?,
            restoring: IntGaugeVec::new(
                Opts::new("skuflow_processor_restoring", "1 while a partition is being restored"),
                &["partition"],
            )?,
            restores: IntCounterVec::new(
                Opts::new(
                    "skuflow_processor_restores_total",
                    "Partitions rebuilt from the changelog, by where the restore read from",
                ),
                &["from"],
            )?,
            dead_letters: IntCounter::new(
                "skuflow_processor_dead_letters_total",
                "Records sent to the dead-letter topic",
            )?,
            rejections: IntCounterVec::new(
                Opts::new("skuflow_processor_rejections_total", "Rejected commands by reason"),
                &["reason"],
            )?,
            transaction_failures: IntCounterVec::new(
                Opts::new(
                    "skuflow_processor_transaction_failures_total",
                    "Failed batches by the recovery taken (abort, recreate, fenced)",
                ),
                &["recovery"],
            )?,
            assigned_partitions: IntGauge::new(
                "skuflow_processor_assigned_partitions",
                "Partitions of the commands topic this processor owns",
            )?,
            ticks: IntCounter::new(
                "skuflow_processor_ticks_total",
                "Tick commands appended to owned partitions",
            )?,
            seconds_since_progress: GaugeVec::new(
                Opts::new(
                    "skuflow_processor_seconds_since_progress",
                    "Seconds a partition with records waiting has applied nothing (0: none waiting)",
                ),
                &["partition"],
            )?,
            stalls: IntCounter::new(
                "skuflow_processor_stalls_total",
                "Partitions found with work waiting and no progress for the stall timeout",
            )?,
            stall_recoveries: IntCounter::new(
                "skuflow_processor_stall_recoveries_total",
                "Consumers recreated to recover from a stall",
            )?,
            halted: IntGaugeVec::new(
                Opts::new(
                    "skuflow_processor_halted",
                    "1 for a partition stopped: a record broke an invariant, a gap or a log that contradicts the state, a failed restore or undecodable store data (/healthz says which)",
                ),
                &["partition"],
            )?,
            diverged: IntCounter::new(
                "skuflow_processor_log_divergences_total",
                "Times the commands log contradicted a partition's state (lost and reused offsets)",
            )?,
            changelog_losses: IntCounter::new(
                "skuflow_processor_changelog_losses_total",
                "Times a partition's changelog no longer ended with its state's last batch (the broker lost changelog records)",
            )?,
            replayed: IntCounter::new(
                "skuflow_processor_replayed_commands_total",
                "Commands applied again because the changelog lost the state they had built",
            )?,
            group_rejoins: IntCounterVec::new(
                Opts::new(
                    "skuflow_processor_group_rejoins_total",
                    "Times this member rejoined its group because the coordinator's description of it stayed wrong for the group patience",
                ),
                &["finding"],
            )?,
        };
        registry.register(Box::new(m.group_rejoins.clone()))?;
        registry.register(Box::new(m.batch_commands.clone()))?;
        registry.register(Box::new(m.diverged.clone()))?;
        registry.register(Box::new(m.changelog_losses.clone()))?;
        registry.register(Box::new(m.replayed.clone()))?;
        registry.register(Box::new(m.commit_seconds.clone()))?;
        registry.register(Box::new(m.group_describe_seconds.clone()))?;
        registry.register(Box::new(m.applied.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        registry.register(Box::new(m.restore_records.clone()))?;
        registry.register(Box::new(m.restore_bytes.clone()))?;
        registry.register(Box::new(m.restore_remaining.clone()))?;
        registry.register(Box::new(m.restore_rate.clone()))?;
        registry.register(Box::new(m.store_memory.clone()))?;
        registry.register(Box::new(m.cached_rows.clone()))?;
        registry.register(Box::new(m.restoring.clone()))?;
        registry.register(Box::new(m.restores.clone()))?;
        registry.register(Box::new(m.dead_letters.clone()))?;
        registry.register(Box::new(m.rejections.clone()))?;
        registry.register(Box::new(m.transaction_failures.clone()))?;
        registry.register(Box::new(m.assigned_partitions.clone()))?;
        registry.register(Box::new(m.ticks.clone()))?;
        registry.register(Box::new(m.seconds_since_progress.clone()))?;
        registry.register(Box::new(m.stalls.clone()))?;
        registry.register(Box::new(m.stall_recoveries.clone()))?;
        registry.register(Box::new(m.halted.clone()))?;
        Ok(m)
    }
}
