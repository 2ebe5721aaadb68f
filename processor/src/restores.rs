//! Restores running beside the apply loop, one thread per partition being rebuilt.
//!
//! A partition that needs a restore is paused and handed to a thread that streams its
//! changelog into the store ([`restore_partition`]); the loop goes on applying the other
//! partitions and polling the group (so a long restore never overruns
//! `max.poll.interval`). When the thread is done the loop seeks the partition to the
//! record after the restored state and resumes it. A failed restore (the broker away) is
//! tried again after [`RETRY_AFTER`], and after [`MAX_FAILURES`] failures in a row the
//! partition is given up (the processor halts it, `/healthz` says why). At most
//! [`MAX_RUNNING`] restores run at once (each holds a consumer and its fetch buffers);
//! the others wait their turn, paused. A revoked partition's restore is cancelled and
//! joined before anything else touches its key range.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use state::store::Store;

use crate::metrics::Metrics;
pub use crate::restore::Source;
use crate::restore::{Progress, RestoreError, Restored, restore_partition};

/// How long a partition whose restore failed waits before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Failed restores of one partition in a row before it is given up.
pub const MAX_FAILURES: u32 = 5;
/// Restores running at once; the others queue.
pub const MAX_RUNNING: usize = 2;

enum Job {
    /// Waiting for a slot, and for `not_before` (a restore tried again after a pause).
    Queued {
        not_before: Instant,
    },
    Running {
        cancel: Arc<AtomicBool>,
        handle: JoinHandle<Result<Restored, RestoreError>>,
    },
    Failed {
        retry_at: Instant,
    },
}

/// What became of a restore that is over.
#[derive(Debug)]
pub enum Ended {
    Restored(Restored),
    /// Failed earlier and waited [`RETRY_AFTER`]: resume, and restore again if needed.
    Retry,
    /// Failed [`MAX_FAILURES`] times in a row: why.
    GivenUp(String),
}

pub struct Restores {
    jobs: BTreeMap<i32, Job>,
    /// Completed restores per partition since its state was last loaded.
    completed: BTreeMap<i32, u32>,
    /// When the first of those completed.
    first_completed: BTreeMap<i32, Instant>,
    /// Failed restores in a row per partition.
    failures: BTreeMap<i32, u32>,
    source: Source,
    store: Arc<Store>,
    metrics: Metrics,
}

impl std::fmt::Debug for Restores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restores").field("partitions", &self.jobs.keys()).finish()
    }
}

impl Restores {
    pub fn new(source: Source, store: Arc<Store>, metrics: Metrics) -> Self {
        Self {
            jobs: BTreeMap::new(),
            completed: BTreeMap::new(),
            first_completed: BTreeMap::new(),
            failures: BTreeMap::new(),
            source,
            store,
            metrics,
        }
    }

    pub fn is_restoring(&self, partition: i32) -> bool {
        self.jobs.contains_key(&partition)
    }

    /// Restores of `partition` completed since its state was last loaded.
    pub fn completed(&self, partition: i32) -> u32 {
        self.completed.get(&partition).copied().unwrap_or(0)
    }

    /// How long ago the first restore of `partition` since its state was last loaded
    /// completed (zero when none has).
    pub fn since_first(&self, partition: i32) -> Duration {
        self.first_completed.get(&partition).map_or(Duration::ZERO, Instant::elapsed)
    }

    /// The partition's state is loaded: its restores are history.
    pub fn loaded(&mut self, partition: i32) {
        self.completed.remove(&partition);
        self.first_completed.remove(&partition);
        self.failures.remove(&partition);
    }

    /// Restore `partition` once `delay` has passed: then if fewer than [`MAX_RUNNING`]
    /// run, else when one ends.
    pub fn start(&mut self, partition: i32, delay: Duration) {
        self.gauge_restoring(partition, 1);
        self.jobs.insert(partition, Job::Queued { not_before: Instant::now() + delay });
        self.start_queued();
    }

    fn start_queued(&mut self) {
        let now = Instant::now();
        let queued: Vec<i32> = self
            .jobs
            .iter()
            .filter(|(_, j)| matches!(j, Job::Queued { not_before } if *not_before <= now))
            .map(|(p, _)| *p)
            .collect();
        for p in queued {
            let running = self.jobs.values().filter(|j| matches!(j, Job::Running { .. })).count();
            if running >= MAX_RUNNING {
                return;
            }
            let job = self.spawn(p).unwrap_or_else(|e| {
                tracing::warn!(partition = p, error = %e, retry_in = ?RETRY_AFTER, "cannot start a restore thread");
                Job::Failed { retry_at: Instant::now() + RETRY_AFTER }
            });
            self.jobs.insert(p, job);
        }
    }

