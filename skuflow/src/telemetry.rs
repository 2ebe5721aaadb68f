//! Trace export over OTLP/HTTP with JSON bodies, off unless `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set (the OpenTelemetry variable; `OTEL_SERVICE_NAME` names the service, by default
//! `skuflow-<subcommand>`).
//!
//! What is exported: the spans whose name starts with `skuflow.` and that carry a
//! `trace_id` field (32 hex digits), with `span_id` and, when there is one,
//! `parent_span_id` (16 hex digits each). The API opens one per request
//! (`skuflow.request`), the processor one per traced command from its apply to the commit
//! of its batch (`skuflow.apply`); the trace context travels between them in the
//! `traceparent` Kafka header (`topics::trace`). Every other field becomes a string
//! attribute.
//!
//! Why not the opentelemetry crates: they would add an SDK, a runtime bridge and a
//! protobuf or gRPC stack to every build for a feature that is off by default; OTLP/HTTP
//! with JSON bodies is part of the OTLP 1.x specification, and every OpenTelemetry
//! Collector accepts it at `/v1/traces`. Spans are batched (up to [`BATCH`] or every
//! [`FLUSH_EVERY`]) by one thread; when the collector is slow or away, spans beyond
//! [`QUEUE`] are dropped rather than slowing the service down.
//!
//! Off, nothing is installed: the subscriber has no extra layer, and the API starts no
//! trace for requests that bring none.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The most spans in one export request.
const BATCH: usize = 512;
/// The longest a span waits to be exported.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Spans waiting to be exported beyond this many are dropped.
const QUEUE: usize = 8_192;

/// The collector's base URL, if export is on.
pub fn endpoint() -> Option<String> {
    std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|e| !e.trim().is_empty())
}

/// The exporting layer for the service run by `subcommand`, if export is on.
pub fn layer(subcommand: &str) -> Option<OtlpLayer> {
    let endpoint = endpoint()?;
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("skuflow-{subcommand}"));
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || export_loop(&url, &service, &rx))
        .ok()?;
    Some(OtlpLayer { tx })
}

/// See the module documentation.
pub struct OtlpLayer {
    tx: SyncSender<Value>,
}

/// A span being timed, kept in its extensions until it closes.
struct Open {
    name: &'static str,
    fields: Fields,
    start: SystemTime,
}

#[derive(Default)]
struct Fields {
    trace_id: Option<String>,
    span_id: Option<String>,
    parent_span_id: Option<String>,
    attributes: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let id = (!value.is_empty()).then(|| value.to_owned());
        match field.name() {
            "trace_id" => self.trace_id = id,
            "span_id" => self.span_id = id,
            "parent_span_id" => self.parent_span_id = id,
            name => self.attributes.push((name.to_owned(), value.to_owned())),
        }
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let name = attrs.metadata().name();
        if !name.starts_with("skuflow.") {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if fields.trace_id.is_none() || fields.span_id.is_none() {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Open { name, fields, start: SystemTime::now() });
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(open) = ctx.span(&id).and_then(|s| s.extensions_mut().remove::<Open>()) else {
            return;
        };
        let span = otlp_span(&open, SystemTime::now());
        if let Err(TrySendError::Full(_)) = self.tx.try_send(span) {
            // The collector is behind: this span is dropped.
        }
    }
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos().to_string()
}

/// One span in OTLP/JSON (ids in hex, times as decimal strings).
fn otlp_span(open: &Open, end: SystemTime) -> Value {
    let attributes: Vec<Value> = open
        .fields
        .attributes
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": { "stringValue": v } }))
        .collect();
    let mut span = json!({
        "traceId": open.fields.trace_id,
        "spanId": open.fields.span_id,
        "name": open.name,
        "kind": 1,
        "startTimeUnixNano": nanos(open.start),
        "endTimeUnixNano": nanos(end),
        "attributes": attributes,
    });
    if let Some(parent) = &open.fields.parent_span_id {
        span["parentSpanId"] = json!(parent);
    }
    span
}

fn export_loop(url: &str, service: &str, rx: &Receiver<Value>) {
    let client = match reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "OTLP export off: no HTTP client");
            return;
        }
    };
    let mut batch = Vec::new();
    let mut since = Instant::now();
    loop {
        match rx.recv_timeout(FLUSH_EVERY.saturating_sub(since.elapsed())) {
            Ok(span) => batch.push(span),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if batch.len() < BATCH && (since.elapsed() < FLUSH_EVERY || batch.is_empty()) {
            if batch.is_empty() {
                since = Instant::now();
            }
            continue;
        }
        let body = json!({ "resourceSpans": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": service } }
            ]},
            "scopeSpans": [{ "scope": { "name": "skuflow" }, "spans": std::mem::take(&mut batch) }],
        }]});
        if let Err(e) = client.post(url).json(&body).send().and_then(|r| r.error_for_status()) {
            tracing::debug!(error = %e, "OTLP export failed; spans dropped");
        }
        since = Instant::now();
    }
}
