//! The processor service: one consumer-group member, one writer per assigned partition.
//!
//! Per loop: append ticks to owned partitions when due, poll a batch (up to `batch_max`
//! records or `batch_wait`), drop records of partitions revoked meanwhile, make sure
//! each partition's state matches the committed offset (else restore it from the
//! changelog), apply with [`apply_batch`], publish every output with the consumed
//! offsets ([`Outputs`]: one Kafka transaction by default), and only then write each
//! partition's RocksDB batch.
//!
//! Why commit before the store write: a failed or aborted transaction then needs no
//! repair beyond reloading the partitions from the store; a crash between commit and
//! store write leaves the store *behind* the committed offset, which the next assignment
//! detects (applied + 1 != committed) and repairs from the changelog, which the committed
//! transaction contains. ARCHITECTURE.md walks through every crash point.
//!
//! Rebalances: revocation callbacks run inside `poll`, never while a batch is being
//! applied or committed, so there is no batch in flight to finish; records already polled
//! for a revoked partition are dropped (its new owner starts from the committed offset).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use state::store::{Store, StoreError};
use state::{ApplyError, Machine, PartitionState};
use topics::{LogTime, TRACE_HEADER, Topic, TraceContext};

use crate::batch::{Applied, BatchError, InRecord, Source, apply_routed, apply_span_id};
use crate::config::ProcessorConfig;
use crate::group::GroupContext;
use crate::health::Health;
use crate::history::{HistoryCheck, Verdict, log_time, replayed_record};
use crate::metrics::Metrics;
use crate::output::{Failure, Outputs};
use crate::restore::RestoreError;
use crate::restores::{self, Ended, Restores};
use crate::tick::Ticker;
use crate::watchdog::Watchdog;

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("store: {0}")]
    Store(#[from] state::store::StoreError),
    #[error("restore: {0}")]
    Restore(#[from] RestoreError),
    #[error("batch: {0}")]
    Batch(#[from] BatchError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Topic(#[from] broker::read::ReadError),
    /// The outputs could not be published and the producer could not be made usable
    /// again; [`Failure::Fenced`] means another incarnation of this instance took over.
    #[error("{0}")]
    Output(#[from] Failure),
    /// Another member with this instance name joined the group.
    #[error("fenced from the group by a newer member with the same instance name: {0}")]
    GroupFenced(String),
    #[error("fatal consumer error: {0}")]
    Consumer(String),
    #[error("machine configuration: {0}")]
    Config(#[from] state::ConfigError),
    #[error("configuration: {0}")]
    Settings(String),
    #[error("producer: {0}")]
    Identity(#[from] crate::identity::OutputError),
}

impl ProcessorError {
    /// Another processor with this instance's transactional id has taken over.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            ProcessorError::Output(Failure::Fenced(_))
                | ProcessorError::GroupFenced(_)
                | ProcessorError::Identity(crate::identity::OutputError::Superseded { .. })
        )
    }

    /// The broker could not be reached or answered with an error: worth another try
    /// once the batch's partitions are rewound.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            ProcessorError::Kafka(_)
                | ProcessorError::Restore(RestoreError::Kafka(_) | RestoreError::Stalled { .. })
        )
    }
}

/// The longest an idle poll blocks the loop.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How often the watchdog looks at the owned partitions.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Backoff after a transient failure, doubling up to a bound.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// An owned copy of a consumed record.
struct Owned {
    offset: i64,
    timestamp: LogTime,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    trace: Option<TraceContext>,
}

pub struct Processor {
    config: ProcessorConfig,
    machine: Machine,
    store: Arc<Store>,
    consumer: BaseConsumer<GroupContext>,
    outputs: Outputs,
    ticker: Option<Ticker>,
    states: BTreeMap<i32, PartitionState>,
    commands_topic: String,
    /// Partitions of the commands topic, for the routing check.
    partitions: i32,
    metrics: Metrics,
    watchdog: Watchdog,
    /// Readiness (`/readyz`); the watchdog reports health on its own clone.
    health: Health,
    last_watch: Instant,
    /// Partitions stopped because applying a record broke an invariant (paused, never
    /// committed past that record) until they are revoked.
    halted: BTreeSet<i32>,
    /// Partitions being rebuilt from the changelog (paused meanwhile).
    restores: Restores,
    /// Whether the commands log is still the one a state was built from.
    history: HistoryCheck,
    /// Partitions whose state the log contradicted once: restored from the changelog;
    /// a second contradiction halts them.
    diverged: BTreeSet<i32>,
    /// The broker was away: check every loaded state against the log again.
    recheck_history: bool,
    /// Partitions whose changelog lost records their state wrote: once restored from it,
    /// they apply the commands after it again without waiting (`replay`).
    changelog_lost: BTreeSet<i32>,
    /// Partitions applying again the commands between their restored state and the
    /// committed offset: their first batch must start right after the state. Cleared by
    /// the first commit (the committed offset then matches the state again) and by a new
    /// restore (which is then judged afresh).
    replaying: BTreeSet<i32>,
    /// The coordinator's description of the group, looked at every few seconds.
    audit: crate::membership::Audit,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor").field("instance", &self.config.instance).finish_non_exhaustive()
    }
}

impl Processor {
    /// Open the store, start the producer (fencing any earlier incarnation of this
    /// instance), make the group consumer (it joins the group when `run` starts).
    /// Metrics are registered in `registry`.
    pub fn new(
        config: ProcessorConfig,
        registry: &prometheus::Registry,
    ) -> Result<Self, ProcessorError> {
        Self::with_health(config, registry, Health::new())
    }

