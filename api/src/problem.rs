//! Every error the API answers, as `application/problem+json` (RFC 9457) with a stable
//! `type`: clients switch on the type, never on the prose.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// Prefix of every problem type.
pub const TYPE_BASE: &str = "https://skuflow.dev/problems/";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid credentials")]
    Unauthenticated,
    #[error("this credential may not do that")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("the Idempotency-Key header is required")]
    MissingIdempotencyKey,
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body not received within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("too many requests for this credential")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many commands in flight for this credential")]
    TooManyInFlight,
    /// This connection's address has more open than allowed ([`crate::conns`]); the
    /// connection is closed after this answer.
    #[error("too many open connections from this address; close idle ones and retry")]
    TooManyConnections,
    #[error(
        "a queue of this instance is full (commands, or searches for old replies); retry shortly"
    )]
    Overloaded,
    #[error("the read model has not reached the requested position yet")]
    NotYetVisible,
    /// Kafka could not be reached or answered with an error. The command may or may not
    /// have been enqueued: the same request with the same Idempotency-Key is safe to send
    /// again (it is applied at most once) and is the way to find out.
    #[error(
        "the broker is unavailable; retry the same request with the same Idempotency-Key (it is applied at most once) ({0})"
    )]
    Unavailable(String),
    /// This instance's views have not caught up since it started (or a topic is off).
    #[error("not ready: {0}")]
    NotReady(String),
    /// The command was applied and rejected (insufficient stock, expired, ...); the
    /// reply travels as an extension member.
    #[error("{reason}")]
    Rejected { reason: &'static str, reply: serde_json::Value },
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<&'a serde_json::Value>,
}

impl ApiError {
    /// The stable slug after [`TYPE_BASE`], in kebab case like every URL path of the
    /// API (a rejection's reason is snake case in the reply's JSON, `insufficient_stock`;
    /// its problem type is `.../insufficient-stock`).
    pub fn slug(&self) -> std::borrow::Cow<'static, str> {
        let slug = match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound => "not-found",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::MissingIdempotencyKey => "missing-idempotency-key",
            ApiError::TooLarge { .. } => "too-large",
            ApiError::BodyTimeout(_) => "body-timeout",
            ApiError::RateLimited { .. } => "rate-limited",
            ApiError::TooManyInFlight => "too-many-in-flight",
            ApiError::TooManyConnections => "too-many-connections",
            ApiError::Overloaded => "overloaded",
            ApiError::NotYetVisible => "not-yet-visible",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::NotReady(_) => "not-ready",
            ApiError::Rejected { reason, .. } => return reason.replace('_', "-").into(),
        };
        slug.into()
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Rejected { .. } => "command rejected",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound => "not found",
            ApiError::BadRequest(_) | ApiError::MissingIdempotencyKey => "bad request",
            ApiError::TooLarge { .. } => "payload too large",
            ApiError::BodyTimeout(_) => "request timeout",
            ApiError::RateLimited { .. }
            | ApiError::TooManyInFlight
            | ApiError::TooManyConnections => "too many requests",
            ApiError::Overloaded | ApiError::Unavailable(_) => "service unavailable",
            ApiError::NotReady(_) => "not ready",
            ApiError::NotYetVisible => "not yet visible",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::MissingIdempotencyKey => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. }
            | ApiError::TooManyInFlight
            | ApiError::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded | ApiError::Unavailable(_) | ApiError::NotReady(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // The request is fine; its precondition (min_position) is not met yet.
            ApiError::NotYetVisible => StatusCode::PRECONDITION_FAILED,
            ApiError::Rejected { .. } => StatusCode::CONFLICT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let reply = match self {
            ApiError::Rejected { reply, .. } => Some(reply),
            _ => None,
        };
        let body = Problem {
            kind: format!("{TYPE_BASE}{}", self.slug()),
            title: self.title(),
            status: status.as_u16(),
            detail: self.to_string(),
            reply,
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        let retry_after = match self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::TooManyInFlight
            | ApiError::TooManyConnections
            | ApiError::Overloaded
            | ApiError::NotYetVisible
            | ApiError::NotReady(_) => Some(1),
            ApiError::Unavailable(_) => Some(5),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        if matches!(self, ApiError::TooManyConnections) {
            response.force_close();
        }
        if matches!(self, ApiError::Unauthenticated) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer, ApiKey"));
        }
        response.json(body)
    }
}

/// Malformed JSON, unknown fields, a body over the limit, a bad path or query: all
/// problem+json `bad-request` with the parser's words as detail.
pub fn bad_request(e: impl std::fmt::Display) -> actix_web::Error {
    ApiError::BadRequest(e.to_string()).into()
}

/// A JSON body that could not be read: too large (413), too slow (408, see
/// [`crate::gate`]) or not the JSON asked for (400).
pub fn body_error(
    e: actix_web::error::JsonPayloadError,
    limit: usize,
    timeout: std::time::Duration,
) -> actix_web::Error {
    use actix_web::error::{JsonPayloadError, PayloadError};
    match e {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::TooLarge { limit }.into()
        }
        JsonPayloadError::Payload(PayloadError::Overflow) => ApiError::TooLarge { limit }.into(),
        JsonPayloadError::Payload(PayloadError::Io(io))
            if io.kind() == std::io::ErrorKind::TimedOut =>
        {
            ApiError::BodyTimeout(timeout).into()
        }
        e => bad_request(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_types_and_retry_after() {
        let cases = [
            (ApiError::Overloaded, 503, "overloaded", Some("1")),
            (ApiError::TooManyInFlight, 429, "too-many-in-flight", Some("1")),
            (ApiError::TooManyConnections, 429, "too-many-connections", Some("1")),
            (ApiError::RateLimited { retry_after_secs: 3 }, 429, "rate-limited", Some("3")),
            (ApiError::NotYetVisible, 412, "not-yet-visible", Some("1")),
            (ApiError::NotReady("catching up".into()), 503, "not-ready", Some("1")),
            (ApiError::Unavailable("timed out".into()), 503, "unavailable", Some("5")),
            (ApiError::TooLarge { limit: 16 }, 413, "too-large", None),
            (ApiError::BodyTimeout(std::time::Duration::from_secs(1)), 408, "body-timeout", None),
            (ApiError::Unauthenticated, 401, "unauthenticated", None),
            (ApiError::MissingIdempotencyKey, 400, "missing-idempotency-key", None),
            (
                ApiError::Rejected { reason: "insufficient_stock", reply: serde_json::Value::Null },
                409,
                "insufficient-stock",
                None,
            ),
        ];
        assert!(
            ApiError::Unavailable("x".into()).to_string().contains("same Idempotency-Key"),
            "a broker outage tells the client how to retry"
        );
        for (error, status, slug, retry_after) in cases {
            let response = error.error_response();
            assert_eq!(response.status().as_u16(), status, "{slug}");
            assert_eq!(error.slug(), slug);
            let header = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap());
            assert_eq!(header, retry_after, "{slug}");
            let content_type = response.headers().get(header::CONTENT_TYPE).unwrap();
            assert_eq!(content_type, "application/problem+json");
        }
    }
}
