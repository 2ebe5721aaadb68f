//! Reserve, release, purchase, extend: enqueue with the caller's tenant and idempotency
//! key, wait for the reply up to `?wait=`, else 202 with a Location to poll.

use actix_web::{HttpRequest, HttpResponse, web};
use topics::{
    Command, CommandId, Extend, Purchase, Quantity, Rejection, Release, Request, Reserve, Sku,
    Strategy, WarehouseId,
};

use crate::auth::{Caller, authenticate};
use crate::dto::{ExtendBody, PurchaseBody, ReserveBody, WaitQuery};
use crate::problem::ApiError;
use crate::routes::{pending_response, reply_response};
use crate::state::AppState;
use crate::trace::RequestTrace;
use tracing::Instrument;

pub fn idempotency_key(req: &HttpRequest) -> Result<CommandId, ApiError> {
    let value = req
        .headers()
        .get("idempotency-key")
        .ok_or(ApiError::MissingIdempotencyKey)?
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key is not text".into()))?;
    CommandId::new(value).map_err(|e| ApiError::BadRequest(format!("Idempotency-Key: {e}")))
}

pub fn quantity(n: u32, state: &AppState) -> Result<Quantity, ApiError> {
    if n > state.config.max_quantity {
        return Err(ApiError::BadRequest(format!(
            "quantity {n} is over the limit of {}",
            state.config.max_quantity
        )));
    }
    Quantity::new(n).ok_or_else(|| ApiError::BadRequest("quantity must be at least 1".into()))
}

pub fn ttl(ms: u64, state: &AppState) -> Result<u64, ApiError> {
    if ms == 0 || ms > state.config.max_ttl_ms {
        return Err(ApiError::BadRequest(format!(
            "ttl_ms must be between 1 and {}",
            state.config.max_ttl_ms
        )));
    }
    Ok(ms)
}

/// A priority order must be non-empty, within the limit, and name each warehouse once
/// (the machine refuses the same with a named rejection when it arrives another way).
pub fn strategy(s: Option<Strategy>, state: &AppState) -> Result<Option<Strategy>, ApiError> {
    if let Some(Strategy::Priority { order }) = &s {
        topics::check_priority_order(order, state.config.max_warehouses).map_err(|r| {
            ApiError::BadRequest(match r {
                Rejection::EmptyOrder => "strategy.order must name at least one warehouse".into(),
                Rejection::DuplicateWarehouse { warehouse } => {
                    format!("strategy.order names warehouse {warehouse} more than once")
                }
                Rejection::TooManyWarehouses { max } => {
                    format!("strategy.order names more than {max} warehouses")
                }
                other => other.reason().into(),
            })
        })?;
    }
    Ok(s)
}

/// On-hand stock an admin may set, or move by in one adjust.
pub fn stock(n: u64, state: &AppState) -> Result<u64, ApiError> {
    if n > state.config.max_stock {
        return Err(ApiError::BadRequest(format!(
            "{n} units is over the limit of {} per stock row",
            state.config.max_stock
        )));
    }
    Ok(n)
}

fn bad<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> ApiError {
    move |e| ApiError::BadRequest(format!("{what}: {e}"))
}

/// Authenticate, count against the rate limit, and enqueue `command`; then wait.
pub async fn submit(
    req: &HttpRequest,
    state: &AppState,
    caller: Caller,
    command: Command,
    wait: Option<u64>,
) -> Result<HttpResponse, ApiError> {
    let command_id = idempotency_key(req)?;
    let request = Request { tenant: caller.tenant.clone(), command_id, command };
    let _in_flight = state.limits.start(&caller.credential)?;
    let Some(trace) = RequestTrace::of(req, state.config.start_traces) else {
        return enqueue_and_wait(state, &request, None, wait).await;
    };
    let response = enqueue_and_wait(state, &request, Some(trace.ours), wait)
        .instrument(trace.span(command_name(&request.command)))
        .await;
    response.map(|mut r| {
        let (name, value) = trace.header();
        r.headers_mut().insert(name, value);
        r
    })
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Reserve(_) => "reserve",
        Command::Release(_) => "release",
        Command::Purchase(_) => "purchase",
        Command::Extend(_) => "extend",
        Command::Restock(_) => "restock",
        Command::Adjust(_) => "adjust",
        Command::SetStock(_) => "set_stock",
    }
}

/// Enqueue `request` (with `trace` in its record's header) and wait up to `wait` for its
/// reply.
async fn enqueue_and_wait(
    state: &AppState,
    request: &Request,
    trace: Option<topics::TraceContext>,
    wait: Option<u64>,
) -> Result<HttpResponse, ApiError> {
    let accepted = state.ingest.submit_traced(request, trace).await.map_err(|e| match e {
        ingest::IngestError::Backpressure => ApiError::Overloaded,
        e => ApiError::Unavailable(e.to_string()),
    })?;
    let wait = state.config.wait(wait);
    let reply = state
        .ingest
        .reply(accepted.position, wait)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    match reply {
        // The reply at our position is another command's: the broker handed this
        // position out twice (it lost what it had acknowledged there). Never answer with
        // it; a retry with the same key is safe and gets this command's own reply.
        Some(reply) if reply.tenant != request.tenant || reply.command_id != request.command_id => {
            tracing::warn!(position = ?accepted.position, command_id = %request.command_id, other = %reply.command_id,
                "the reply at this command's position is another command's: the broker reused an offset");
            Err(ApiError::Unavailable(
                "the broker acknowledged this command at a position it had given another command before".into(),
            ))
        }
        Some(reply) => reply_response(&reply),
        None => Ok(pending_response(&request.command_id, accepted.position)),
    }
}