    /// [`Processor::new`], reporting stalled and halted partitions to `health`.
    pub fn with_health(
        config: ProcessorConfig,
        registry: &prometheus::Registry,
        health: Health,
    ) -> Result<Self, ProcessorError> {
        config.machine.validate()?;
        config.check().map_err(ProcessorError::Settings)?;
        let metrics = Metrics::register(registry)?;
        let store =
            Store::open_with(&config.data_dir, config.sync_store, config.block_cache_bytes)?;
        let store = Arc::new(store);
        let commands_topic = config.topics.name(Topic::Commands);
        if config.require_log_append_time {
            broker::admin::check_log_append_time(&config.bootstrap, &commands_topic)
                .map_err(ProcessorError::Settings)?;
        }
        check_retention(&config)?;
        // The producer first: fencing the earlier producers of this instance aborts
        // whatever a crashed incarnation left open, before we read any committed offset.
        let mut outputs = Outputs::new(&config)?;
        // Subscribed in `run`, after the committed offsets are read (`group::member`).
        let consumer = crate::group::member(&config, &commands_topic)?;
        let partitions = broker::read::partition_count(&consumer, &commands_topic, config.timeout)?;
        // A predecessor on another disk (a rescheduled pod, a frozen zombie) is named in
        // the metadata of the offsets it committed.
        let mut all = TopicPartitionList::new();
        for p in 0..partitions {
            all.add_partition(&commands_topic, p);
        }
        // Best effort here: before a partition is applied its committed offset is read
        // again and whatever predecessor it names is fenced then (`ensure_state`).
        match consumer.committed_offsets(all, config.timeout) {
            Ok(committed) => {
                outputs.fence_predecessors(&committed)?;
            }
            Err(e) => {
                tracing::warn!(error = %e, "committed offsets not read at start; predecessors are fenced per partition")
            }
        }
        // Short: a check runs on the processing thread, and while the broker is away it
        // can only time out.
        let history = HistoryCheck::new(
            &config.bootstrap,
            &commands_topic,
            &config.topics.name(Topic::Changelog),
            config.timeout.min(Duration::from_secs(5)),
        )?;
        let ticker = match config.tick_interval {
            Some(every) => {
                Some(Ticker::new(&config.bootstrap, commands_topic.clone(), every, &config.format)?)
            }
            None => None,
        };
        tracing::info!(
            instance = %config.instance,
            transactional_id = %outputs.transactional_id(),
            delivery = ?config.delivery,
            "processor ready for group {}",
            config.group_id
        );
        Ok(Self {
            machine: Machine::new(config.machine),
            store: store.clone(),
            consumer,
            outputs,
            ticker,
            states: BTreeMap::new(),
            commands_topic,
            partitions,
            watchdog: Watchdog::new(config.stall_timeout, health.clone(), metrics.clone()),
            health,
            last_watch: Instant::now(),
            halted: BTreeSet::new(),
            history,
            diverged: BTreeSet::new(),
            recheck_history: false,
            changelog_lost: BTreeSet::new(),
            replaying: BTreeSet::new(),
            audit: crate::membership::Audit::new(config.group_patience),
            restores: Restores::new(
                restores::Source {
                    bootstrap: config.bootstrap.clone(),
                    changelog: config.topics.name(Topic::Changelog),
                    idle_timeout: config.timeout,
                    checkpoint_max_age: checkpoint_max_age(&config),
                },
                store.clone(),
                metrics.clone(),
            ),
            metrics,
            config,
        })
    }

