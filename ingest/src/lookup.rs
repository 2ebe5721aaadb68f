//! Finding an old reply in Kafka: replies partition p holds the replies to commands
//! partition p in command order (the processor publishes batches in log order and
//! read_committed hides aborted copies), so a binary search over its offsets by the
//! reply's source offset finds it in O(log n) single-record fetches.
//!
//! One [`Lookups`] per instance does every search, on one thread with one consumer,
//! taking requests from a bounded queue: a burst of polls for old commands costs one
//! Kafka client and waits its turn, and a full queue is refused at once
//! ([`crate::IngestError::Busy`]) instead of growing.

use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use topics::{Position, Reply};

use crate::IngestError;

const TIMEOUT: Duration = Duration::from_secs(10);

type Answer = Result<Option<Reply>, IngestError>;

struct Job {
    at: Position,
    done: tokio::sync::oneshot::Sender<Answer>,
}

/// The instance's reply searcher: one thread, one consumer, a bounded queue.
pub struct Lookups {
    queue: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups").finish_non_exhaustive()
    }
}

impl Lookups {
    /// Start the searcher of `topic`, queueing at most `capacity` searches.
    pub fn start(
        bootstrap: &str,
        topic: &str,
        capacity: usize,
        format: topics::codec::Format,
    ) -> Result<Self, IngestError> {
        let consumer: BaseConsumer =
            broker::client::reader_config(bootstrap, "skuflow-replies-lookup").create()?;
        let (queue, jobs) = sync_channel::<Job>(capacity.max(1));
        let topic = topic.to_owned();
        let thread = std::thread::Builder::new().name("reply-lookups".into()).spawn(move || {
            for job in jobs {
                // A caller that gave up is not searched for.
                if job.done.is_closed() {
                    continue;
                }
                let _ = job.done.send(find(&consumer, &topic, &format, job.at));
            }
        })?;
        Ok(Self { queue: Some(queue), thread: Some(thread) })
    }

    /// Queue a search for the reply at `at`; `None` when the queue is full.
    pub fn submit(&self, at: Position) -> Option<tokio::sync::oneshot::Receiver<Answer>> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let queue = self.queue.as_ref()?;
        match queue.try_send(Job { at, done }) {
            Ok(()) => Some(answer),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => None,
        }
    }
}

impl Drop for Lookups {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the search in progress.
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reply to the command at `at`, if the replies topic still holds it.
fn find(
    consumer: &BaseConsumer,
    topic: &str,
    format: &topics::codec::Format,
    at: Position,
) -> Answer {
    let (low, high) = consumer.fetch_watermarks(topic, at.partition, TIMEOUT)?;
    // Invariant: every reply before `lo` answers a command before `at`; none at or after
    // `hi` can be the one (it is past the end or answers a later command).
    let (mut lo, mut hi) = (low, high);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match first_from(consumer, topic, format, at.partition, mid, hi)? {
            None => hi = mid,
            Some((_, found, reply)) if found == at => return Ok(Some(reply)),
            Some((offset, found, _)) if found.offset < at.offset => lo = offset + 1,
            Some(_) => hi = mid,
        }
    }
    Ok(None)
}

/// The first reply at or after `from` (and before `end`): its Kafka offset, the
/// position it answers and the reply.
fn first_from(
    consumer: &BaseConsumer,
    topic: &str,
    format: &topics::codec::Format,
    partition: i32,
    from: i64,
    end: i64,
) -> Result<Option<(i64, Position, Reply)>, IngestError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.offset() >= end => return Ok(None),
            Some(Ok(m)) => {
                if let Ok((at, reply)) = crate::reply_at(format, m.payload()) {
                    return Ok(Some((m.offset(), at, reply)));
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(None),
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Err(IngestError::LookupTimeout)
}