/// Authenticate the request and count it against the caller's rate limit.
pub fn authorize(req: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    // The gate authenticated `/v1/` requests from their headers already.
    let known = actix_web::HttpMessage::extensions(req).get::<Caller>().cloned();
    let caller = match known {
        Some(caller) => caller,
        None => authenticate(req, &state.config)?,
    };
    state.limits.admit(&caller.credential)?;
    Ok(caller)
}

/// Hold units of a SKU.
#[utoipa::path(post, path = "/v1/reservations", request_body = ReserveBody, params(WaitQuery,
    ("Idempotency-Key" = String, Header, description = "client-chosen command id, scoped by tenant, SKU and key: the same key and body get the original reply, another body for the same SKU 409 conflict, another SKU is another command")),
    responses((status = 200, description = "reserved"), (status = 202, description = "accepted, poll Location"),
        (status = 409, description = "rejected (problem+json with the reply)"), (status = 400), (status = 401), (status = 429), (status = 503)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn reserve(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<WaitQuery>,
    body: web::Json<ReserveBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = authorize(&req, &state)?;
    let b = body.into_inner();
    let command = Command::Reserve(Reserve {
        sku: Sku::new(&b.sku).map_err(bad("sku"))?,
        quantity: quantity(b.quantity, &state)?,
        warehouse: b.warehouse.map(WarehouseId::new).transpose().map_err(bad("warehouse"))?,
        strategy: strategy(b.strategy, &state)?,
        allow_partial: b.allow_partial,
        ttl_ms: b.ttl_ms.map(|t| ttl(t, &state)).transpose()?,
    });
    submit(&req, &state, caller, command, query.wait).await
}

/// Give the held units back.
#[utoipa::path(post, path = "/v1/reservations/{id}/release", params(("id" = String, Path), WaitQuery,
    ("Idempotency-Key" = String, Header, description = "client-chosen command id, scoped by tenant, SKU and key: the same key and body get the original reply, another body for the same SKU 409 conflict, another SKU is another command")),
    responses((status = 200), (status = 202), (status = 409), (status = 400), (status = 401), (status = 429), (status = 503)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn release(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
) -> Result<HttpResponse, ApiError> {
    let caller = authorize(&req, &state)?;
    let command = Command::Release(Release { reservation: crate::routes::reservation_id(&path)? });
    submit(&req, &state, caller, command, query.wait).await
}

/// Buy the held units (all, or `quantity` of them).
#[utoipa::path(post, path = "/v1/reservations/{id}/purchase", request_body(content = Option<PurchaseBody>),
    params(("id" = String, Path), WaitQuery, ("Idempotency-Key" = String, Header, description = "client-chosen command id, scoped by tenant, SKU and key: the same key and body get the original reply, another body for the same SKU 409 conflict, another SKU is another command")),
    responses((status = 200), (status = 202), (status = 409), (status = 400), (status = 401), (status = 429), (status = 503)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn purchase(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = authorize(&req, &state)?;
    // No body, or `null`, is "all of them".
    let b: PurchaseBody = if body.iter().all(u8::is_ascii_whitespace) {
        PurchaseBody::default()
    } else {
        serde_json::from_slice::<Option<PurchaseBody>>(&body)
            .map_err(bad("body"))?
            .unwrap_or_default()
    };
    let command = Command::Purchase(Purchase {
        reservation: crate::routes::reservation_id(&path)?,
        quantity: b.quantity.map(|q| quantity(q, &state)).transpose()?,
    });
    submit(&req, &state, caller, command, query.wait).await
}

/// Hold the units longer.
#[utoipa::path(post, path = "/v1/reservations/{id}/extend", request_body = ExtendBody,
    params(("id" = String, Path), WaitQuery, ("Idempotency-Key" = String, Header, description = "client-chosen command id, scoped by tenant, SKU and key: the same key and body get the original reply, another body for the same SKU 409 conflict, another SKU is another command")),
    responses((status = 200), (status = 202), (status = 409), (status = 400), (status = 401), (status = 429), (status = 503)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn extend(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
    body: web::Json<ExtendBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = authorize(&req, &state)?;
    let command = Command::Extend(Extend {
        reservation: crate::routes::reservation_id(&path)?,
        ttl_ms: ttl(body.ttl_ms, &state)?,
    });
    submit(&req, &state, caller, command, query.wait).await
}
