//! The client's own history: every request the harness sent and what came back, with
//! times. The checker ([`crate::check`]) reads nothing else.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One request and its answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub id: u64,
    /// What the harness meant: `reserve`, `purchase`, `setup`, `resolve`, `poll`,
    /// `final-read`, `hostile`, ...
    pub kind: String,
    pub tenant: String,
    /// The SKU the request is about (for commands on a reservation, the reservation's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// The Idempotency-Key sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub method: String,
    /// Path and query.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default)]
    pub hostile: bool,
    /// Which API instance it went to.
    pub api: usize,
    /// Milliseconds since the workload started.
    pub sent_ms: f64,
    pub done_ms: f64,
    /// The HTTP status; none when the request got no answer (refused, reset, timed out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    /// For retries, polls and resolutions: the entry whose command this is again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<u64>,
}

impl Entry {
    /// A command request (one with an Idempotency-Key that is not hostile).
    pub fn is_command(&self) -> bool {
        self.key.is_some() && !self.hostile && self.method == "POST"
    }

    /// The reply in the answer: a 200's body, a 409 problem's `reply`, a poll's 200.
    pub fn reply(&self) -> Option<&Value> {
        let response = self.response.as_ref()?;
        let reply = match self.status? {
            200 if response.get("outcome").is_some() => response,
            409 => response.get("reply")?,
            _ => return None,
        };
        reply.get("position").is_some().then_some(reply)
    }

    /// The answer told the client its command was enqueued (202).
    pub fn accepted(&self) -> bool {
        self.status == Some(202)
    }

    pub fn latency_ms(&self) -> f64 {
        self.done_ms - self.sent_ms
    }
}

/// `(partition, offset)` of a reply's `position`.
pub fn position(reply: &Value) -> Option<(i64, i64)> {
    let p = reply.get("position")?;
    Some((p.get("partition")?.as_i64()?, p.get("offset")?.as_i64()?))
}
