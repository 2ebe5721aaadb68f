//! Finding an old reply in Kafka: replies partition p holds the replies to commands
//! partition p in command order (the processor publishes batches in log order and
//! read_committed hides aborted copies), so a binary search over its offsets by the
//! reply's source offset finds it in O(log n) single-record fetches.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use topics::{Position, Reply};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The reply to the command at `at`, if the replies topic still holds it.
pub fn find(bootstrap: &str, topic: &str, at: Position) -> Result<Option<Reply>, KafkaError> {
    let consumer: BaseConsumer =
        broker::client::consumer_config(bootstrap, "skuflow-replies-lookup").create()?;
    let (low, high) = consumer.fetch_watermarks(topic, at.partition, TIMEOUT)?;
    // Invariant: every reply before `lo` answers a command before `at`; none at or after
    // `hi` can be the one (it is past the end or answers a later command).
    let (mut lo, mut hi) = (low, high);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match first_from(&consumer, topic, at.partition, mid, hi)? {
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
    partition: i32,
    from: i64,
    end: i64,
) -> Result<Option<(i64, Position, Reply)>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.offset() >= end => return Ok(None),
            Some(Ok(m)) => {
                if let Some((at, reply)) = crate::reply_at(m.payload()) {
                    return Ok(Some((m.offset(), at, reply)));
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(None),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Err(KafkaError::Canceled)
}
