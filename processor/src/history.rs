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
//!
//! The changelog can lose records on its own. The dev broker loses each partition's
//! recent writes independently, and it has handed one producer id to two producers,
//! acknowledging the second one's changelog batches as duplicates without storing them
//! while its offset commits went through (RELIABILITY.md). The commands log and the
//! committed offset then say a state was reached that the changelog does not hold: a
//! state kept in the store is *ahead* of the changelog, and every batch it writes from
//! there lands on rows the changelog no longer has, so the next owner restores stock rows
//! and reservations that disagree. So a loaded state is also checked against the
//! changelog's last META (the last record of every transaction the partition's single
//! writer commits): it must carry the state's applied offset and clock. Anything else
//! means the changelog is not the state's; the state is rebuilt from the changelog and
//! the commands after it.

use std::time::{Duration, Instant};

use broker::client::QuietEof;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};
use state::store::{keys, values};
use topics::LogTime;

/// What the log says about a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The record at `applied` is there and not newer than the state's clock.
    Same,
    /// The commands log is not the one the state was built from; why.
    Diverged(String),
    /// The changelog does not end with the state's last batch: it lost records the state
    /// wrote, or another writer wrote after it; why.
    Changelog(String),
    /// The changelog is ahead of the state (the store missed a batch that was published:
    /// at-least-once delivery, or a crash between commit and store write). Not a loss:
    /// the state is rebuilt from the changelog as when it does not match the offset.
    ChangelogAhead(String),
    /// The broker did not answer in time (it is away); worth asking again; why.
    Unknown(String),
    /// The logs cannot tell, and asking again soon will not help (the record is deleted by
    /// retention, an open transaction hides the changelog's end, no META near the end);
    /// why.
    Unverifiable(String),
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
    consumer: BaseConsumer<QuietEof>,
    topic: String,
    /// read_committed, on the changelog topic: only committed transactions count.
    changelog: BaseConsumer<QuietEof>,
    changelog_topic: String,
    timeout: Duration,
}

/// What the end of a changelog partition holds.
enum Tail {
    Meta(values::Meta),
    /// No META at all: the changelog holds no state.
    Empty,
    /// None among the offsets read (a transaction longer than [`CHANGELOG_TAIL`]).
    NoMetaNearEnd,
    /// A transaction still open (ours whose markers are on their way, or a frozen
    /// predecessor's) hides what follows its first record from read_committed readers:
    /// the end cannot be judged now.
    Hidden {
        stable: i64,
        high: i64,
    },
}

/// How far before the changelog's end its last META is looked for: more than one
/// transaction's records of one partition (a batch writes a few records per command).
const CHANGELOG_TAIL: i64 = 16_384;
/// The windows tried in turn, the narrowest first: most checks read a few records.
const TAIL_WINDOWS: [i64; 3] = [64, 2_048, CHANGELOG_TAIL];

