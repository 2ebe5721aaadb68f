//! Versioned envelopes. Every record skuflow writes is `{"v": VERSION, "id": ..., "body": ...}`:
//! `v` lets a reader refuse what it does not understand instead of misreading it, and
//! `id` (on outputs) is the record's stable identity, so any consumer can drop the
//! duplicates that a re-applied batch or a leaky broker produces (ARCHITECTURE.md, "Exactly-once").

use std::fmt;

use serde::{Deserialize, Serialize};

/// The envelope version this build writes and the only one it reads.
pub const VERSION: u16 = 1;

/// Kafka header carrying an output record's identity, `partition/offset/index` (the
/// [`RecordId`]'s text), so a consumer can drop duplicates without decoding the body.
pub const ID_HEADER: &str = "skuflow-id";
/// Kafka header carrying the reason a record was dead-lettered.
pub const REASON_HEADER: &str = "skuflow-reason";

/// Identity of an output record: the command it came from and its index among that
/// command's outputs of the same kind. Re-applying a command yields the same ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordId {
    pub partition: i32,
    pub offset: i64,
    pub index: u32,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.partition, self.offset, self.index)
    }
}

/// Text that is not `partition/offset/index`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a record id (partition/offset/index)")]
pub struct BadRecordId(pub String);

impl std::str::FromStr for RecordId {
    type Err = BadRecordId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadRecordId(s.chars().take(64).collect());
        let mut parts = s.split('/');
        let (Some(p), Some(o), Some(i), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Self {
            partition: p.parse().map_err(|_| bad())?,
            offset: o.parse().map_err(|_| bad())?,
            index: i.parse().map_err(|_| bad())?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T> {
    pub v: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RecordId>,
    pub body: T,
}

impl<T> Envelope<T> {
    /// A command-topic record (commands are sources; they carry no output id).
    pub fn command(body: T) -> Self {
        Self { v: VERSION, id: None, body }
    }

    /// An output record with its stable identity.
    pub fn output(id: RecordId, body: T) -> Self {
        Self { v: VERSION, id: Some(id), body }
    }
}

#[cfg(test)]
mod tests {
    use super::RecordId;

    #[test]
    fn a_record_id_reads_back_what_it_writes_and_nothing_else() {
        let id = RecordId { partition: 7, offset: 1_234_567, index: 3 };
        assert_eq!(id.to_string().parse::<RecordId>(), Ok(id));
        for bad in ["", "7/1", "7/1/3/4", "x/1/3", "7/-/3", "7/1/-1", "7 /1/3"] {
            assert!(bad.parse::<RecordId>().is_err(), "{bad:?}");
        }
    }
}
