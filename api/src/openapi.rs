//! The OpenAPI document, generated from the handlers and request types
//! (served at `/openapi.json`).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto::*;
use crate::routes::{admin, commands, reads};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "skuflow", description = "Inventory reservation for flash-sale checkout. Errors are application/problem+json with a stable type."),
    paths(
        commands::reserve, commands::release, commands::purchase, commands::extend,
        reads::command, reads::reservation, reads::availability,
        admin::restock, admin::adjust, admin::set,
    ),
    components(schemas(ReserveBody, PurchaseBody, ExtendBody, RestockBody, AdjustBody, SetBody)),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}
