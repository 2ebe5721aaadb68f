//! The HTTP routes, `/v1/...`. Handlers are thin: authenticate, validate, then hand a
//! `topics::Request` to ingest or read a view.

pub mod admin;
pub mod commands;
pub mod ops;
pub mod reads;

use actix_web::HttpResponse;
use topics::{CommandId, Outcome, Position, Reply};

use crate::problem::ApiError;

/// `s` as one path segment: everything but letters, digits, `-`, `.`, `_` and `:`
/// percent-encoded (a command id may hold `/`, `+` and `=`).
pub fn path_segment(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet =
        &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b':');
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A reservation id from a path segment (400 when it is not one).
pub fn reservation_id(id: &str) -> Result<topics::ReservationId, ApiError> {
    id.parse().map_err(|e| ApiError::BadRequest(format!("reservation id: {e}")))
}

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
/// 202: the command at `position` is accepted and not answered yet; poll the Location.
pub fn pending_response(command_id: &CommandId, position: Position) -> HttpResponse {
    let location = format!(
        "/v1/commands/{}?at={}",
        path_segment(command_id.as_str()),
        format_position(position)
    );
    HttpResponse::Accepted().insert_header(("Location", location.clone())).json(serde_json::json!({
        "command_id": command_id,
        "position": position,
        "status": "pending",
        "poll": location,
    }))
}

pub fn reply_response(reply: &Reply) -> Result<HttpResponse, ApiError> {
    if let Outcome::Rejected(rejection) = &reply.outcome {
        let body = serde_json::to_value(reply).unwrap_or_default();
        return Err(ApiError::Rejected { reason: rejection.reason(), reply: body });
    }
    Ok(HttpResponse::Ok()
        .insert_header(("Skuflow-Position", format_position(reply.position)))
        .json(reply))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_command_id_becomes_one_path_segment() {
        assert_eq!(super::path_segment("ord/1+x=y:z.w_v-u"), "ord%2F1%2Bx%3Dy:z.w_v-u");
    }
}
