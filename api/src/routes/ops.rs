//! Operations endpoints: health, readiness, metrics, the OpenAPI document.

use actix_web::{HttpResponse, web};
use prometheus::{Encoder, TextEncoder};

use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

/// Ready once the read models have read what was in their topics at start.
/// 200 once the views have read every partition to its end (reads are then answered),
/// 503 with the reason before.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let read: i64 = state.availability_follower.progress().borrow().iter().sum();
    match state.not_ready() {
        None => HttpResponse::Ok()
            .json(serde_json::json!({ "ready": true, "availability_records_read": read })),
        Some(reason) => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(serde_json::json!({ "ready": false, "reason": reason, "availability_records_read": read })),
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut body) {
        Ok(()) => HttpResponse::Ok().content_type(prometheus::TEXT_FORMAT).body(body),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(&state.openapi)
}
