//! The other client path: commands produced straight to the commands topic with the
//! `ingest` library, as a checkout service that embeds it would, instead of through the
//! HTTP API. Each answer is recorded in the history in the shape the API gives it (200
//! with the reply, 409 with a rejected reply in a problem, 202 with a poll location when
//! the reply did not come within the wait), so the checker reads both paths alike; a
//! command left pending is polled later through the API, which any instance answers.

use std::time::Duration;

use serde_json::{Value, json};
use topics::{Command, CommandId, Extend, Purchase, Release, Request, Reserve, TenantId};

/// What one command got: status, body, transport error (as the HTTP path records them).
pub type Answer = (Option<u16>, Option<Value>, Option<String>);

#[derive(Debug, Clone)]
pub struct IngestClient {
    ingest: ingest::Ingest,
}

impl IngestClient {
    /// Start a producer and a replies tail on `brokers` (blocking: metadata lookups).
    pub fn start(brokers: &str) -> Result<Self, ingest::IngestError> {
        Ok(Self { ingest: ingest::Ingest::new(ingest::IngestConfig::new(brokers))? })
    }

    /// Enqueue the command the API request (`path`, `body`) stands for, as `tenant` under
    /// `key`, and wait up to `wait` for its reply. `None`: not a command this path sends.
    pub async fn send(
        &self,
        tenant: &str,
        key: &str,
        path: &str,
        body: Option<&Value>,
        wait: Duration,
    ) -> Option<Answer> {
        let command = command_of(path, body)?;
        let (Ok(tenant), Ok(command_id)) = (TenantId::new(tenant), CommandId::new(key)) else {
            return None;
        };
        let request = Request { tenant, command_id, command };
        let accepted = match self.ingest.submit(&request).await {
            Ok(a) => a,
            Err(e) => return Some((None, None, Some(format!("ingest: {e}")))),
        };
        let at = accepted.position;
        Some(match self.ingest.reply(at, wait).await {
            Err(e) => (None, None, Some(format!("ingest: {e}"))),
            // Another command's reply at our position (the broker reused an offset): the
            // API answers 503 then, and so does this path.
            Ok(Some(reply))
                if reply.tenant != request.tenant || reply.command_id != request.command_id =>
            {
                (Some(503), None, Some("ingest: another command's reply at this position".into()))
            }
            Ok(Some(reply)) => {
                let body = serde_json::to_value(&*reply).unwrap_or_default();
                match reply.outcome {
                    topics::Outcome::Rejected(_) => {
                        (Some(409), Some(json!({ "reply": body })), None)
                    }
                    _ => (Some(200), Some(body), None),
                }
            }
            Ok(None) => {
                let poll = format!(
                    "/v1/commands/{}?at={}-{}",
                    api_segment(request.command_id.as_str()),
                    at.partition,
                    at.offset
                );
                let pending = json!({ "command_id": request.command_id, "position": at, "status": "pending", "poll": poll });
                (Some(202), Some(pending), None)
            }
        })
    }
}

/// The command an API command request stands for: `POST /v1/reservations` (reserve, the
/// body is the command) or `POST /v1/reservations/{id}/{release|purchase|extend}`.
/// Anything else, or a body the command does not take, is `None`.
pub fn command_of(path: &str, body: Option<&Value>) -> Option<Command> {
    let path = path.split('?').next().unwrap_or_default();
    if path == "/v1/reservations" {
        return serde_json::from_value::<Reserve>(body?.clone()).ok().map(Command::Reserve);
    }
    let rest = path.strip_prefix("/v1/reservations/")?;
    let (id, verb) = rest.split_once('/')?;
    let mut fields = match body {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return None,
    };
    fields.insert("reservation".into(), Value::String(id.to_owned()));
    let fields = Value::Object(fields);
    match verb {
        "release" => serde_json::from_value::<Release>(fields).ok().map(Command::Release),
        "purchase" => serde_json::from_value::<Purchase>(fields).ok().map(Command::Purchase),
        "extend" => serde_json::from_value::<Extend>(fields).ok().map(Command::Extend),
        _ => None,
    }
}

/// A command id as one path segment (what the API's poll location holds).
fn api_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::command_of;
    use serde_json::json;
    use topics::*;

    #[test]
    fn api_requests_map_to_the_commands_the_api_would_enqueue() {
        let reserve = json!({ "sku": "s-1", "quantity": 2, "ttl_ms": 500, "allow_partial": true,
                              "strategy": { "type": "most_available" } });
        assert_eq!(
            command_of("/v1/reservations?wait=0", Some(&reserve)),
            Some(Command::Reserve(Reserve {
                sku: Sku::new("s-1").unwrap(),
                quantity: Quantity::new(2).unwrap(),
                warehouse: None,
                strategy: Some(Strategy::MostAvailable),
                allow_partial: true,
                ttl_ms: Some(500),
            }))
        );
        let id: ReservationId = "s-1~7".parse().unwrap();
        let on = |verb: &str, body: Option<serde_json::Value>| {
            command_of(&format!("/v1/reservations/s-1~7/{verb}"), body.as_ref())
        };
        assert_eq!(
            on("purchase", None),
            Some(Command::Purchase(Purchase { reservation: id.clone(), quantity: None }))
        );
        assert_eq!(
            on("purchase", Some(json!({ "quantity": 1 }))),
            Some(Command::Purchase(Purchase {
                reservation: id.clone(),
                quantity: Some(Quantity::new(1).unwrap())
            }))
        );
        assert_eq!(
            on("release", Some(serde_json::Value::Null)),
            Some(Command::Release(Release { reservation: id.clone() }))
        );
        assert_eq!(
            on("extend", Some(json!({ "ttl_ms": 900 }))),
            Some(Command::Extend(Extend { reservation: id, ttl_ms: 900 }))
        );
        // Not commands of this path: admin routes, reads, unknown verbs, bad bodies.
        assert_eq!(
            command_of("/v1/admin/stock/s-1/w-0/restock", Some(&json!({"quantity": 1}))),
            None
        );
        assert_eq!(on("refund", None), None);
        assert_eq!(on("extend", Some(json!([1]))), None);
        assert_eq!(
            command_of("/v1/reservations", Some(&json!({ "quantity": 0, "sku": "s" }))),
            None
        );
    }
}