    /// Process until `shutdown` is set. Returns an error only when the processor cannot
    /// go on (fenced, store failure); transaction failures are recovered from here.
    pub fn run(&mut self, shutdown: &AtomicBool) -> Result<(), ProcessorError> {
        if shutdown.load(Ordering::Relaxed) {
            tracing::info!(instance = %self.config.instance, "stopped before joining the group");
            return Ok(());
        }
        self.consumer.subscribe(&[&self.commands_topic])?;
        tracing::info!(instance = %self.config.instance, "subscribed; joining group {}", self.config.group_id);
        let mut backoff = BACKOFF_MIN;
        while !shutdown.load(Ordering::Relaxed) {
            self.tick();
            self.watch()?;
            self.resume_restored()?;
            let batch = match self.poll_batch() {
                Ok(batch) => batch,
                Err(ProcessorError::GroupFenced(reason)) => {
                    self.rejoin(&reason)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if batch.is_empty() {
                continue;
            }
            // Nothing is published on a state until it is checked against the logs the
            // broker came back with: a batch committed first would end the changelog with
            // the state's META even when the broker lost the batches before it.
            if self.recheck_history {
                self.recheck_history()?;
                if self.recheck_history {
                    self.rewind(batch.keys().copied())?;
                    continue;
                }
            }
            match self.process(&batch) {
                Ok(()) => backoff = BACKOFF_MIN,
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, ?backoff, "batch failed; rewinding and retrying");
                    self.rewind(batch.keys().copied())?;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(instance = %self.config.instance, "processor stopping");
        self.leave_group();
        Ok(())
    }

    /// Another member with our instance name took our place in the group. Which of us is
    /// the zombie is decided by the transactional id, not by the group: take the place
    /// back; if we are the older incarnation our next transaction is fenced and we stop
    /// (exit 3), and the newer one, fenced from the group meanwhile, takes it back again.
    fn rejoin(&mut self, reason: &str) -> Result<(), ProcessorError> {
        tracing::warn!(reason, "fenced from the group by our own instance name; rejoining");
        self.recreate_consumer()
    }

    /// A new consumer under the same instance name: it takes this member's place in the
    /// group and starts every partition from its committed offset. Safe between batches:
    /// the store holds exactly what was committed.
    fn recreate_consumer(&mut self) -> Result<(), ProcessorError> {
        // Restores go on: a restoring partition is paused again on the new consumer when
        // its records come, and cancelled if it is revoked.
        self.states.clear();
        // Halted partitions meet their record again and halt again; a stall stays
        // reported (and `/healthz` failing) until its partition moves.
        for p in std::mem::take(&mut self.halted) {
            let _ = self.metrics.halted.remove_label_values(&[&p.to_string()]);
            self.watchdog.unhalted(p);
        }
        self.consumer = crate::group::join(&self.config, &self.commands_topic)?;
        self.audit.reset();
        Ok(())
    }

    /// Every few seconds: the group as its coordinator describes it, against what this
    /// member holds (`membership`). Wrong for the group patience: rejoin (`true`).
    fn audit_group(&mut self, holds: &[i32]) -> Result<bool, ProcessorError> {
        let now = Instant::now();
        if !self.audit.due(now) {
            return Ok(false);
        }
        let view = crate::membership::describe(
            &self.consumer,
            &self.config.group_id,
            &self.commands_topic,
            self.config.timeout.min(Duration::from_secs(2)),
        );
        self.metrics.group_describe_seconds.observe(now.elapsed().as_secs_f64());
        let view = match view {
            Ok(Some(view)) => view,
            other => {
                // Not described, not in a form this reads (`None`), or no answer.
                tracing::debug!(error = ?other.err(), "the group could not be described");
                self.audit.skipped(now);
                return Ok(false);
            }
        };
        let holds: BTreeSet<i32> = holds.iter().copied().collect();
        let me = self.consumer.context().client_id();
        let finding = crate::membership::judge(&view, me, &holds, self.partitions);
        if let Some(finding) = &finding {
            tracing::debug!(%finding, ?view, "the group's description is wrong");
        }
        let Some(finding) = self.audit.record(now, finding) else { return Ok(false) };
        tracing::error!(
            %finding,
            ?view,
            patience = ?self.config.group_patience,
            "the group's coordinator has described the group wrongly for too long; rejoining"
        );
        self.metrics.group_rejoins.with_label_values(&[finding.kind()]).inc();
        self.recreate_consumer()?;
        Ok(true)
    }

    /// Once a second: compare every owned partition's position with where its log is
    /// known to end; a stalled partition is reported and the consumer recreated.
    fn watch(&mut self) -> Result<(), ProcessorError> {
        let since_last = self.last_watch.elapsed();
        if since_last < WATCH_EVERY {
            return Ok(());
        }
        self.last_watch = Instant::now();
        if self.recheck_history {
            self.recheck_history()?;
        }
        // The loop itself was busy (a restore, a slow commit, a backoff): that time is not
        // the fetcher's fault; no partition is blamed for it.
        if since_last > 2 * WATCH_EVERY {
            self.watchdog.loop_was_busy(since_last - WATCH_EVERY);
        }
        let assigned: Vec<i32> = match self.consumer.assignment() {
            Ok(tpl) => tpl.elements().iter().map(|e| e.partition()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "no assignment to watch");
                return Ok(());
            }
        };
        self.metrics.assigned_partitions.set(assigned.len() as i64);
        if self.audit_group(&assigned)? {
            return Ok(());
        }
        let restoring: Vec<i32> =
            assigned.iter().copied().filter(|p| self.restores.is_restoring(*p)).collect();
        self.health.set_ready(if !self.consumer.context().has_assignment() {
            Err("waiting for the group to assign partitions".into())
        } else if !restoring.is_empty() {
            Err(format!("restoring partitions {restoring:?} from the changelog"))
        } else {
            Ok(())
        });
        if let Ok(m) = self.store.memory() {
            for (kind, bytes) in [
                ("block_cache", m.block_cache),
                ("memtables", m.memtables),
                ("table_readers", m.table_readers),
            ] {
                self.metrics.store_memory.with_label_values(&[kind]).set(bytes as i64);
            }
        }
        self.metrics.cached_rows.set(self.states.values().map(|v| v.rows()).sum::<usize>() as i64);
        if assigned.is_empty() {
            // A recreated consumer has no assignment until it rejoins: keep what is known
            // (a stall stays reported); revoked partitions are forgotten on revocation.
            return Ok(());
        }
        // Halted and restoring partitions are not expected to move.
        let watched: Vec<i32> = assigned
            .into_iter()
            .filter(|p| !self.halted.contains(p) && !self.restores.is_restoring(*p))
            .collect();
        self.watchdog.retain(&watched);
        for &p in &watched {
            if !self.watchdog.watches(p) {
                let position = self.store.applied_offset(p)?.map(|a| a + 1);
                self.watchdog.assigned(p, position);
            }
        }
        let ends = self.ticker.as_ref().map(Ticker::log_ends).unwrap_or_default();
        let stalls = self.watchdog.check(&ends, &self.consumer.context().fetch_stats());
        if stalls.is_empty() {
            return Ok(());
        }
        for stall in &stalls {
            tracing::error!(
                partition = stall.partition,
                "partition stalled: {stall}; recreating the consumer"
            );
        }
        self.metrics.stall_recoveries.inc();
        self.recreate_consumer()
    }

    /// Hand the partitions over now. A static member (`group.instance.id`) sends no
    /// LeaveGroup when its consumer is closed, only when it unsubscribes; without this a
    /// stopped processor's partitions would wait for the session timeout (and forever
    /// on the dev broker, which never expires a member, BROKERS.md).
    fn leave_group(&mut self) {
        // Polls (what arrives is dropped; nothing of it is committed) for at most
        // `budget` while `more` holds.
        let poll_while =
            |budget: Duration, doing: &str, more: &dyn Fn(&BaseConsumer<GroupContext>) -> bool| {
                let until = Instant::now() + budget;
                while Instant::now() < until && more(&self.consumer) {
                    if let Some(Err(e)) = self.consumer.poll(Duration::from_millis(100)) {
                        tracing::debug!(error = %e, "while {doing}");
                    }
                }
            };
        // A member stopped while it is still joining finishes joining first: a leave sent
        // before the coordinator answered the join is lost, and the dev broker then keeps
        // the member for ever and the group's rebalance waits for it (BROKERS.md).
        poll_while(
            self.config.timeout.min(JOIN_BEFORE_LEAVING),
            "finishing the join before leaving",
            &|c| !c.context().has_assignment(),
        );
        // The leave has a time of its own: librdkafka sends LeaveGroup once the
        // revocation the unsubscribe starts has been served by a poll, and a consumer
        // closed before then leaves nothing behind but a member the group waits for (a
        // static member sends no LeaveGroup on close). A little more polling after the
        // assignment is empty lets the request go out.
        self.consumer.unsubscribe();
        poll_while(Duration::from_secs(5), "leaving the group", &|c| {
            c.assignment().is_ok_and(|a| a.count() > 0)
        });
        poll_while(Duration::from_millis(500), "leaving the group", &|_| true);
        self.states.clear();
        self.restores.cancel_all();
    }

    fn tick(&mut self) {
        let Some(ticker) = self.ticker.as_mut() else { return };
        if !ticker.due() {
            return;
        }
        let assigned: Vec<i32> = match self.consumer.assignment() {
            Ok(tpl) => tpl.elements().iter().map(|e| e.partition()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "no assignment to tick");
                return;
            }
        };
        let sent = ticker.tick(&assigned);
        self.metrics.ticks.inc_by(sent as u64);
    }

    /// A fatal consumer error ends the member: fenced from the group by a newer member
    /// with our instance name (this process is the zombie), or anything else fatal.
    fn check_fatal(&self) -> Result<(), ProcessorError> {
        match self.consumer.client().fatal_error() {
            None => Ok(()),
            Some((RDKafkaErrorCode::FencedInstanceId, reason)) => {
                Err(ProcessorError::GroupFenced(reason))
            }
            Some((_, reason)) => Err(ProcessorError::Consumer(reason)),
        }
    }

    fn poll_batch(&mut self) -> Result<BTreeMap<i32, Vec<Owned>>, ProcessorError> {
        self.check_fatal()?;
        let mut by_partition: BTreeMap<i32, Vec<Owned>> = BTreeMap::new();
        // Idle, return within 100 ms (ticks, shutdown). Once a record is in, wait up to
        // `batch_wait` for more, then take only what is already there: with a backlog a
        // batch fills to `batch_max` at once; with `batch_wait` 0 a batch is whatever
        // arrived during the previous commit.
        let started = Instant::now();
        let mut first: Option<Instant> = None;
        let mut n = 0;
        while n < self.config.batch_max {
            let timeout = match first {
                None => IDLE_POLL.saturating_sub(started.elapsed()),
                Some(at) => self.config.batch_wait.saturating_sub(at.elapsed()),
            };
            let Some(msg) = self.consumer.poll(timeout) else {
                break;
            };
            first.get_or_insert_with(Instant::now);
            let msg = match msg {
                Ok(msg) => msg,
                Err(e) => {
                    // Consumer errors (a broker away, a transport failure) are reports;
                    // librdkafka keeps retrying underneath. A fatal one ends the member.
                    self.check_fatal()?;
                    tracing::warn!(error = %e, "consumer error");
                    // The broker went away: when it is back, its log may no longer be
                    // the one the loaded states were built from (`history.rs`).
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::AllBrokersDown
                                | RDKafkaErrorCode::BrokerTransportFailure
                        )
                    ) {
                        self.recheck_history = true;
                    }
                    break;
                }
            };
            let timestamp = log_time(msg.timestamp()).unwrap_or(LogTime(0));
            by_partition.entry(msg.partition()).or_default().push(Owned {
                offset: msg.offset(),
                timestamp,
                key: msg.key().map(<[u8]>::to_vec),
                payload: msg.payload().map(<[u8]>::to_vec),
                trace: trace_of(&msg),
            });
            n += 1;
        }
        // Records of partitions revoked while we were polling belong to their new owner.
        let revoked = self.consumer.context().take_revoked();
        self.restores.cancel(&revoked.iter().copied().collect::<Vec<_>>());
        let owned: Vec<i32> = match (revoked.is_empty(), self.consumer.assignment()) {
            (false, Ok(tpl)) => tpl.elements().iter().map(|e| e.partition()).collect(),
            _ => Vec::new(),
        };
        for p in revoked {
            by_partition.remove(&p);
            self.states.remove(&p);
            // Revoked and assigned again within this poll: the consumer is past the records
            // just dropped. Back to the record after the store's state.
            if owned.contains(&p) {
                self.rewind(std::iter::once(p))?;
            }
            if self.halted.remove(&p) {
                let _ = self.metrics.halted.remove_label_values(&[&p.to_string()]);
            }
            self.diverged.remove(&p);
            self.changelog_lost.remove(&p);
            self.replaying.remove(&p);
            self.watchdog.forget(p);
        }
        for p in &self.halted {
            by_partition.remove(p);
        }
        Ok(by_partition)
    }

    fn process(&mut self, batch: &BTreeMap<i32, Vec<Owned>>) -> Result<(), ProcessorError> {
        let mut applied: Vec<Applied> = Vec::new();
        let mut spans: Vec<tracing::Span> = Vec::new();
        let mut commands = 0;
        for (partition, records) in batch {
            if !self.ensure_state(*partition)? {
                continue;
            }
            // A replay must not skip a command: records fetched before the seek start at
            // the committed offset, past the state. Back to the record after the state; if
            // the log no longer holds it, that is a gap.
            if self.replaying.contains(partition) {
                let from = self
                    .states
                    .get(partition)
                    .and_then(|s| s.applied_offset())
                    .map_or(0, |a| a + 1);
                if records.first().is_some_and(|r| r.offset > from) {
                    if let Ok(false) = self.history.holds(*partition, from) {
                        self.halt(
                            *partition,
                            format!("gap: the commands log no longer holds offset {from}, which the replay must apply"),
                        );
                    } else {
                        self.rewind(std::iter::once(*partition))?;
                    }
                    continue;
                }
            }
            let state =
                self.states.get_mut(partition).unwrap_or_else(|| unreachable!("loaded above"));
            // Records the store already holds (it can be ahead of the committed offset
            // after a restore) are not applied twice; but one of them that is newer than
            // the state's clock was never applied: the log changed under the state.
            let done = state.applied_offset();
            let clock = state.log_time();
            if let Some(why) = done.and_then(|applied| {
                records.iter().find_map(|r| replayed_record(r.offset, r.timestamp, applied, clock))
            }) && !self.diverged_from_log(*partition, done, clock, why)?
            {
                continue;
            }
            let state =
                self.states.get_mut(partition).unwrap_or_else(|| unreachable!("loaded above"));
            let ins: Vec<InRecord<'_>> = records
                .iter()
                .filter(|r| Some(r.offset) > done)
                .map(|r| InRecord {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.as_deref(),
                    payload: r.payload.as_deref(),
                    trace: r.trace,
                })
                .collect();
            // One span per traced command, from its apply to the commit of its batch
            // (dropped with `spans` at the end of this call). Untraced commands cost
            // nothing.
            spans.extend(ins.iter().filter_map(|r| {
                let trace = r.trace?;
                Some(tracing::info_span!(
                    "skuflow.apply",
                    trace_id = %trace.trace_hex(),
                    span_id = %topics::trace::to_hex(&apply_span_id(*partition, r.offset)),
                    parent_span_id = %trace.span_hex(),
                    partition = *partition,
                    offset = r.offset,
                ))
            }));
            if ins.is_empty() {
                continue;
            }
            let n = ins.len();
            let source = Source::Store(&self.store);
            match apply_routed(
                &self.machine,
                source,
                state,
                *partition,
                Some(self.partitions),
                &self.config.format,
                &ins,
            ) {
                Ok(a) => applied.push(a),
                Err(BatchError::Apply(broken @ ApplyError::InvariantBroken { .. })) => {
                    self.halt(*partition, format!("invariant broken: {broken}"));
                    continue;
                }
                Err(BatchError::Store(bad @ (StoreError::BadKey(_) | StoreError::BadValue(_)))) => {
                    self.halt(*partition, format!("undecodable store data: {bad}"));
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            commands += n;
        }
        if applied.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        match self.outputs.publish(&self.consumer, &applied) {
            Ok(spans) => {
                self.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
                // The cache bound is shared by the owned partitions.
                let per_view = self.config.cache_rows / self.states.len().max(1);
                for a in &applied {
                    // Past whatever contradiction it had: a new one restores again.
                    self.diverged.remove(&a.store.partition);
                    self.replaying.remove(&a.store.partition);
                    let checkpoint =
                        self.checkpoint_for(&a.store, spans.get(&a.store.partition))?;
                    self.store.write_at(&a.store, checkpoint)?;
                    if let Some(view) = self.states.get_mut(&a.store.partition) {
                        view.evict(per_view);
                    }
                    self.watchdog.advanced(a.store.partition, a.next_offset);
                }
                self.record_batch(commands, &applied);
                Ok(())
            }
            Err(failure) => {
                tracing::warn!(error = %failure, "publishing the batch failed; rewinding to the committed offsets");
                self.metrics.transaction_failures.with_label_values(&[failure.recovery()]).inc();
                self.outputs.recover(failure)?;
                self.rewind(batch.keys().copied())
            }
        }
    }

    /// The changelog offset to keep as the store's checkpoint with `batch` (its META's),
    /// or `None` (the checkpoint is removed): only when its records landed right after
    /// the store's current checkpoint, so that nothing another writer produced lies
    /// between (a zombie on a broker that does not fence it, or at-least-once delivery,
    /// which fences nothing). A chain broken (an aborted transaction's records between,
    /// a report missing) starts again at the partition's next restore.
    fn checkpoint_for(
        &self,
        batch: &state::store::Batch,
        span: Option<&crate::output::ChangelogSpan>,
    ) -> Result<Option<i64>, ProcessorError> {
        let Some(span) = span else { return Ok(None) };
        let Some(previous) = self.store.checkpoint(batch.partition)? else { return Ok(None) };
        let follows = span.follows(previous.offset, batch.changes.len(), self.config.delivery);
        Ok(follows.then_some(span.meta))
    }

    /// A partition nobody has applied yet: when its changelog partition is empty, the
    /// first batch's records will be the first there, and the store's checkpoints start
    /// with it (a checkpoint just before offset 0, which no restore uses). Otherwise
    /// they start at the partition's first restore.
    fn start_checkpoints(&self, partition: i32) -> Result<(), ProcessorError> {
        if self.store.checkpoint(partition)?.is_some() {
            return Ok(());
        }
        let changelog = self.config.topics.name(Topic::Changelog);
        match self.consumer.fetch_watermarks(&changelog, partition, self.config.timeout) {
            Ok((_, 0)) => {
                let before = -crate::output::ChangelogSpan::gap(self.config.delivery);
                let nothing = state::store::values::Meta { log_time: LogTime(0), applied: None };
                let start = state::store::values::Checkpoint::now(before, nothing);
                self.store.set_checkpoint(partition, start)?;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(partition, error = %e, "changelog watermarks unknown; checkpoints start at the next restore")
            }
        }
        Ok(())
    }

    /// `partition` cannot be applied safely: applying a record broke one of the machine's
    /// invariants (a bug, not bad input), or its state would resume past a gap. The
    /// partition stops here, before anything of it is committed: its half-changed state is
    /// dropped, it is paused, `/healthz` fails and a metric says so. The other partitions
    /// go on. A new owner (after a rebalance or restart) meets the same record or gap and
    /// stops the same way, so nothing wrong is ever written.
    fn halt(&mut self, partition: i32, reason: String) {
        tracing::error!(partition, "partition halted, nothing of it committed: {reason}");
        self.states.remove(&partition);
        self.halted.insert(partition);
        self.metrics.halted.with_label_values(&[partition.to_string()]).set(1);
        self.watchdog.halted(partition, reason);
        self.pause(partition);
    }

    fn record_batch(&self, commands: usize, applied: &[Applied]) {
        self.metrics.batch_commands.observe(commands as f64);
        self.metrics.applied.inc_by(commands as u64);
        for a in applied {
            self.metrics.dead_letters.inc_by(a.dead_lettered as u64);
            for reason in &a.rejections {
                self.metrics.rejections.with_label_values(&[reason]).inc();
            }
        }
    }

    /// Forget the in-memory state of `partitions` and seek each back to the record after
    /// the store's applied offset, which is the committed offset in every case that does
    /// not stop the processor (the store is written right after a commit), and needs no
    /// broker to look up. The next batch reloads the partitions (and restores one whose
    /// store does not match the committed offset).
    ///
    /// A seek that fails on a partition still owned would leave the consumer past records
    /// that were never committed: the consumer is then recreated, which starts every
    /// partition from its committed offset. (A partition revoked meanwhile cannot be
    /// sought, and needs not be: its new owner starts from the committed offset.)
    fn rewind(&mut self, partitions: impl Iterator<Item = i32>) -> Result<(), ProcessorError> {
        let owned: Vec<i32> = self
            .consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        let mut failed = false;
        for p in partitions {
            self.states.remove(&p);
            let offset = match self.store.applied_offset(p)? {
                Some(applied) => Offset::Offset(applied + 1),
                None => Offset::Beginning,
            };
            if !owned.contains(&p) {
                continue;
            }
            if let Err(err) =
                self.consumer.seek(&self.commands_topic, p, offset, self.config.timeout)
            {
                tracing::error!(partition = p, ?offset, error = %err, "seek back to the applied offset failed; recreating the consumer");
                failed = true;
            }
        }
        if failed {
            return self.recreate_consumer();
        }
        Ok(())
    }

    /// Make `partition`'s view ready, or say it is not (`false`: skip its records).
    ///
    /// When the store does not reflect exactly the committed offset (or holds an import
    /// cut short), the partition is paused and restored from the changelog on a thread of
    /// its own (`restores.rs`); its records wait. After a restore the state may be ahead
    /// of the committed offset (records it holds are not applied twice, see `process`);
    /// if it still ends *before* it, the restore is tried again after pauses that grow (a
    /// transaction still open on the changelog hides its end until it ends: a frozen
    /// predecessor's commits when it wakes, an abandoned one is aborted after the
    /// transaction timeout). Once `gap_patience` has passed (at once when this processor
    /// saw the changelog lose what its state wrote), the broker lost committed changelog
    /// records: applying from the committed offset would skip the commands in between (a
    /// gap), so they are applied again from the restored state (`replay`), or, when the
    /// commands log no longer holds them, the partition is halted. Nothing is skipped.
    fn ensure_state(&mut self, partition: i32) -> Result<bool, ProcessorError> {
        if self.states.contains_key(&partition) {
            return Ok(true);
        }
        if self.restores.is_restoring(partition) {
            // Records came: the consumer was recreated since the restore started.
            self.pause(partition);
            return Ok(false);
        }
        let tpl = self.one_partition(partition);
        let mut committed = self.consumer.committed_offsets(tpl.clone(), self.config.timeout)?;
        // A predecessor of this instance that committed here since we started is fenced
        // first; then the committed offset cannot move under us any more.
        if self.outputs.fence_predecessors(&committed)? > 0 {
            committed = self.consumer.committed_offsets(tpl, self.config.timeout)?;
        }
        let next = committed.find_partition(&self.commands_topic, partition).and_then(|e| match e
            .offset()
        {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
        let applied = self.store.applied_offset(partition)?;
        let incomplete = self.store.is_incomplete(partition)?;
        let resumes_at = applied.map_or(0, |a| a + 1);
        let behind = next.is_some_and(|n| resumes_at < n);
        let restored = self.restores.completed(partition);
        let mismatch = applied.map(|a| a + 1) != next || incomplete;
        let replaying = self.replaying.contains(&partition) && !incomplete;
        if mismatch && !replaying && (restored == 0 || behind || incomplete) {
            let waited = self.restores.since_first(partition);
            let patient = restored < MIN_RESTORES || waited < self.config.gap_patience;
            let lost = self.changelog_lost.contains(&partition);
            if behind && !incomplete && restored > 0 && (lost || !patient) {
                return self.replay(partition, resumes_at, next).map(|()| false);
            }
            if patient {
                // Again after a pause that grows: a transaction still open on the
                // changelog (a frozen predecessor's, which it commits when it wakes or
                // which the coordinator aborts after the transaction timeout) hides the
                // changelog's end until it ends.
                let delay =
                    RESTORE_PAUSE.saturating_mul(1 << restored.min(4)).min(MAX_RESTORE_PAUSE);
                let delay = if restored == 0 { Duration::ZERO } else { delay };
                self.start_restore(partition, applied, next, delay)?;
                return Ok(false);
            }
            self.halt(
                partition,
                format!(
                    "gap: after {restored} restores over {:.0} s the store's import is still \
                     incomplete at applied offset {applied:?} but the group committed offset {next:?}",
                    waited.as_secs_f64(),
                ),
            );
            return Ok(false);
        }
        self.restores.loaded(partition);
        if applied.is_none() && next.is_none() && !incomplete {
            self.start_checkpoints(partition)?;
        }
        match self.store.view(partition) {
            Ok(view) => {
                if let Some(applied) = view.applied_offset() {
                    match self.check_history(partition, applied, view.log_time())? {
                        Checked::Kept => {}
                        Checked::Dropped => return Ok(false),
                        Checked::Unknown(why) | Checked::Unverifiable(why) => tracing::warn!(
                            partition,
                            applied,
                            "could not check the state against the logs ({why}); loaded unchecked"
                        ),
                    }
                }
                self.states.insert(partition, view);
                Ok(true)
            }
            Err(bad @ (StoreError::BadKey(_) | StoreError::BadValue(_))) => {
                self.halt(partition, format!("undecodable store data: {bad}"));
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// After the broker was away: check each loaded state against the log. A check the
    /// broker cannot answer yet (still away) is tried again at the next watch.
    fn recheck_history(&mut self) -> Result<(), ProcessorError> {
        let loaded: Vec<(i32, i64, topics::LogTime)> = self
            .states
            .iter()
            .filter_map(|(p, s)| Some((*p, s.applied_offset()?, s.log_time())))
            .collect();
        let mut unknown = false;
        for (partition, applied, clock) in loaded {
            match self.check_history(partition, applied, clock)? {
                Checked::Unknown(why) => {
                    tracing::debug!(partition, "state not checked against the logs: {why}");
                    // Still away: the others would time out too.
                    unknown = true;
                    break;
                }
                // Asking again would not tell more: the state goes on unchecked.
                Checked::Unverifiable(why) => {
                    tracing::warn!(partition, "could not check the state against the logs: {why}");
                }
                Checked::Kept | Checked::Dropped => {}
            }
        }
        self.recheck_history = unknown;
        Ok(())
    }

    /// Check a state of `partition` against the commands log and the changelog
    /// (`history.rs`).
    fn check_history(
        &mut self,
        partition: i32,
        applied: i64,
        clock: topics::LogTime,
    ) -> Result<Checked, ProcessorError> {
        match self.history.verify_both(partition, applied, clock) {
            Verdict::Same => {
                self.diverged.remove(&partition);
                self.changelog_lost.remove(&partition);
                Ok(Checked::Kept)
            }
            Verdict::Diverged(why) => {
                Ok(match self.diverged_from_log(partition, Some(applied), clock, why)? {
                    true => Checked::Kept,
                    false => Checked::Dropped,
                })
            }
            Verdict::ChangelogAhead(why) => {
                tracing::info!(partition, "{why}; restoring the state from the changelog");
                self.restore_now(partition)?;
                Ok(Checked::Dropped)
            }
            Verdict::Changelog(why) => {
                self.metrics.changelog_losses.inc();
                self.changelog_lost.insert(partition);
                tracing::error!(
                    partition,
                    "the changelog is not the partition's state: {why}; restoring it from the \
                     changelog and applying the commands after it again"
                );
                self.restore_from_beginning(partition)?;
                Ok(Checked::Dropped)
            }
            Verdict::Unknown(why) => Ok(Checked::Unknown(why)),
            Verdict::Unverifiable(why) => Ok(Checked::Unverifiable(why)),
        }
    }

    /// `partition` was restored from a changelog that ends before the committed offset:
    /// the broker lost committed changelog records (or, past `gap_patience`, no
    /// transaction still open hides them). The commands from `from` (right after the
    /// restored state) up to the committed offset `next` were applied once already, on
    /// the state the changelog held before it lost them; applying them again on the
    /// restored state gives the same replies and events with the same ids, which
    /// consumers drop as duplicates. If the commands log no longer holds them, nothing
    /// can rebuild the state: the partition is halted rather than skip them.
    fn replay(
        &mut self,
        partition: i32,
        from: i64,
        next: Option<i64>,
    ) -> Result<(), ProcessorError> {
        match self.history.holds(partition, from) {
            Ok(true) => {
                let n = next.map_or(0, |n| (n - from).max(0));
                tracing::warn!(
                    partition,
                    from,
                    ?next,
                    "the changelog ends before the committed offset (the broker lost committed \
                     changelog records): applying the {n} commands from offset {from} again"
                );
                self.metrics.replayed.inc_by(n as u64);
                self.changelog_lost.remove(&partition);
                self.replaying.insert(partition);
                self.rewind(std::iter::once(partition))
            }
            Ok(false) => {
                self.halt(
                    partition,
                    format!(
                        "gap: the changelog ends before offset {from} but the group committed \
                         offset {next:?}, and the commands log no longer holds offset {from}: \
                         applying from the committed offset would skip commands. Restore the \
                         changelog or reset the group offset deliberately"
                    ),
                );
                Ok(())
            }
            Err(why) => {
                tracing::warn!(
                    partition,
                    "could not tell whether the commands log holds offset {from}: {why}"
                );
                let applied = self.store.applied_offset(partition)?;
                self.start_restore(partition, applied, next, RESTORE_PAUSE)
            }
        }
    }

    /// The commands log is no longer the one `partition`'s state was built from (the
    /// broker lost records the state applied and reused their offsets; `history.rs`).
    /// Returns whether the state is kept.
    ///
    /// The first time, the state is dropped and rebuilt from the changelog: applying on a
    /// state the changelog does not hold would write deltas onto a base the changelog
    /// lacks and mix two histories in it. The restored state *is* the changelog, so if
    /// the log contradicts it too (the broker lost more of the commands than of the
    /// changelog), it is kept: the records at reused offsets up to its applied offset are
    /// new commands the broker acknowledged after losing the old ones, and they are
    /// skipped like the rest of what the broker lost (their senders get no reply and
    /// retry under the same key, which lands after the state and is applied). What
    /// follows is applied on a state the changelog holds, so nothing is mixed.
    ///
    /// Kept only while the changelog still ends with this state: the broker can lose the
    /// changelog records a restore has just read (a restart right after it), and a state
    /// it no longer holds would write deltas onto a base the changelog lacks. Otherwise
    /// it is restored again, from the beginning.
    fn diverged_from_log(
        &mut self,
        partition: i32,
        applied: Option<i64>,
        clock: topics::LogTime,
        why: String,
    ) -> Result<bool, ProcessorError> {
        self.metrics.diverged.inc();
        if !self.diverged.insert(partition) {
            let changelog = match applied {
                Some(applied) => self.history.verify_changelog(partition, applied, clock),
                None => Verdict::Same,
            };
            if let Verdict::Same = changelog {
                tracing::warn!(
                    partition,
                    "the commands log contradicts the state restored from the changelog too: {why}. \
                     Keeping the changelog's state; commands at reused offsets up to its applied \
                     offset are skipped (the broker lost the ones the state applied)"
                );
                return Ok(true);
            }
            tracing::error!(
                partition,
                "the commands log contradicts the state restored from the changelog too ({why}), \
                 and the changelog no longer ends with that state ({changelog:?}): restoring it again"
            );
            self.restore_from_beginning(partition)?;
            return Ok(false);
        }
        tracing::error!(
            partition,
            "the commands log contradicts the partition's state: {why}; restoring it from the changelog"
        );
        self.restore_from_beginning(partition)?;
        Ok(false)
    }

    /// Drop `partition`'s state and rebuild it from the changelog at once.
    fn restore_now(&mut self, partition: i32) -> Result<(), ProcessorError> {
        self.states.remove(&partition);
        let applied = self.store.applied_offset(partition)?;
        self.start_restore(partition, applied, None, Duration::ZERO)
    }

    /// [`Processor::restore_now`] from the changelog's beginning, never from the store's
    /// checkpoint: for a state the logs contradicted, where it stands is what is in doubt.
    fn restore_from_beginning(&mut self, partition: i32) -> Result<(), ProcessorError> {
        self.store.forget_checkpoint(partition)?;
        self.restore_now(partition)
    }

    /// Pause `partition` and start rebuilding it from the changelog in the background,
    /// after `delay`.
    fn start_restore(
        &mut self,
        partition: i32,
        applied: Option<i64>,
        next: Option<i64>,
        delay: Duration,
    ) -> Result<(), ProcessorError> {
        tracing::info!(
            partition,
            ?applied,
            ?next,
            ?delay,
            "store does not match the committed offset; restoring from the changelog"
        );
        self.pause(partition);
        self.watchdog.forget(partition);
        self.replaying.remove(&partition);
        self.restores.start(partition, delay);
        Ok(())
    }

    /// Stop fetching `partition` (halted, or restoring). Records already polled are
    /// dropped by the caller; a failed pause only costs fetches.
    fn pause(&self, partition: i32) {
        if let Err(e) = self.consumer.pause(&self.one_partition(partition)) {
            tracing::warn!(partition, error = %e, "could not pause; its records are dropped as they come");
        }
    }

    fn one_partition(&self, partition: i32) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.commands_topic, partition);
        tpl
    }

    /// Partitions whose restore is over go on from the record after their state (a
    /// failed restore is tried again when their records come back).
    fn resume_restored(&mut self) -> Result<(), ProcessorError> {
        for (partition, ended) in self.restores.ended() {
            match ended {
                Ended::Restored(r) => {
                    let applied = self.store.applied_offset(partition)?;
                    tracing::info!(partition, records = r.records, bytes = r.bytes, elapsed = ?r.elapsed, after = ?r.after, ?applied, "restored");
                }
                Ended::Retry => {}
                Ended::GivenUp(why) => {
                    self.halt(partition, format!("restore: {why}"));
                    continue;
                }
            }
            self.rewind(std::iter::once(partition))?;
            if let Err(e) = self.consumer.resume(&self.one_partition(partition)) {
                tracing::warn!(partition, error = %e, "could not resume after the restore");
            }
        }
        Ok(())
    }
}

/// How long a member told to stop while it is still joining waits for the join to end,
/// so that it can leave. The dev broker answered a join sent during another member's
/// rebalance after 14 s (ci-processes, 2026-11-28); a member that gave up after 10 s left
/// without a member id, and the group waited for it for ever. With the leave's own 5.5 s
/// this stays under the chaos harness's 30 s and Kubernetes' 90 s grace.
const JOIN_BEFORE_LEAVING: Duration = Duration::from_secs(20);

/// Restores of one partition (at least, and for at least `gap_patience`) before a state
/// that still ends before the committed offset counts as a gap.
const MIN_RESTORES: u32 = 3;
/// The pause before the second restore; it doubles for each further one, up to
/// [`MAX_RESTORE_PAUSE`].
const RESTORE_PAUSE: Duration = Duration::from_millis(500);
const MAX_RESTORE_PAUSE: Duration = Duration::from_secs(8);

/// The idempotency window must fit in the commands topic's retention: the log is the
/// source of the state (a partition can be rebuilt by replaying it, and `skuflow audit`
/// does), and a replay that starts after commands were deleted would answer their
/// retries as new commands. Shorter: refuse to start. The replies topic's retention
/// bounds how long a client can poll for a reply: shorter only warns (a retry of the
/// command is still answered from its idempotency record).
fn check_retention(config: &ProcessorConfig) -> Result<(), ProcessorError> {
    let window = config.machine.dedup_window_ms;
    for topic in [Topic::Commands, Topic::Replies] {
        let name = config.topics.name(topic);
        let retention = match broker::admin::topic_config(&config.bootstrap, &name, "retention.ms")
        {
            Ok(Some(v)) => v.parse::<i64>().ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(topic = %name, error = %e, "could not read retention.ms; the idempotency window is not checked against it");
                continue;
            }
        };
        let Some(ms) = retention.filter(|ms| *ms >= 0 && (*ms as u64) < window) else {
            if retention.is_none() {
                tracing::warn!(topic = %name, "retention.ms not reported; the idempotency window ({window} ms) is not checked against it");
            }
            continue;
        };
        let why = format!(
            "topic {name} keeps records for retention.ms={ms}, less than the idempotency window \
             --idempotency-window-ms={window}"
        );
        if topic == Topic::Commands {
            return Err(ProcessorError::Settings(format!(
                "{why}: a replay of the log would answer retries of deleted commands as new ones. \
                 Raise the topic's retention.ms or shorten the window"
            )));
        }
        tracing::warn!("{why}: clients cannot poll for replies older than the topic keeps");
    }
    Ok(())
}

/// How old a store's checkpoint may be for a restore to read on from it
/// (`restore.rs`): half the changelog's `delete.retention.ms`, after which compaction
/// may remove a tombstone written after it. When the broker does not say, or
/// `restore_from_checkpoint` is off, zero: every restore reads the whole partition.
fn checkpoint_max_age(config: &ProcessorConfig) -> Duration {
    if !config.restore_from_checkpoint {
        return Duration::ZERO;
    }
    let name = config.topics.name(Topic::Changelog);
    match broker::admin::topic_config(&config.bootstrap, &name, "delete.retention.ms") {
        Ok(Some(v)) if let Ok(ms) = v.parse::<u64>() => Duration::from_millis(ms / 2),
        other => {
            tracing::warn!(topic = %name, answer = ?other, "delete.retention.ms not known: every restore reads the whole changelog partition");
            Duration::ZERO
        }
    }
}

/// The trace context a command record carries, if any (a header that does not parse is
/// ignored).
fn trace_of(msg: &rdkafka::message::BorrowedMessage<'_>) -> Option<TraceContext> {
    use rdkafka::message::Headers;
    let headers = msg.headers()?;
    headers
        .iter()
        .find(|h| h.key == TRACE_HEADER)
        .and_then(|h| h.value)
        .and_then(TraceContext::parse)
}

/// What checking a loaded state against the logs did with it.
enum Checked {
    Kept,
    /// Dropped, to be restored.
    Dropped,
    /// The broker could not say (it is away); why.
    Unknown(String),
    /// The logs cannot tell, and asking again soon would not help; why.
    Unverifiable(String),
}