    /// A thread restoring `partition`, reporting its progress to the metrics and the log.
    fn spawn(&self, partition: i32) -> std::io::Result<Job> {
        let label = [partition.to_string()];
        let m = &self.metrics;
        let gauges = (
            m.restore_records.with_label_values(&label),
            m.restore_bytes.with_label_values(&label),
            m.restore_remaining.with_label_values(&label),
            m.restore_rate.with_label_values(&label),
        );
        let cancel = Arc::new(AtomicBool::new(false));
        let (source, store, stop) = (self.source.clone(), self.store.clone(), cancel.clone());
        let thread = std::thread::Builder::new().name(format!("restore-{partition}"));
        let handle = thread.spawn(move || {
            let (records, bytes, remaining, rate) = gauges;
            let mut report = |p: &Progress| {
                records.set(p.records as i64);
                bytes.set(p.bytes as i64);
                remaining.set(p.remaining as i64);
                rate.set(p.rate);
                tracing::info!(
                    partition = p.partition,
                    records = p.records,
                    bytes = p.bytes,
                    rate = format!("{:.0}/s", p.rate),
                    remaining = p.remaining,
                    done = p.done,
                    "restoring"
                );
            };
            restore_partition(&source, partition, &store, &stop, &mut report)
        })?;
        Ok(Job::Running { cancel, handle })
    }

    /// Restores that are over: finished (successfully or not) or waited out after a
    /// failure. Failures are logged and turned into a wait, or given up after
    /// [`MAX_FAILURES`] in a row. Queued restores start as running ones end.
    pub fn ended(&mut self) -> Vec<(i32, Ended)> {
        let now = Instant::now();
        let over: Vec<i32> = self
            .jobs
            .iter()
            .filter(|(_, job)| match job {
                Job::Queued { .. } => false,
                Job::Running { handle, .. } => handle.is_finished(),
                Job::Failed { retry_at } => *retry_at <= now,
            })
            .map(|(p, _)| *p)
            .collect();
        let mut out = Vec::new();
        for p in over {
            match self.jobs.remove(&p) {
                Some(Job::Running { handle, .. }) => {
                    let error = match handle.join() {
                        Ok(Ok(restored)) => {
                            let from = match restored.after {
                                Some(_) => "checkpoint",
                                None => "beginning",
                            };
                            self.metrics.restores.with_label_values(&[from]).inc();
                            self.failures.remove(&p);
                            *self.completed.entry(p).or_default() += 1;
                            self.first_completed.entry(p).or_insert(now);
                            self.gauge_restoring(p, 0);
                            out.push((p, Ended::Restored(restored)));
                            continue;
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "the restore thread panicked".to_owned(),
                    };
                    let failures = self.failures.entry(p).or_default();
                    *failures += 1;
                    if *failures >= MAX_FAILURES {
                        self.failures.remove(&p);
                        self.gauge_restoring(p, 0);
                        let why =
                            format!("{MAX_FAILURES} restores failed in a row, the last: {error}");
                        out.push((p, Ended::GivenUp(why)));
                        continue;
                    }
                    tracing::warn!(partition = p, error, retry_in = ?RETRY_AFTER, "restore failed");
                    self.jobs.insert(p, Job::Failed { retry_at: now + RETRY_AFTER });
                }
                Some(Job::Failed { .. }) => {
                    self.gauge_restoring(p, 0);
                    out.push((p, Ended::Retry));
                }
                Some(Job::Queued { .. }) | None => {}
            }
        }
        self.start_queued();
        out
    }

    fn gauge_restoring(&self, partition: i32, value: i64) {
        self.metrics.restoring.with_label_values(&[partition.to_string()]).set(value);
    }

    /// Stop restoring `partitions` (revoked, or the processor stopping) and wait for
    /// their threads: nothing may touch a key range while its thread still writes. Every
    /// thread is told first, then joined, so they stop together. A cancelled partition is
    /// left without META, and its restore metrics go.
    pub fn cancel(&mut self, partitions: &[i32]) {
        let mut stopping = Vec::new();
        for p in partitions {
            self.completed.remove(p);
            self.failures.remove(p);
            if let Some(Job::Running { cancel, handle }) = self.jobs.remove(p) {
                cancel.store(true, Ordering::Relaxed);
                stopping.push(handle);
            }
            let label = [p.to_string()];
            let m = &self.metrics;
            for gauge in [&m.restoring, &m.restore_records, &m.restore_bytes, &m.restore_remaining]
            {
                let _ = gauge.remove_label_values(&label);
            }
            let _ = m.restore_rate.remove_label_values(&label);
        }
        for handle in stopping {
            let _ = handle.join();
        }
        self.start_queued();
    }

    pub fn cancel_all(&mut self) {
        let partitions: Vec<i32> = self.jobs.keys().copied().collect();
        self.cancel(&partitions);
    }
}
