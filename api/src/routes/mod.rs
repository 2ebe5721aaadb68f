//! The HTTP routes, `/v1/...`. Handlers are thin: authenticate, validate, then hand a
//! `topics::Request` to ingest or read a view.

pub mod admin;
pub mod commands;
pub mod ops;
pub mod reads;

use actix_web::HttpResponse;
use topics::{Outcome, Position, Reply};

use crate::problem::ApiError;

/// `partition-offset`, as used in Location headers and `min_position`.
pub fn format_position(p: Position) -> String {
    format!("{}-{}", p.partition, p.offset)
}

pub fn parse_position(s: &str) -> Result<Position, ApiError> {
    let bad = || ApiError::BadRequest(format!("{s:?} is not a position (partition-offset)"));
    let (p, o) = s.split_once('-').ok_or_else(bad)?;
    let partition: i32 = p.parse().map_err(|_| bad())?;
    let offset: i64 = o.parse().map_err(|_| bad())?;
    if partition < 0 || offset < 0 {
        return Err(bad());
    }
    Ok(Position { partition, offset })
}

/// A reply as the HTTP answer: 200 with the reply, or a rejection as a 409 problem that
/// carries the reply.
pub fn reply_response(reply: &Reply) -> Result<HttpResponse, ApiError> {
    if let Outcome::Rejected(rejection) = &reply.outcome {
        let body = serde_json::to_value(reply).unwrap_or_default();
        return Err(ApiError::Rejected { reason: rejection.reason(), reply: body });
    }
    Ok(HttpResponse::Ok()
        .insert_header(("Skuflow-Position", format_position(reply.position)))
        .json(reply))
}
