//! The OpenAPI document, generated from the handlers and request types, with the
//! configured bounds written in ([`document`], served at `/openapi.json`).

use serde_json::{Value, json};
use topics::{CommandId, ReservationId, Sku, WarehouseId};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::config::ApiConfig;
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

/// A position as written in Location headers and `min_position`: `partition-offset`.
const POSITION: &str = "^[0-9]{1,9}-[0-9]{1,18}$";

/// The served document: the generated one, with what the handlers check written into
/// it, so a client (or a fuzzer) generating from the schema sends what is accepted:
/// identifier patterns, the Idempotency-Key as required, the configured bounds on
/// quantities, hold times and stock, and the shape of a strategy.
pub fn document(config: &ApiConfig) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let patterns = [
        ("sku", Sku::pattern()),
        ("warehouse", WarehouseId::pattern()),
        ("id", ReservationId::pattern()),
        ("key", CommandId::pattern()),
        ("Idempotency-Key", CommandId::pattern()),
        ("at", POSITION.to_owned()),
        ("min_position", POSITION.to_owned()),
    ];
    let operations = doc["paths"].as_object_mut().into_iter().flat_map(|p| p.values_mut());
    for operation in operations.flat_map(|item| item.as_object_mut()).flat_map(|o| o.values_mut()) {
        let Some(parameters) = operation["parameters"].as_array_mut() else { continue };
        for parameter in parameters {
            let name = parameter["name"].as_str().unwrap_or_default().to_owned();
            if let Some((_, pattern)) = patterns.iter().find(|(n, _)| *n == name) {
                parameter["schema"]["pattern"] = json!(pattern);
            }
            if name == "Idempotency-Key" {
                parameter["required"] = json!(true);
            }
        }
    }
    describe_responses(&mut doc);
    let schemas = &mut doc["components"]["schemas"];
    let max_stock = i64::try_from(config.max_stock).unwrap_or(i64::MAX);
    let bounds = [
        ("ReserveBody", "quantity", "maximum", json!(config.max_quantity)),
        ("ReserveBody", "ttl_ms", "maximum", json!(config.max_ttl_ms)),
        ("ReserveBody", "warehouse", "pattern", json!(WarehouseId::pattern())),
        ("ReserveBody", "sku", "pattern", json!(Sku::pattern())),
        ("PurchaseBody", "quantity", "maximum", json!(config.max_quantity)),
        ("ExtendBody", "ttl_ms", "maximum", json!(config.max_ttl_ms)),
        ("RestockBody", "quantity", "maximum", json!(config.max_quantity)),
        ("AdjustBody", "delta", "minimum", json!(-max_stock)),
        ("AdjustBody", "delta", "maximum", json!(max_stock)),
        ("SetBody", "on_hand", "maximum", json!(config.max_stock)),
    ];
    for (schema, field, keyword, value) in bounds {
        schemas[schema]["properties"][field][keyword] = value;
    }
    let warehouse = json!({ "type": "string", "pattern": WarehouseId::pattern() });
    let only = |kind: &str| {
        json!({ "type": "object", "required": ["type"], "additionalProperties": false,
                "properties": { "type": { "const": kind } } })
    };
    schemas["ReserveBody"]["properties"]["strategy"] = json!({
        "description": "`fewest_splits` (default), `most_available`, or a priority order of distinct warehouses",
        "oneOf": [
            { "type": "null" },
            only("fewest_splits"),
            only("most_available"),
            { "type": "object", "required": ["type", "order"], "additionalProperties": false,
              "properties": {
                "type": { "const": "priority" },
                "order": { "type": "array", "items": warehouse, "minItems": 1,
                           "maxItems": config.max_warehouses, "uniqueItems": true } } },
        ],
    });
    doc
}

