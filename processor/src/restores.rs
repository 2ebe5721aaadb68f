//! Restores running beside the apply loop, one thread per partition being rebuilt.
//!
//! A partition that needs a restore is paused and handed to a thread that streams its
//! changelog into the store ([`restore_partition`]); the loop goes on applying the other
//! partitions and polling the group (so a long restore never overruns
//! `max.poll.interval`). When the thread is done the loop seeks the partition to the
//! record after the restored state and resumes it. A failed restore (the broker away) is
//! tried again after [`RETRY_AFTER`]; a revoked partition's restore is cancelled and
//! joined before anything else touches its key range.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use state::store::Store;

use crate::metrics::Metrics;
use crate::restore::{Progress, RestoreError, Restored, restore_partition};

/// How long a partition whose restore failed waits before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Where the changelog is and how long a restore may see no record.
#[derive(Debug, Clone)]
pub struct Source {
    pub bootstrap: String,
    pub changelog: String,
    pub idle_timeout: Duration,
}

enum Job {
    Running { cancel: Arc<AtomicBool>, handle: JoinHandle<Result<Restored, RestoreError>> },
    Failed { retry_at: Instant },
}

/// What became of a restore that is over.
#[derive(Debug)]
pub enum Ended {
    Restored(Restored),
    /// Failed earlier and waited [`RETRY_AFTER`]: resume, and restore again if needed.
    Retry,
}

#[derive(Default)]
pub struct Restores {
    jobs: BTreeMap<i32, Job>,
    /// Completed restores per partition since its state was last loaded.
    completed: BTreeMap<i32, u32>,
}

impl std::fmt::Debug for Restores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restores").field("partitions", &self.jobs.keys()).finish()
    }
}

impl Restores {
    pub fn is_restoring(&self, partition: i32) -> bool {
        self.jobs.contains_key(&partition)
    }

    /// Restores of `partition` completed since its state was last loaded.
    pub fn completed(&self, partition: i32) -> u32 {
        self.completed.get(&partition).copied().unwrap_or(0)
    }

    /// The partition's state is loaded: its restores are history.
    pub fn loaded(&mut self, partition: i32) {
        self.completed.remove(&partition);
    }

    /// Start restoring `partition` on a thread of its own.
    pub fn start(
        &mut self,
        partition: i32,
        source: &Source,
        store: Arc<Store>,
        metrics: &Metrics,
    ) -> std::io::Result<()> {
        let label = [partition.to_string()];
        let gauges = (
            metrics.restore_records.with_label_values(&label),
            metrics.restore_bytes.with_label_values(&label),
            metrics.restore_remaining.with_label_values(&label),
            metrics.restore_rate.with_label_values(&label),
            metrics.restoring.with_label_values(&label),
        );
        gauges.4.set(1);
        let cancel = Arc::new(AtomicBool::new(false));
        let (source, stop) = (source.clone(), cancel.clone());
        let handle =
            std::thread::Builder::new().name(format!("restore-{partition}")).spawn(move || {
                let (records, bytes, remaining, rate, restoring) = gauges;
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
                let result = restore_partition(
                    &source.bootstrap,
                    &source.changelog,
                    partition,
                    &store,
                    source.idle_timeout,
                    &stop,
                    &mut report,
                );
                restoring.set(0);
                result
            })?;
        self.jobs.insert(partition, Job::Running { cancel, handle });
        Ok(())
    }

    /// Restores that are over: finished (successfully or not) or waited out after a
    /// failure. Failures are logged and turned into a wait.
    pub fn ended(&mut self, metrics: &Metrics) -> Vec<(i32, Ended)> {
        let now = Instant::now();
        let over: Vec<i32> = self
            .jobs
            .iter()
            .filter(|(_, job)| match job {
                Job::Running { handle, .. } => handle.is_finished(),
                Job::Failed { retry_at } => *retry_at <= now,
            })
            .map(|(p, _)| *p)
            .collect();
        let mut out = Vec::new();
        for p in over {
            match self.jobs.remove(&p) {
                Some(Job::Running { handle, .. }) => match handle.join() {
                    Ok(Ok(restored)) => {
                        metrics.restores.inc();
                        *self.completed.entry(p).or_default() += 1;
                        out.push((p, Ended::Restored(restored)));
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(partition = p, error = %e, retry_in = ?RETRY_AFTER, "restore failed");
                        self.jobs.insert(p, Job::Failed { retry_at: now + RETRY_AFTER });
                    }
                    Err(_) => {
                        tracing::error!(partition = p, retry_in = ?RETRY_AFTER, "restore thread panicked");
                        self.jobs.insert(p, Job::Failed { retry_at: now + RETRY_AFTER });
                    }
                },
                Some(Job::Failed { .. }) => out.push((p, Ended::Retry)),
                None => {}
            }
        }
        out
    }

    /// Stop restoring `partition` (revoked) and wait for its thread: nothing may touch its
    /// key range while the thread still writes. The partition is left without META.
    pub fn cancel(&mut self, partition: i32) {
        self.completed.remove(&partition);
        if let Some(Job::Running { cancel, handle }) = self.jobs.remove(&partition) {
            cancel.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }

    pub fn cancel_all(&mut self) {
        let partitions: Vec<i32> = self.jobs.keys().copied().collect();
        for p in partitions {
            self.cancel(p);
        }
        self.completed.clear();
    }
}