impl std::fmt::Debug for HistoryCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryCheck").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl HistoryCheck {
    pub fn new(
        bootstrap: &str,
        topic: &str,
        changelog_topic: &str,
        timeout: Duration,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        // Readers with short fetch waits: a check reads a few records and the end of the log.
        let consumer = broker::client::reader_config(bootstrap, "skuflow-processor-history")
            .set("isolation.level", "read_uncommitted")
            .create_with_context(QuietEof)?;
        let changelog = broker::client::reader_config(bootstrap, "skuflow-processor-history")
            .set("enable.partition.eof", "true")
            .create_with_context(QuietEof)?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            changelog,
            changelog_topic: changelog_topic.to_owned(),
            timeout,
        })
    }

    /// Check a state of `partition` (applied up to `applied`, clock `clock`) against both
    /// logs: the commands log ([`HistoryCheck::verify`]), then the changelog
    /// ([`HistoryCheck::verify_changelog`]).
    pub fn verify_both(&self, partition: i32, applied: i64, clock: LogTime) -> Verdict {
        match self.verify(partition, applied, clock) {
            Verdict::Same => self.verify_changelog(partition, applied, clock),
            other => other,
        }
    }

    /// Does the commands log of `partition` still hold `offset`? (`Err`: the broker did
    /// not say.) A state rebuilt from a changelog that ends before the committed offset
    /// is brought up to date by applying the commands from there again.
    pub fn holds(&self, partition: i32, offset: i64) -> Result<bool, String> {
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.topic, partition, self.timeout)
            .map_err(|e| format!("watermarks: {e}"))?;
        Ok(low <= offset && offset < high)
    }

    /// Is the changelog of `partition` the one a state applied up to `applied` with clock
    /// `clock` wrote? Its last META must carry exactly these: the changelog's last
    /// transaction is the state's last batch (or the state was restored from it).
    pub fn verify_changelog(&self, partition: i32, applied: i64, clock: LogTime) -> Verdict {
        let last = match self.last_meta(partition) {
            Ok(Tail::Meta(meta)) => meta,
            Ok(Tail::Empty) => {
                return Verdict::Changelog(format!(
                    "the changelog of partition {partition} holds no META, but the state has \
                     applied up to offset {applied}: the broker lost changelog records the state wrote"
                ));
            }
            Ok(Tail::NoMetaNearEnd) => {
                return Verdict::Unverifiable(format!(
                    "no META in the last {CHANGELOG_TAIL} offsets of changelog partition {partition}"
                ));
            }
            Ok(Tail::Hidden { stable, high }) => {
                return Verdict::Unverifiable(format!(
                    "an open transaction hides the end of changelog partition {partition} \
                     (stable up to {stable}, written up to {high})"
                ));
            }
            Err(why) => return Verdict::Unknown(why),
        };
        if last.applied == Some(applied) && last.log_time == clock {
            return Verdict::Same;
        }
        if last.applied > Some(applied) {
            return Verdict::ChangelogAhead(format!(
                "the changelog of partition {partition} is at applied offset {:?}, ahead of \
                 the state's {applied}",
                last.applied
            ));
        }
        Verdict::Changelog(format!(
            "the changelog of partition {partition} ends at applied offset {:?} (clock {} ms), \
             but the state has applied up to offset {applied} (clock {} ms): the broker lost \
             changelog records the state wrote, or another writer wrote after it",
            last.applied, last.log_time.0, clock.0
        ))
    }

    /// The last META among the last offsets of changelog partition `partition`
    /// (read_committed): the last [`TAIL_WINDOWS`] offsets first (META is the last record
    /// of a transaction, right before its commit marker), then wider windows up to
    /// [`CHANGELOG_TAIL`].
    fn last_meta(&self, partition: i32) -> Result<Tail, String> {
        // read_committed: the high end is the last stable offset; read_uncommitted: the
        // high watermark. Apart, a transaction is open on the changelog.
        let (low, high) = self
            .changelog
            .fetch_watermarks(&self.changelog_topic, partition, self.timeout)
            .map_err(|e| format!("changelog watermarks: {e}"))?;
        let (_, written) = self
            .consumer
            .fetch_watermarks(&self.changelog_topic, partition, self.timeout)
            .map_err(|e| format!("changelog high watermark: {e}"))?;
        if written > high {
            return Ok(Tail::Hidden { stable: high, high: written });
        }
        if high <= low {
            return Ok(Tail::Empty);
        }
        for window in TAIL_WINDOWS {
            let from = (high - window).max(low);
            match self.last_meta_from(partition, from)? {
                Some(meta) => return Ok(Tail::Meta(meta)),
                None if from == low => return Ok(Tail::Empty),
                None => {}
            }
        }
        Ok(Tail::NoMetaNearEnd)
    }

    /// The last META from `from` to the end of changelog partition `partition`.
    fn last_meta_from(&self, partition: i32, from: i64) -> Result<Option<values::Meta>, String> {
        let mut last = None;
        let (topic, timeout) = (&self.changelog_topic, self.timeout);
        scan(&self.changelog, topic, partition, from, timeout, |record| {
            let Some(m) = record else { return Some(Ok(last)) };
            if let (Ok(keys::Key::Meta), Some(value)) =
                (keys::decode(m.key().unwrap_or_default()), m.payload())
            {
                match values::meta_from(value) {
                    Ok(meta) => last = Some(meta),
                    Err(e) => return Some(Err(e.to_string())),
                }
            }
            None
        })
        .map_err(|e| format!("changelog: {e}"))?
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
            return Verdict::Unverifiable(format!(
                "offset {applied} is deleted (the log starts at {low})"
            ));
        }
        let read = scan(&self.consumer, &self.topic, partition, applied, self.timeout, |record| {
            // Without partition-EOF events this consumer only ever hands over records.
            let m = record?;
            let Some(at) = log_time(m.timestamp()) else {
                return Some(Verdict::Unverifiable("no timestamp".into()));
            };
            if m.offset() != applied {
                return Some(Verdict::Unverifiable(format!(
                    "read offset {} where {applied} was asked for",
                    m.offset()
                )));
            }
            Some(match replayed_record(m.offset(), at, applied, clock) {
                Some(why) => Verdict::Diverged(why),
                None => Verdict::Same,
            })
        });
        read.unwrap_or_else(|e| Verdict::Unknown(format!("offset {applied}: {e}")))
    }
}

/// Read `partition` of `topic` with `consumer` from offset `from`, handing each record to
/// `on` (and the end of the partition as `None`, when the consumer reports it) until `on`
/// returns an answer; `Err` when there is none within `timeout`, or the consumer cannot be
/// assigned or failed for good. Other consumer errors are reports (a connection a broker's
/// restart cut, queued before it came back): librdkafka retries underneath, and the
/// deadline bounds it.
fn scan<T>(
    consumer: &BaseConsumer<QuietEof>,
    topic: &str,
    partition: i32,
    from: i64,
    timeout: Duration,
    mut on: impl FnMut(Option<&BorrowedMessage<'_>>) -> Option<T>,
) -> Result<T, String> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .and_then(|()| consumer.assign(&tpl))
        .map_err(|e| format!("assign: {e}"))?;
    let deadline = Instant::now() + timeout;
    let outcome = loop {
        if Instant::now() > deadline {
            break Err(format!("no answer from offset {from} on within {timeout:?}"));
        }
        let answer = match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => on(Some(&m)),
            Some(Err(KafkaError::PartitionEOF(_))) => on(None),
            Some(Err(e)) if consumer.client().fatal_error().is_some() => {
                break Err(format!("fetch: {e}"));
            }
            Some(Err(_)) | None => None,
        };
        if let Some(answer) = answer {
            break Ok(answer);
        }
    };
    let _ = consumer.unassign();
    outcome
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
