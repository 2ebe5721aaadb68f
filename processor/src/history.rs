//! Is the commands log still the one a partition's state was built from?
//!
//! A state (in memory, in the store, or restored from the changelog) says which command
//! it applied last (`applied`) and its clock (`log_time`: the latest LogAppendTime it has
//! seen). A broker that loses records it acknowledged and hands their offsets out again
//! (the dev broker does on a restart; Apache Kafka can after an unclean leader election)
//! leaves a log whose offsets up to `applied` hold commands the state never saw. Applying
//! what follows on such a state mixes two histories: its stock rows and reservations stop
//! agreeing, and the changelog records it writes carry the mixture to every later owner.
//!
//! Two facts give such a log away without any record of the past:
//! - the log ends before `applied`: the commands the state applied are gone;
//! - a record at or before `applied` was appended after the state's clock: the state
//!   cannot have applied it, since applying a record moves the clock to at least its time.
//!
//! The processor checks the record at `applied` whenever it loads a state, and every
//! record it skips as already applied. Neither check can accuse a log that did not change
//! (a record the state applied is never newer than its clock); a divergence that leaves
//! the record at `applied` older than the clock is not seen by them.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};
use topics::LogTime;

/// What the log says about a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The record at `applied` is there and not newer than the state's clock.
    Same,
    /// The log is not the one the state was built from; why.
    Diverged(String),
    /// The log could not tell (the record is deleted by retention, or the broker did not
    /// answer in time); why.
    Unknown(String),
}

/// A consumed record's log time (`None` when the broker gave none).
pub fn log_time(timestamp: Timestamp) -> Option<LogTime> {
    match timestamp {
        Timestamp::LogAppendTime(t) | Timestamp::CreateTime(t) => Some(LogTime(t.max(0) as u64)),
        Timestamp::NotAvailable => None,
    }
}

/// Why a record at or before `applied` proves the log diverged, if it does.
pub fn replayed_record(offset: i64, at: LogTime, applied: i64, clock: LogTime) -> Option<String> {
    (offset <= applied && at > clock).then(|| {
        format!(
            "the record at offset {offset} was appended at {} ms, after the state's clock ({} ms), \
             yet the state has applied up to offset {applied}",
            at.0, clock.0
        )
    })
}

/// Reads single records of the commands topic (no group, read_uncommitted: commands are
/// not written in transactions).
pub struct HistoryCheck {
    consumer: BaseConsumer,
    topic: String,
    timeout: Duration,
}

impl std::fmt::Debug for HistoryCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryCheck").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl HistoryCheck {
    pub fn new(
        bootstrap: &str,
        topic: &str,
        timeout: Duration,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let consumer = broker::client::consumer_config(bootstrap, "skuflow-processor-history")
            .set("isolation.level", "read_uncommitted")
            .create()?;
        Ok(Self { consumer, topic: topic.to_owned(), timeout })
    }

    /// Check the record at `applied` of `partition` against a state whose clock is `clock`.
    pub fn verify(&self, partition: i32, applied: i64, clock: LogTime) -> Verdict {
        let (low, high) = match self.consumer.fetch_watermarks(&self.topic, partition, self.timeout)
        {
            Ok(w) => w,
            Err(e) => return Verdict::Unknown(format!("watermarks: {e}")),
        };
        if high <= applied {
            return Verdict::Diverged(format!(
                "the commands log of partition {partition} ends at offset {high}, but the state \
                 has applied up to offset {applied}: the broker lost commands the state applied"
            ));
        }
        if applied < low {
            return Verdict::Unknown(format!(
                "offset {applied} is deleted (the log starts at {low})"
            ));
        }
        let mut tpl = TopicPartitionList::new();
        if let Err(e) = tpl
            .add_partition_offset(&self.topic, partition, Offset::Offset(applied))
            .and_then(|()| self.consumer.assign(&tpl))
        {
            return Verdict::Unknown(format!("assign: {e}"));
        }
        let deadline = Instant::now() + self.timeout;
        let verdict = loop {
            if Instant::now() > deadline {
                break Verdict::Unknown(format!(
                    "no record at offset {applied} within {:?}",
                    self.timeout
                ));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let Some(at) = log_time(m.timestamp()) else {
                        break Verdict::Unknown("no timestamp".into());
                    };
                    break match replayed_record(m.offset(), at, applied, clock) {
                        Some(why) => Verdict::Diverged(why),
                        None => Verdict::Same,
                    };
                }
                Some(Err(e)) => break Verdict::Unknown(format!("fetch: {e}")),
                None => {}
            }
        };
        let _ = self.consumer.unassign();
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::replayed_record;
    use topics::LogTime;

    #[test]
    fn only_a_record_newer_than_the_clock_at_or_before_applied_is_a_divergence() {
        let clock = LogTime(1_000);
        assert!(replayed_record(10, LogTime(1_001), 10, clock).is_some());
        assert!(replayed_record(3, LogTime(5_000), 10, clock).is_some());
        // What the state applied is never newer than its clock.
        assert!(replayed_record(10, LogTime(1_000), 10, clock).is_none());
        assert!(replayed_record(4, LogTime(900), 10, clock).is_none());
        // Records after `applied` are new: their time says nothing.
        assert!(replayed_record(11, LogTime(9_000), 10, clock).is_none());
    }
}