/// Bodies of the responses: a reply (200 of a command or a poll), a pending answer
/// (202), and problem+json for every error (409 carries the reply).
fn describe_responses(doc: &mut Value) {
    let position = json!({ "type": "object", "required": ["partition", "offset"],
        "properties": { "partition": { "type": "integer", "minimum": 0 },
                        "offset": { "type": "integer", "minimum": 0 } } });
    let schemas = &mut doc["components"]["schemas"];
    schemas["Reply"] = json!({
        "type": "object", "required": ["tenant", "command_id", "position", "at", "outcome"],
        "properties": { "tenant": { "type": "string" }, "command_id": { "type": "string" },
                        "position": position, "at": { "type": "integer" },
                        "outcome": { "type": "object" } } });
    schemas["Pending"] = json!({
        "type": "object", "required": ["command_id", "position", "status", "poll"],
        "properties": { "command_id": { "type": "string" }, "position": position,
                        "status": { "const": "pending" }, "poll": { "type": "string" } } });
    schemas["Problem"] = json!({
        "type": "object", "required": ["type", "title", "status", "detail"],
        "properties": { "type": { "type": "string", "format": "uri" },
                        "title": { "type": "string" }, "status": { "type": "integer" },
                        "detail": { "type": "string" }, "reply": { "$ref": "#/components/schemas/Reply" } } });
    let body = |media: &str, schema: &str| json!({ media: { "schema": { "$ref": format!("#/components/schemas/{schema}") } } });
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, operation) in item {
            let replies = method == "post" || path == "/v1/commands/{key}";
            let Some(responses) = operation["responses"].as_object_mut() else { continue };
            for (status, response) in responses {
                let content = match status.as_str() {
                    "200" if replies => body("application/json", "Reply"),
                    "200" => json!({ "application/json": { "schema": { "type": "object" } } }),
                    "202" => body("application/json", "Pending"),
                    s if s.starts_with('4') || s.starts_with('5') => {
                        body("application/problem+json", "Problem")
                    }
                    _ => continue,
                };
                response["content"] = content;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
        &doc["paths"][path][method]
    }

    fn parameter<'a>(operation: &'a Value, name: &str) -> &'a Value {
        let parameters = operation["parameters"].as_array().expect("parameters");
        parameters.iter().find(|p| p["name"] == name).expect(name)
    }

    /// The served document says what the handlers check: patterns of every identifier,
    /// a required Idempotency-Key, and the bounds of this configuration.
    #[test]
    fn the_document_carries_patterns_and_configured_bounds() {
        let mut config = ApiConfig::new("127.0.0.1:0".parse().unwrap(), "x");
        config.max_quantity = 7;
        config.max_ttl_ms = 9_000;
        let doc = document(&config);
        let restock = operation(&doc, "/v1/admin/stock/{sku}/{warehouse}/restock", "post");
        assert_eq!(parameter(restock, "sku")["schema"]["pattern"], Sku::pattern());
        assert_eq!(parameter(restock, "warehouse")["schema"]["pattern"], WarehouseId::pattern());
        let key = parameter(restock, "Idempotency-Key");
        assert_eq!(key["required"], true);
        assert_eq!(key["schema"]["pattern"], CommandId::pattern());
        let extend = operation(&doc, "/v1/reservations/{id}/extend", "post");
        assert_eq!(parameter(extend, "id")["schema"]["pattern"], ReservationId::pattern());
        let poll = operation(&doc, "/v1/commands/{key}", "get");
        assert_eq!(parameter(poll, "at")["schema"]["pattern"], POSITION);
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["ReserveBody"]["properties"]["quantity"]["maximum"], 7);
        assert_eq!(schemas["ExtendBody"]["properties"]["ttl_ms"]["maximum"], 9_000);
        assert_eq!(schemas["ExtendBody"]["properties"]["ttl_ms"]["minimum"], 1);
        let strategy = &schemas["ReserveBody"]["properties"]["strategy"]["oneOf"];
        assert_eq!(strategy[3]["properties"]["order"]["maxItems"], config.max_warehouses);
        let problem = &extend["responses"]["409"]["content"]["application/problem+json"];
        assert_eq!(problem["schema"]["$ref"], "#/components/schemas/Problem");
        let reply = &extend["responses"]["200"]["content"]["application/json"];
        assert_eq!(reply["schema"]["$ref"], "#/components/schemas/Reply");
    }
}
