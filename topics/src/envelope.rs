//! Versioned envelopes. Every record skuflow writes is `{"v": VERSION, "id": ..., "body": ...}`:
//! `v` lets a reader refuse what it does not understand instead of misreading it, and
//! `id` (on outputs) is the record's stable identity, so any consumer can drop the
//! duplicates that a re-applied batch or a leaky broker produces (ARCHITECTURE.md, "Exactly-once").

use std::fmt;

use serde::{Deserialize, Serialize};

/// The envelope version this build writes and the only one it reads.
pub const VERSION: u16 = 1;

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
