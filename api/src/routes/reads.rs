//! Reads: a command's result (any instance, any time within the replies topic's
//! retention), a reservation, availability with read-your-writes.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use topics::{CommandId, Sku};

use crate::dto::{AvailabilityQuery, PollQuery};
use crate::problem::ApiError;
use crate::routes::commands::authorize;
use crate::routes::{format_position, parse_position, pending_response, reply_response};
use crate::state::AppState;

/// The result of a command, by its idempotency key (recent ones from memory; older ones
/// by the `at` of the 202's Location, looked up in the replies topic).
#[utoipa::path(get, path = "/v1/commands/{key}", params(("key" = String, Path), PollQuery),
    responses((status = 200, description = "the reply"), (status = 202, description = "accepted, not answered yet: poll again"), (status = 409, description = "the command was rejected"),
        (status = 404, description = "unknown, another tenant's, or not applied yet"), (status = 400), (status = 401), (status = 429)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn command(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PollQuery>,
) -> Result<HttpResponse, ApiError> {
    let caller = authorize(&req, &state)?;
    // Keys may hold `/`, `+` and `=`, which the Location header percent-encodes.
    let decoded = percent_encoding::percent_decode_str(path.as_str()).decode_utf8_lossy();
    let key = CommandId::new(decoded).map_err(|e| ApiError::BadRequest(format!("key: {e}")))?;
    // Without `at`: the first reply this instance holds for the key. With `at`: the reply
    // at that position and no other (a later conflicting payload under the same key has
    // its own position and its own reply).
    let Some(at) = query.at.as_deref().map(parse_position).transpose()? else {
        let reply = state.ingest.replies().by_key(&caller.tenant, &key);
        return reply.map_or(Err(ApiError::NotFound), |r| reply_response(&r));
    };
    if at.partition >= state.partitions() {
        return Err(ApiError::NotFound);
    }
    let cached = state.ingest.replies().get(at);
    if cached.is_none() && state.ingest.replies().pending(at) {
        // Not answered yet, known from memory: no Kafka lookup for a pending poll.
        return Ok(pending_response(&key, at));
    }
    let reply = match cached {
        Some(r) => Some(r),
        None => {
            // A search of the replies topic: counted in flight for the caller, queued for
            // the instance's one searcher (full queue: 503 overloaded, retry).
            let _in_flight = state.limits.start(&caller.credential)?;
            state.metrics.lookups.inc();
            state.ingest.lookup(at).await.map_err(|e| match e {
                ingest::IngestError::Busy => ApiError::Overloaded,
                e => ApiError::Unavailable(e.to_string()),
            })?
        }
    };
    match reply {
        // Another tenant's command, or another id at that position: not yours.
        Some(r) if r.tenant == caller.tenant && r.command_id == key => reply_response(&r),
        _ => Err(ApiError::NotFound),
    }
}

/// A reservation and its state.
#[utoipa::path(get, path = "/v1/reservations/{id}", params(("id" = String, Path)),
    responses((status = 200), (status = 404), (status = 400), (status = 401), (status = 429),
        (status = 503, description = "not-ready: the instance's views are catching up")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn reservation(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = authorize(&req, &state)?;
    ready(&state)?;
    let id = crate::routes::reservation_id(&path)?;
    match state.reservations.get(&id) {
        Some(r) if r.tenant == caller.tenant => Ok(HttpResponse::Ok().json(r)),
        _ => Err(ApiError::NotFound),
    }
}

/// Units available for a SKU, in total and per warehouse, with the version of each row
/// and the log position the answer reflects.
#[utoipa::path(get, path = "/v1/availability/{sku}", params(("sku" = String, Path), AvailabilityQuery),
    responses((status = 200), (status = 404), (status = 400), (status = 401), (status = 429),
        (status = 412, description = "min_position not reached within the wait"),
        (status = 503, description = "not-ready: the instance's views are catching up")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn availability(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<AvailabilityQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    ready(&state)?;
    let sku = Sku::new(path.as_str()).map_err(|e| ApiError::BadRequest(format!("sku: {e}")))?;
    if let Some(min) = query.min_position.as_deref().map(parse_position).transpose()? {
        if min.partition >= state.partitions() {
            return Err(ApiError::BadRequest(format!("no partition {}", min.partition)));
        }
        let wait = state.config.wait(query.wait);
        reach(&state, &sku, min, wait).await?;
    }
    let a = state.availability.get(&sku).ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Skuflow-Position", format_position(a.availability.position)))
        .content_type("application/json")
        .body(a.json.clone()))
}

/// Reads from the views wait for readiness: before it, a SKU or reservation that exists
/// could be answered 404.
fn ready(state: &AppState) -> Result<(), ApiError> {
    match state.not_ready() {
        None => Ok(()),
        Some(reason) => Err(ApiError::NotReady(reason)),
    }
}

/// Wait until the availability view reflects every command up to `min`: either the SKU's
/// own record is at or past it, or the view has read its partition to the end that was
/// there when we asked (the processor publishes availability in the same transaction as
/// the reply that carried `min`, so that end covers it).
async fn reach(
    state: &web::Data<AppState>,
    sku: &Sku,
    min: topics::Position,
    wait: Duration,
) -> Result<(), ApiError> {
    let reached_by_record = |state: &AppState| {
        state.availability.get(sku).is_some_and(|a| {
            let p = a.availability.position;
            p.partition == min.partition && p.offset >= min.offset
        })
    };
    if reached_by_record(state) {
        return Ok(());
    }
    let s = state.clone();
    let (commands_end, end) = tokio::task::spawn_blocking(move || {
        let commands = s.config.topics.name(topics::Topic::Commands);
        let f = &s.availability_follower;
        Ok::<_, rdkafka::error::KafkaError>((
            f.end_of(&commands, min.partition)?,
            f.end(min.partition)?,
        ))
    })
    .await
    .map_err(|e| ApiError::Unavailable(e.to_string()))?
    .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    // A position no command has yet (not from a reply): nothing can reflect it.
    if min.offset >= commands_end {
        return Err(ApiError::NotYetVisible);
    }
    let mut progress = state.availability_follower.progress();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // A transaction's last record is followed by its commit marker, which a reader
        // never sees: one short of the end is the end.
        let read = progress.borrow().get(min.partition as usize).copied().unwrap_or(0);
        if read + 1 >= end || reached_by_record(state) {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, progress.changed()).await {
            Ok(Ok(())) => {}
            _ => return Err(ApiError::NotYetVisible),
        }
    }
}
