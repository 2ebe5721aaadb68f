//! Stock administration (restock, adjust, set with expected version): admin role only.

use actix_web::{HttpRequest, HttpResponse, web};
use topics::{Adjust, Command, Restock, SetStock, Sku, WarehouseId};

use crate::dto::{AdjustBody, RestockBody, SetBody, WaitQuery};
use crate::problem::ApiError;
use crate::routes::commands::{authorize, quantity, stock, submit};
use crate::state::AppState;

fn row(path: &(String, String)) -> Result<(Sku, WarehouseId), ApiError> {
    let sku = Sku::new(&path.0).map_err(|e| ApiError::BadRequest(format!("sku: {e}")))?;
    let warehouse =
        WarehouseId::new(&path.1).map_err(|e| ApiError::BadRequest(format!("warehouse: {e}")))?;
    Ok((sku, warehouse))
}

/// Add units to a SKU in a warehouse.
#[utoipa::path(post, path = "/v1/admin/stock/{sku}/{warehouse}/restock", request_body = RestockBody,
    params(("sku" = String, Path), ("warehouse" = String, Path), WaitQuery, ("Idempotency-Key" = String, Header, description = "client-chosen command id, scoped by tenant, SKU and key: the same key and body get the original reply, another body for the same SKU 409 conflict, another SKU is another command")),
    responses((status = 200), (status = 202), (status = 409), (status = 400), (status = 401), (status = 403), (status = 429), (status = 503)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn restock(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<WaitQuery>,
    body: web::Json<RestockBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = authorize(&req, &state)?;
    caller.require_admin()?;
    let (sku, warehouse) = row(&path)?;
    let command =
        Command::Restock(Restock { sku, warehouse, quantity: quantity(body.quantity, &state)? });
    submit(&req, &state, caller, command, query.wait).await
}

/// Correct on-hand units (never below what is reserved).
#[utoipa::path(post, path = "/v1/admin/stock/{sku}/{warehouse}/adjust", request_body = AdjustBody,
    params(("sku" = String, Path), ("warehouse" = String, Path), WaitQuery, ("Idempotency-Key" = String, Header, description = "client-chosen command id, scoped by tenant, SKU and key: the same key and body get the original reply, another body for the same SKU 409 conflict, another SKU is another command")),
    responses((status = 200), (status = 202), (status = 409), (status = 400), (status = 401), (status = 403), (status = 429), (status = 503)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn adjust(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<WaitQuery>,
    body: web::Json<AdjustBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = authorize(&req, &state)?;
    caller.require_admin()?;
    let (sku, warehouse) = row(&path)?;
    stock(body.delta.unsigned_abs(), &state)?;
    let command = Command::Adjust(Adjust { sku, warehouse, delta: body.delta });
    submit(&req, &state, caller, command, query.wait).await
}

/// Set on-hand units if the row is still at the expected version.
#[utoipa::path(post, path = "/v1/admin/stock/{sku}/{warehouse}/set", request_body = SetBody,
    params(("sku" = String, Path), ("warehouse" = String, Path), WaitQuery, ("Idempotency-Key" = String, Header, description = "client-chosen command id, scoped by tenant, SKU and key: the same key and body get the original reply, another body for the same SKU 409 conflict, another SKU is another command")),
    responses((status = 200), (status = 202), (status = 409), (status = 400), (status = 401), (status = 403), (status = 429), (status = 503)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn set(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<WaitQuery>,
    body: web::Json<SetBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = authorize(&req, &state)?;
    caller.require_admin()?;
    let (sku, warehouse) = row(&path)?;
    let command = Command::SetStock(SetStock {
        sku,
        warehouse,
        on_hand: stock(body.on_hand, &state)?,
        expected_version: body.expected_version,
    });
    submit(&req, &state, caller, command, query.wait).await
}
