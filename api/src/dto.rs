//! Request bodies of the HTTP API. Unknown fields are rejected; bounds beyond what the
//! types say (quantity, TTL) are checked by [`crate::routes`] against the config.

use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    /// SKU to hold units of.
    #[schema(example = "sku-1")]
    pub sku: String,
    #[schema(minimum = 1, example = 2)]
    pub quantity: u32,
    /// Take the units only from this warehouse.
    #[serde(default)]
    pub warehouse: Option<String>,
    /// `fewest_splits` (default), `most_available`, or a priority order of warehouses.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub strategy: Option<topics::Strategy>,
    /// Hold what is there when it is less than asked.
    #[serde(default)]
    pub allow_partial: bool,
    /// Hold time in milliseconds (default and maximum are configured).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub ttl_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseBody {
    /// Buy only this many of the held units; the rest return to stock. Default: all.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub quantity: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// New hold time in milliseconds, counted from when the command is applied.
    #[schema(minimum = 1)]
    pub ttl_ms: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestockBody {
    #[schema(minimum = 1)]
    pub quantity: u32,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustBody {
    /// Units found (positive) or lost (negative).
    pub delta: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBody {
    pub on_hand: u64,
    /// The row's current version (0: the row does not exist yet).
    pub expected_version: u64,
}

/// `?wait=` on command requests: milliseconds to wait for the reply.
#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Milliseconds to wait for the reply before answering 202 (bounded by the config).
    pub wait: Option<u64>,
}

/// `?at=` on command polls: the position from the 202's Location.
#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PollQuery {
    /// `partition-offset` of the command, as the Location gave it.
    pub at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityQuery {
    /// `partition-offset` from a reply: answer only once the read model reflects it.
    pub min_position: Option<String>,
    /// Milliseconds to wait for `min_position` (bounded by the config).
    pub wait: Option<u64>,
}
