//! The progress watchdog: a processor that has work and does not do it must say so.
//!
//! For every owned partition it compares two things that do not come from the same
//! place: where the processor is (one past its applied offset) and where the partition's
//! log is known to end (the last tick this processor appended there, delivered and
//! acknowledged by the broker, and the last stable offset librdkafka's fetcher saw).
//! When the log is ahead and the processor's position has not moved for `stall_after`,
//! the partition is **stalled**: an error is logged naming what the fetcher reports
//! (fetch state, its next offset, what it holds queued, the last stable offset), the
//! `skuflow_processor_seconds_since_progress` gauge shows it, `/healthz` fails, and the
//! processor recovers in place by recreating its consumer, which is safe at any point
//! between batches: the store holds exactly what was committed, and the new consumer
//! starts from the committed offsets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::group::FetchStats;
use crate::health::Health;
use crate::metrics::Metrics;

/// One partition's progress.
#[derive(Debug, Clone)]
struct Progress {
    /// One past the last applied offset (`None`: not known yet).
    position: Option<i64>,
    /// When `position` last moved, or the partition was taken over.
    since: Instant,
    /// When the stall was last reported (and recovery tried), while it lasts.
    reported: Option<Instant>,
}

/// A partition found stalled, with what the fetcher said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    pub partition: i32,
    pub position: Option<i64>,
    pub log_end: i64,
    pub idle: Duration,
    pub fetch: Option<FetchStats>,
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let position = self.position.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        write!(
            f,
            "no progress for {:.0?}: next offset to apply {position}, log ends at {}",
            self.idle, self.log_end
        )?;
        match &self.fetch {
            Some(s) => write!(
                f,
                "; fetcher: state {}, next offset {}, handed out up to {}, {} queued, last stable offset {}, high watermark {}",
                s.fetch_state, s.next_offset, s.app_offset, s.fetchq_cnt, s.ls_offset, s.hi_offset
            ),
            None => write!(f, "; librdkafka reports no fetch statistics for it"),
        }
    }
}

#[derive(Debug)]
pub struct Watchdog {
    stall_after: Duration,
    partitions: BTreeMap<i32, Progress>,
    health: Health,
    metrics: Metrics,
}

impl Watchdog {
    pub fn new(stall_after: Duration, health: Health, metrics: Metrics) -> Self {
        Self { stall_after, partitions: BTreeMap::new(), health, metrics }
    }

    /// The processor now owns `partition` and stands at `position`.
    pub fn assigned(&mut self, partition: i32, position: Option<i64>) {
        self.partitions
            .insert(partition, Progress { position, since: Instant::now(), reported: None });
    }

    pub fn watches(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// `partition` is halted: not watched, unhealthy for `why` until it is revoked.
    pub fn halted(&mut self, partition: i32, why: String) {
        self.partitions.remove(&partition);
        self.remove_labels(partition);
        self.health.set(partition, format!("halted: {why}"));
    }

    /// The processor's position in `partition` moved to `position`.
    pub fn advanced(&mut self, partition: i32, position: i64) {
        let p = self.partitions.entry(partition).or_insert(Progress {
            position: None,
            since: Instant::now(),
            reported: None,
        });
        if p.position.is_none_or(|old| position > old) {
            p.position = Some(position);
            p.since = Instant::now();
            if p.reported.take().is_some() {
                self.health.clear(partition);
                tracing::info!(partition, position, "partition makes progress again");
            }
        }
    }

    /// Forget partitions no longer owned.
    pub fn retain(&mut self, owned: &[i32]) {
        let gone: Vec<i32> =
            self.partitions.keys().copied().filter(|p| !owned.contains(p)).collect();
        for p in gone {
            self.forget(p);
        }
    }

    /// `partition` is no longer this processor's (revoked): no progress kept, no problem
    /// reported, no metric left behind.
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        self.health.clear(partition);
        self.remove_labels(partition);
    }

    fn remove_labels(&self, partition: i32) {
        let label = [partition.to_string()];
        let _ = self.metrics.seconds_since_progress.remove_label_values(&[&label[0]]);
        let _ = self.metrics.lag.remove_label_values(&[&label[0]]);
    }

