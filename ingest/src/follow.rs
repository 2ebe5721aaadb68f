//! Following topics (read_committed) on a thread of their own, each from its beginning or
//! from its end, feeding every record to its topic's [`View`] and publishing how far each
//! partition has been read, so a request can wait for a view to reach a position, and
//! whether every partition has caught up with where it ended when the follower started
//! (the API's readiness). [`crate::Ingest`] follows the replies topic from its end into
//! its reply cache; the API adds the availability and events topics, from the beginning,
//! to the same consumer ([`crate::Ingest::with_follows`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

/// Something a followed topic's records are applied to.
pub trait View: Send + Sync + 'static {
    /// Apply one record; a record it cannot decode is an error, which the follower
    /// logs and counts before it goes on (the view stays as it was).
    fn apply(
        &self,
        partition: i32,
        payload: Option<&[u8]>,
    ) -> Result<(), topics::codec::DecodeError>;
}

/// Per partition: the next offset to read (everything below has been applied).
pub type Progress = watch::Receiver<Vec<i64>>;

/// One topic to follow: where to start, the view its records feed, and who hears of a
/// record the view could not decode.
pub struct Follow {
    pub topic: String,
    /// `Offset::Beginning` or `Offset::End`.
    pub from: Offset,
    pub view: Arc<dyn View>,
    pub on_undecodable: Box<dyn Fn() + Send>,
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow")
            .field("topic", &self.topic)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// One followed topic: its progress, which partitions have caught up, and queries of
/// partition ends. Every topic of one [`Follower::start`] is read by one consumer on one
/// thread (one fetching client instead of one per topic: each costs a broker connection
/// and, on a broker that answers empty fetches at once, a busy fetch loop); the thread
/// stops when the last of them is dropped.
#[derive(Clone)]
pub struct Follower {
    /// Per partition: it has caught up with where it ended when the follower started.
    reached_end: Arc<Vec<AtomicBool>>,
    progress: Progress,
    probe: Arc<Probe>,
    topic: String,
    _running: Arc<Running>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower").field("topic", &self.topic).finish_non_exhaustive()
    }
}

/// For high-watermark queries (what "caught up" means right now), made on first use.
struct Probe {
    consumer: OnceLock<BaseConsumer>,
    bootstrap: String,
}

/// The follower thread; stopped and joined when dropped.
struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// librdkafka's statistics of the follower's consumer, as far as catching up needs them:
/// per topic and partition, the next offset to fetch, and whether anything fetched is
/// still waiting to be handed out. Called on the follower thread (during `poll`), in
/// order with the records.
#[derive(Default)]
struct FollowContext {
    fetched: Mutex<HashMap<(String, i32), Fetched>>,
}

#[derive(Debug, Clone, Copy)]
struct Fetched {
    next_offset: i64,
    /// Records fetched and not yet handed out (across the consumer's partitions).
    queued: i64,
}

impl ClientContext for FollowContext {
    /// Quiet about partition ends: this consumer asks for them to know when it caught up.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        broker::client::log_client_error(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let mut fetched = self.fetched.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, t) in &statistics.topics {
            for (p, partition) in t.partitions.iter().filter(|(p, _)| **p >= 0) {
                fetched.insert(
                    (topic.clone(), *p),
                    Fetched { next_offset: partition.next_offset, queued: partition.fetchq_cnt },
                );
            }
        }
    }
}

impl ConsumerContext for FollowContext {}

type FollowConsumer = BaseConsumer<FollowContext>;

/// What the follower thread keeps of one topic.
struct Followed {
    topic: String,
    view: Arc<dyn View>,
    on_undecodable: Box<dyn Fn() + Send>,
    progress: watch::Sender<Vec<i64>>,
    reached_end: Arc<Vec<AtomicBool>>,
    /// Per partition: its end when the follower started (the last stable offset: the
    /// query is read_committed); reaching it is catching up.
    start_ends: Vec<i64>,
}

impl Follower {
    /// Follow `follows` with one consumer named after consumer group `group` (used for
    /// nothing but the client's name: partitions are assigned, not subscribed). One
    /// handle per topic, in the order given. Blocking (metadata and end queries).
    pub fn start<const N: usize>(
        bootstrap: &str,
        group: &str,
        follows: [Follow; N],
    ) -> Result<[Self; N], crate::IngestError> {
        let handles = spawn(bootstrap, group, follows.into_iter().collect())?;
        Ok(std::array::from_fn(|i| handles[i].clone()))
    }

