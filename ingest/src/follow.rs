//! Following a topic (read_committed) on a thread of its own, from its beginning or from
//! its end, feeding every record to a [`View`] and publishing how far each partition has
//! been read, so a request can wait for the view to reach a position, and whether every
//! partition has been read to an end at least once (the view has caught up with what
//! existed when the follower started: the API's readiness). The API follows the
//! availability and events topics from the beginning; [`crate::Ingest`] follows the
//! replies topic from its end into its reply cache.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
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

pub struct Follower {
    stop: Arc<AtomicBool>,
    /// Per partition: its end has been reached at least once.
    reached_end: Arc<Vec<AtomicBool>>,
    thread: Option<JoinHandle<()>>,
    progress: Progress,
    /// For high-watermark queries (what "caught up" means right now), made on first use.
    probe: OnceLock<BaseConsumer>,
    bootstrap: String,
    topic: String,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl Follower {
    /// Follow `topic` from `from` (`Offset::Beginning` or `Offset::End`) as consumer
    /// group `group` (used for nothing but the client's name: partitions are assigned,
    /// not subscribed). `on_undecodable` hears of each record the view could not decode.
    pub fn start(
        bootstrap: &str,
        topic: &str,
        group: &str,
        from: Offset,
        view: Arc<dyn View>,
        on_undecodable: Box<dyn Fn() + Send>,
    ) -> Result<Self, crate::IngestError> {
        let consumer: BaseConsumer = broker::client::consumer_config(bootstrap, group)
            .set("enable.partition.eof", "true")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(topic, p, from)?;
        }
        consumer.assign(&tpl)?;
        let (tx, progress) = watch::channel(vec![0; partitions]);
        let stop = Arc::new(AtomicBool::new(false));
        let reached_end: Arc<Vec<AtomicBool>> =
            Arc::new((0..partitions).map(|_| AtomicBool::new(false)).collect());
        let ends = Ends { flags: reached_end.clone() };
        let flag = stop.clone();
        let name = topic.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("follow-{topic}"))
            .spawn(move || follow(consumer, view, tx, ends, flag, name, on_undecodable))?;
        Ok(Self {
            stop,
            reached_end,
            thread: Some(thread),
            progress,
            probe: OnceLock::new(),
            bootstrap: bootstrap.to_owned(),
            topic: topic.to_owned(),
        })
    }

    /// Partitions of the followed topic (0: it did not exist when the follower started).
    pub fn partitions(&self) -> usize {
        self.reached_end.len()
    }

    /// Partitions whose end has not been reached yet.
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
        let probe = match self.probe.get() {
            Some(p) => p,
            None => {
                let made =
                    broker::client::consumer_config(&self.bootstrap, "skuflow-probe").create()?;
                self.probe.get_or_init(|| made)
            }
        };
        let (_, high) = probe.fetch_watermarks(topic, partition, Duration::from_secs(5))?;
        Ok(high)
    }
}

/// Where the follower thread marks the partitions whose end it has reached.
struct Ends {
    flags: Arc<Vec<AtomicBool>>,
}

fn follow(
    consumer: BaseConsumer,
    view: Arc<dyn View>,
    progress: watch::Sender<Vec<i64>>,
    ends: Ends,
    stop: Arc<AtomicBool>,
    topic: String,
    on_undecodable: Box<dyn Fn() + Send>,
) {
    while !stop.load(Ordering::Relaxed) {
        // Apply what is there, then publish progress once per burst.
        let mut read: Vec<(i32, i64)> = Vec::new();
        let mut wait = Duration::from_millis(100);
        while read.len() < 10_000 {
            match consumer.poll(wait) {
                Some(Ok(m)) => {
                    if let Err(e) = view.apply(m.partition(), m.payload()) {
                        on_undecodable();
                        tracing::warn!(%topic, partition = m.partition(), offset = m.offset(), error = %e,
                            "undecodable record skipped by the view");
                    }
                    read.push((m.partition(), m.offset() + 1));
                    wait = Duration::ZERO;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if let Some(flag) = ends.flags.get(p as usize) {
                        flag.store(true, Ordering::Relaxed);
                    }
                    // At the end the consumer's position is the partition's end, past any
                    // commit or abort markers and aborted records it skipped: the view has
                    // read everything up to there (a trailing aborted transaction must
                    // not keep `min_position` waiting for records it will never see).
                    if let Some(end) = position(&consumer, &topic, p) {
                        read.push((p, end));
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(%topic, error = %e, "follower");
                    break;
                }
                None => break,
            }
        }
        if !read.is_empty() {
            progress.send_modify(|next| {
                for (p, o) in read {
                    if let Some(n) = next.get_mut(p as usize) {
                        *n = (*n).max(o);
                    }
                }
            });
        }
    }
}

/// The consumer's position in `partition`, if it has one.
fn position(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    let tpl = consumer.position().ok()?;
    match tpl.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