    /// The processor's loop did nothing else for `busy` (a restore, a slow commit): the
    /// idle clocks move forward by that much.
    pub fn loop_was_busy(&mut self, busy: Duration) {
        let now = Instant::now();
        for p in self.partitions.values_mut() {
            p.since = (p.since + busy).min(now);
        }
    }

    /// `partition` is no longer halted (the consumer was recreated): healthy until proven
    /// otherwise.
    pub fn unhalted(&mut self, partition: i32) {
        self.health.clear(partition);
    }

    /// Check every owned partition against where its log is known to end; returns the
    /// partitions stalled for `stall_after`: each stall once, and again every
    /// `stall_after` while it lasts (so recovery is tried again). `/healthz` fails until
    /// the partition moves.
    pub fn check(
        &mut self,
        log_ends: &BTreeMap<i32, i64>,
        fetch: &BTreeMap<i32, FetchStats>,
    ) -> Vec<Stall> {
        let mut stalls = Vec::new();
        for (&partition, progress) in &mut self.partitions {
            let stats = fetch.get(&partition);
            let ls = stats.map(|s| s.ls_offset).filter(|o| *o >= 0);
            let end = log_ends.get(&partition).copied().max(ls);
            let label = [partition.to_string()];
            let pending = match (end, progress.position) {
                (Some(end), Some(pos)) => end - pos,
                (Some(end), None) => end,
                (None, _) => 0,
            };
            self.metrics.lag.with_label_values(&label).set(pending.max(0));
            let idle = if pending > 0 { progress.since.elapsed() } else { Duration::ZERO };
            if pending <= 0 {
                // Nothing to do counts as progress: the clock starts when work appears.
                progress.since = Instant::now();
                if progress.reported.take().is_some() {
                    self.health.clear(partition);
                }
            }
            self.metrics.seconds_since_progress.with_label_values(&label).set(idle.as_secs_f64());
            let again = progress.reported.is_none_or(|at| at.elapsed() >= self.stall_after);
            if pending <= 0 || idle < self.stall_after || !again {
                continue;
            }
            progress.reported = Some(Instant::now());
            let stall = Stall {
                partition,
                position: progress.position,
                log_end: end.unwrap_or_default(),
                idle,
                fetch: stats.cloned(),
            };
            self.health.set(partition, format!("stalled: {stall}"));
            self.metrics.stalls.inc();
            stalls.push(stall);
        }
        stalls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dog(stall_after: Duration) -> (Watchdog, Health) {
        let health = Health::new();
        let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
        (Watchdog::new(stall_after, health.clone(), metrics), health)
    }

    #[test]
    fn work_waiting_without_progress_is_a_stall_and_fails_health() {
        let (mut w, health) = dog(Duration::ZERO);
        w.assigned(0, Some(10));
        w.assigned(1, Some(5));
        let ends = BTreeMap::from([(0, 12), (1, 5)]);
        let stalls = w.check(&ends, &BTreeMap::new());
        assert_eq!(stalls.len(), 1, "{stalls:?}");
        assert_eq!((stalls[0].partition, stalls[0].log_end), (0, 12));
        let why = health.check().unwrap_err();
        assert!(why.contains("partition 0: stalled"), "{why}");
        let mut later = Watchdog::new(Duration::from_secs(3600), health.clone(), w.metrics.clone());
        later.partitions = w.partitions.clone();
        assert!(later.check(&ends, &BTreeMap::new()).is_empty(), "reported once per stall_after");
        assert!(health.check().is_err(), "still unhealthy");
        w.advanced(0, 12);
        assert_eq!(health.check(), Ok(()));
    }

    #[test]
    fn nothing_to_do_is_never_a_stall() {
        let (mut w, health) = dog(Duration::ZERO);
        w.assigned(0, Some(10));
        let stats = FetchStats { ls_offset: 10, ..FetchStats::default() };
        assert!(w.check(&BTreeMap::from([(0, 9)]), &BTreeMap::from([(0, stats)])).is_empty());
        assert_eq!(health.check(), Ok(()));
    }

    #[test]
    fn a_stall_waits_for_the_configured_time() {
        let (mut w, health) = dog(Duration::from_secs(3600));
        w.assigned(0, None);
        assert!(w.check(&BTreeMap::from([(0, 1)]), &BTreeMap::new()).is_empty());
        assert_eq!(health.check(), Ok(()));
    }
}