    /// [`Follower::start`] with `first` ahead of `follows`, returned apart.
    pub fn start_with<const N: usize>(
        bootstrap: &str,
        group: &str,
        first: Follow,
        follows: [Follow; N],
    ) -> Result<(Self, [Self; N]), crate::IngestError> {
        let handles = spawn(bootstrap, group, std::iter::once(first).chain(follows).collect())?;
        Ok((handles[0].clone(), std::array::from_fn(|i| handles[i + 1].clone())))
    }

    /// Partitions of the followed topic (0: it did not exist when the follower started).
    pub fn partitions(&self) -> usize {
        self.reached_end.len()
    }

    /// Partitions that have not caught up yet with where they ended at the start.
    pub fn behind(&self) -> Vec<i32> {
        (0..self.reached_end.len())
            .filter(|&p| !self.reached_end[p].load(Ordering::Relaxed))
            .map(|p| p as i32)
            .collect()
    }

    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// The followed topic's partition end as read_committed readers see it now (blocking).
    pub fn end(&self, partition: i32) -> Result<i64, KafkaError> {
        self.end_of(&self.topic, partition)
    }

    /// The end of a partition of another topic (blocking).
    pub fn end_of(&self, topic: &str, partition: i32) -> Result<i64, KafkaError> {
        let probe = match self.probe.consumer.get() {
            Some(p) => p,
            None => {
                let made = broker::client::consumer_config(&self.probe.bootstrap, "skuflow-probe")
                    .create()?;
                self.probe.consumer.get_or_init(|| made)
            }
        };
        let (_, high) = probe.fetch_watermarks(topic, partition, Duration::from_secs(5))?;
        Ok(high)
    }
}

/// One consumer and thread for `follows`; a handle per topic, in order.
fn spawn(
    bootstrap: &str,
    group: &str,
    follows: Vec<Follow>,
) -> Result<Vec<Follower>, crate::IngestError> {
    let consumer = FollowConsumer::from_config_and_context(
        broker::client::consumer_config(bootstrap, group)
            .set("enable.partition.eof", "true")
            .set("statistics.interval.ms", "1000"),
        FollowContext::default(),
    )?;
    let mut tpl = TopicPartitionList::new();
    let mut followed = Vec::with_capacity(follows.len());
    let mut handles = Vec::with_capacity(follows.len());
    for f in follows {
        let metadata = consumer.fetch_metadata(Some(&f.topic), Duration::from_secs(10))?;
        let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
        let mut start_ends = Vec::with_capacity(partitions);
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(&f.topic, p, f.from)?;
            // From the end there is nothing to catch up with.
            start_ends.push(match f.from {
                Offset::End => 0,
                _ => consumer.fetch_watermarks(&f.topic, p, Duration::from_secs(10))?.1,
            });
        }
        let (tx, progress) = watch::channel(vec![0; partitions]);
        // A partition empty at the start (or followed from its end) has nothing to
        // catch up with.
        let reached_end: Arc<Vec<AtomicBool>> =
            Arc::new(start_ends.iter().map(|&end| AtomicBool::new(end == 0)).collect());
        handles.push((f.topic.clone(), reached_end.clone(), progress));
        followed.push(Followed {
            topic: f.topic,
            view: f.view,
            on_undecodable: f.on_undecodable,
            progress: tx,
            reached_end,
            start_ends,
        });
    }
    consumer.assign(&tpl)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let name = followed.iter().map(|f| f.topic.as_str()).collect::<Vec<_>>().join("+");
    let thread = std::thread::Builder::new()
        .name(format!("follow-{name}"))
        .spawn(move || follow(consumer, followed, flag))?;
    let running = Arc::new(Running { stop, thread: Some(thread) });
    let probe = Arc::new(Probe { consumer: OnceLock::new(), bootstrap: bootstrap.to_owned() });
    Ok(handles
        .into_iter()
        .map(|(topic, reached_end, progress)| Follower {
            reached_end,
            progress,
            probe: probe.clone(),
            topic,
            _running: running.clone(),
        })
        .collect())
}

