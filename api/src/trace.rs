//! The trace of one command request: the caller's W3C `traceparent`, continued under a
//! span of the API's own (`skuflow.request`), whose context goes into the command
//! record's `traceparent` header and back to the caller in `traceresponse`. A request
//! without (a valid) `traceparent` is traced only when `start_traces` is on.

use std::hash::{BuildHasher, Hasher};

use actix_web::HttpRequest;
use actix_web::http::header::{HeaderName, HeaderValue};
use topics::{TRACE_HEADER, TraceContext};

/// Response header carrying the request's trace context (W3C Trace Context Level 2).
pub const RESPONSE_HEADER: &str = "traceresponse";

/// A traced request: the context under the API's span, and the caller's span if any.
#[derive(Debug, Clone, Copy)]
pub struct RequestTrace {
    pub ours: TraceContext,
    pub parent: Option<[u8; 8]>,
}

impl RequestTrace {
    /// The request's trace, if it is traced.
    pub fn of(req: &HttpRequest, start_traces: bool) -> Option<Self> {
        let given = req.headers().get(TRACE_HEADER).and_then(|v| TraceContext::parse(v.as_bytes()));
        match given {
            Some(parent) => {
                Some(Self { ours: parent.child(random_span_id()), parent: Some(parent.span_id) })
            }
            None if start_traces => {
                let trace_id = [random_u64().to_be_bytes(), random_u64().to_be_bytes()].concat();
                let ours = TraceContext {
                    trace_id: trace_id.try_into().unwrap_or([1; 16]),
                    span_id: random_span_id(),
                    sampled: true,
                };
                Some(Self { ours, parent: None })
            }
            None => None,
        }
    }

    /// The API's span for this request (exported when spans are).
    pub fn span(&self, command: &'static str) -> tracing::Span {
        tracing::info_span!(
            "skuflow.request",
            trace_id = %self.ours.trace_hex(),
            span_id = %self.ours.span_hex(),
            parent_span_id = %self.parent.map(|p| topics::trace::to_hex(&p)).unwrap_or_default(),
            command,
        )
    }

    /// The `traceresponse` header.
    pub fn header(&self) -> (HeaderName, HeaderValue) {
        let value = HeaderValue::from_str(&self.ours.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        (HeaderName::from_static(RESPONSE_HEADER), value)
    }
}

/// 64 random bits (the standard library's per-process random hash keys; ids, not
/// secrets).
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn random_span_id() -> [u8; 8] {
    (random_u64() | 1).to_be_bytes()
}