fn follow(consumer: FollowConsumer, followed: Vec<Followed>, stop: Arc<AtomicBool>) {
    let index = |topic: &str| followed.iter().position(|f| f.topic == topic);
    while !stop.load(Ordering::Relaxed) {
        // Apply what is there, then publish progress once per burst.
        let mut read: Vec<(usize, i32, i64)> = Vec::new();
        let mut wait = Duration::from_millis(100);
        while read.len() < 10_000 {
            match consumer.poll(wait) {
                Some(Ok(m)) => {
                    let Some(i) = index(m.topic()) else { continue };
                    let f = &followed[i];
                    if let Err(e) = f.view.apply(m.partition(), m.payload()) {
                        (f.on_undecodable)();
                        tracing::warn!(topic = %f.topic, partition = m.partition(), offset = m.offset(), error = %e,
                            "undecodable record skipped by the view");
                    }
                    read.push((i, m.partition(), m.offset() + 1));
                    wait = Duration::ZERO;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    // The event names the partition, not the topic. At an end the
                    // consumer's position is that end, past any commit or abort markers
                    // and aborted records it skipped, and everywhere else it is one past
                    // the last record handed out (all applied by now): so every followed
                    // topic's partition `p` can publish its position, and a partition
                    // whose position reached its end at the start has caught up (a
                    // trailing aborted transaction must not keep `min_position` waiting
                    // for records it will never see).
                    let Ok(positions) = consumer.position() else { continue };
                    for (i, f) in followed.iter().enumerate() {
                        let Some(at) = position(&positions, &f.topic, p) else { continue };
                        if let Some(flag) = f.reached_end.get(p as usize)
                            && f.start_ends.get(p as usize).is_some_and(|&end| at >= end)
                        {
                            flag.store(true, Ordering::Relaxed);
                        }
                        read.push((i, p, at));
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "follower");
                    break;
                }
                None => break,
            }
        }
        caught_up_by_statistics(
            &consumer.context().fetched.lock().unwrap_or_else(|e| e.into_inner()),
            &followed,
        );
        for (i, f) in followed.iter().enumerate() {
            if !read.iter().any(|(j, ..)| *j == i) {
                continue;
            }
            f.progress.send_modify(|next| {
                for &(_, p, o) in read.iter().filter(|(j, ..)| *j == i) {
                    if let Some(n) = next.get_mut(p as usize) {
                        *n = (*n).max(o);
                    }
                }
            });
        }
    }
}

/// The other way to catch up: the position at an end-of-partition event stays below the
/// end when the last offsets hold nothing to hand out (a batch emptied by compaction, a
/// control record of a kind librdkafka skips), and no further event comes while the
/// partition is idle. The statistics (every second) say when everything up to the end
/// has been fetched and nothing fetched is still queued: all of it has been applied.
fn caught_up_by_statistics(fetched: &HashMap<(String, i32), Fetched>, followed: &[Followed]) {
    for f in followed {
        for (p, flag) in f.reached_end.iter().enumerate() {
            if flag.load(Ordering::Relaxed) {
                continue;
            }
            let (Some(end), Some(seen)) =
                (f.start_ends.get(p), fetched.get(&(f.topic.clone(), p as i32)))
            else {
                continue;
            };
            if seen.next_offset >= *end && seen.queued == 0 {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// A partition's position in `positions`, if it has one.
fn position(positions: &TopicPartitionList, topic: &str, partition: i32) -> Option<i64> {
    match positions.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl View for Nothing {
        fn apply(&self, _: i32, _: Option<&[u8]>) -> Result<(), topics::codec::DecodeError> {
            Ok(())
        }
    }

    /// A partition caught up by the statistics: everything up to its start end fetched
    /// and nothing left queued; not while either is short.
    #[test]
    fn statistics_catch_a_partition_up_only_when_all_up_to_its_end_was_handed_out() {
        let followed = vec![Followed {
            topic: "t".into(),
            view: Arc::new(Nothing),
            on_undecodable: Box::new(|| {}),
            progress: watch::channel(vec![0; 3]).0,
            reached_end: Arc::new((0..3).map(|_| AtomicBool::new(false)).collect()),
            start_ends: vec![10, 10, 10],
        }];
        let at = |next_offset, queued| Fetched { next_offset, queued };
        let fetched = HashMap::from([
            (("t".to_owned(), 0), at(10, 0)),
            (("t".to_owned(), 1), at(9, 0)),
            (("t".to_owned(), 2), at(12, 1)),
            (("other".to_owned(), 2), at(12, 0)),
        ]);
        caught_up_by_statistics(&fetched, &followed);
        let flags: Vec<bool> =
            followed[0].reached_end.iter().map(|f| f.load(Ordering::Relaxed)).collect();
        assert_eq!(flags, [true, false, false]);
    }
}
