//! The types that cross the wire: commands, replies (outcomes), events, stock levels,
//! reservations, availability. `state` decides with them; codecs encode them.
//!
//! Persisted and published formats: every enum is tagged by a snake_case `type` field,
//! field names are part of the contract, and a change that is not additive needs a new
//! envelope version (see `envelope`).

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use crate::ids::{CommandId, ReservationId, Sku, TenantId, WarehouseId};

/// Log time in milliseconds since the Unix epoch: the timestamp of a command's record in
/// the commands topic. The state machine's only clock.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct LogTime(pub u64);

impl LogTime {
    pub fn plus_ms(self, ms: u64) -> LogTime {
        LogTime(self.0.saturating_add(ms))
    }
}

impl fmt::Display for LogTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A number of units, never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Quantity(NonZeroU32);

impl Quantity {
    pub fn new(n: u32) -> Option<Self> {
        NonZeroU32::new(n).map(Self)
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }
}

/// Where a command sits in the log; replies carry it so a client can wait for the read
/// model to reach its own write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// How a reservation spreads its quantity over a SKU's warehouses when the command does
/// not name one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy {
    /// Take from warehouses in this order; warehouses not listed are not used.
    Priority { order: Vec<WarehouseId> },
    /// Largest available first, splitting as needed.
    MostAvailable,
    /// One warehouse if any can serve it all (the smallest that can, keeping large
    /// stocks for large orders), otherwise largest first.
    #[default]
    FewestSplits,
}

/// Default bounds shared by the API (which answers 400 past them) and the state machine
/// (which rejects past its own configured bounds): most units on hand (and sold) in one
/// stock row, and most warehouses one SKU may have or a priority order may name. Together
/// they keep every sum over a SKU's rows inside a u64.
pub const DEFAULT_MAX_STOCK: u64 = 1_000_000_000_000;
pub const DEFAULT_MAX_WAREHOUSES: u32 = 64;
/// The longest hold a command may ask for, in milliseconds (the API and the machine).
pub const DEFAULT_MAX_TTL_MS: u64 = 60 * 60 * 1000;

/// A priority order must name between 1 and `max` warehouses, each once: a repeated
/// warehouse would be offered (and held) twice. The API refuses such a request with a
/// 400; the state machine refuses it with the same rejection when it arrives another
/// way.
pub fn check_priority_order(order: &[WarehouseId], max: u32) -> Result<(), Rejection> {
    if order.is_empty() {
        return Err(Rejection::EmptyOrder);
    }
    if order.len() > max as usize {
        return Err(Rejection::TooManyWarehouses { max });
    }
    for (i, w) in order.iter().enumerate() {
        if order[..i].contains(w) {
            return Err(Rejection::DuplicateWarehouse { warehouse: w.clone() });
        }
    }
    Ok(())
}

// ----- commands -----------------------------------------------------------------------

/// What a client asks for. The tenant and the idempotency key travel beside it in
/// [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    Reserve(Reserve),
    Release(Release),
    Purchase(Purchase),
    Extend(Extend),
    Restock(Restock),
    Adjust(Adjust),
    SetStock(SetStock),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reserve {
    pub sku: Sku,
    pub quantity: Quantity,
    /// Reserve only from this warehouse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<WarehouseId>,
    /// How to allocate when no warehouse is named; default fewest splits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Reserve what is there when it is less than asked (never zero).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_partial: bool,
    /// Hold time; default and maximum are the processor's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub reservation: ReservationId,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purchase {
    pub reservation: ReservationId,
    /// Buy only this many of the held units; the rest return to stock. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Quantity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extend {
    pub reservation: ReservationId,
    /// New hold time counted from the command's log time.
    pub ttl_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restock {
    pub sku: Sku,
    pub warehouse: WarehouseId,
    pub quantity: Quantity,
}

/// A correction of on-hand stock (shrinkage, found units), never below what is reserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adjust {
    pub sku: Sku,
    pub warehouse: WarehouseId,
    pub delta: i64,
}

/// Set on-hand stock if the row is still at `expected_version` (0: row does not exist).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetStock {
    pub sku: Sku,
    pub warehouse: WarehouseId,
    pub on_hand: u64,
    pub expected_version: u64,
}

impl Command {
    /// The SKU the command touches: the commands topic's key.
    pub fn sku(&self) -> &Sku {
        match self {
            Command::Reserve(c) => &c.sku,
            Command::Release(c) => &c.reservation.sku,
            Command::Purchase(c) => &c.reservation.sku,
            Command::Extend(c) => &c.reservation.sku,
            Command::Restock(c) => &c.sku,
            Command::Adjust(c) => &c.sku,
            Command::SetStock(c) => &c.sku,
        }
    }

    /// Stock-keeping commands need the admin role.
    pub fn is_admin(&self) -> bool {
        matches!(self, Command::Restock(_) | Command::Adjust(_) | Command::SetStock(_))
    }
}

/// A client command with its tenant and idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub tenant: TenantId,
    pub command_id: CommandId,
    pub command: Command,
}

/// One record of the commands topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogCommand {
    /// A client's request.
    Request(Request),
    /// Moves log time forward so that holds expire with bounded delay on a quiet
    /// partition. Written by the processor that owns the partition.
    Tick,
}

// ----- stock and reservations ---------------------------------------------------------

/// Stock of one SKU in one warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct StockLevel {
    pub on_hand: u64,
    pub reserved: u64,
    pub sold: u64,
    /// Bumped on every change of this row.
    pub version: u64,
}

impl StockLevel {
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }
}

/// Units of a reservation taken from one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Allocation {
    pub warehouse: WarehouseId,
    pub quantity: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    Active,
    Purchased,
    Released,
    Expired,
}

impl ReservationState {
    pub fn is_final(self) -> bool {
        self != ReservationState::Active
    }
}

impl fmt::Display for ReservationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReservationState::Active => "active",
            ReservationState::Purchased => "purchased",
            ReservationState::Released => "released",
            ReservationState::Expired => "expired",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reservation {
    pub id: ReservationId,
    pub tenant: TenantId,
    pub quantity: u32,
    pub allocations: Vec<Allocation>,
    pub state: ReservationState,
    pub created_at: LogTime,
    pub expires_at: LogTime,
    /// Units bought when the state is `purchased`.
    #[serde(default)]
    pub purchased: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<LogTime>,
}

// ----- replies ------------------------------------------------------------------------

/// What happened to a command; every rejection is named and carries its numbers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outcome {
    Reserved {
        reservation: ReservationId,
        quantity: u32,
        allocations: Vec<Allocation>,
        expires_at: LogTime,
    },
    Released {
        reservation: ReservationId,
        returned: u32,
    },
    Purchased {
        reservation: ReservationId,
        quantity: u32,
        returned: u32,
    },
    Extended {
        reservation: ReservationId,
        expires_at: LogTime,
    },
    StockUpdated {
        sku: Sku,
        warehouse: WarehouseId,
        level: StockLevel,
    },
    Rejected(Rejection),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Rejection {
    InsufficientStock {
        requested: u32,
        available: u64,
    },
    UnknownSku,
    UnknownWarehouse {
        warehouse: WarehouseId,
    },
    NotFound,
    ReservationExpired {
        expired_at: LogTime,
    },
    AlreadyFinal {
        state: ReservationState,
    },
    /// The command id was used before with a different payload.
    Conflict,
    VersionMismatch {
        current: u64,
    },
    /// On-hand stock would drop below zero or below what is reserved.
    BelowReserved {
        on_hand: u64,
        reserved: u64,
        requested_on_hand: i64,
    },
    /// More than the reservation holds.
    ExceedsReservation {
        held: u32,
        requested: u32,
    },
    TtlTooLong {
        max_ms: u64,
    },
    InvalidTtl,
    /// A reserve asked for more units than one command may hold.
    QuantityTooLarge {
        max: u32,
    },
    /// A priority order with no warehouse in it.
    EmptyOrder,
    /// A priority order that names a warehouse twice (it would be counted twice).
    DuplicateWarehouse {
        warehouse: WarehouseId,
    },
    /// More warehouses than a SKU may have, or than a priority order may name.
    TooManyWarehouses {
        max: u32,
    },
    /// On-hand (or sold) stock of a row would pass the configured maximum.
    StockLimit {
        max: u64,
    },
    /// The record could not be applied at all (undecodable, unknown envelope version,
    /// on the wrong partition); it went to the dead-letter topic with this reason.
    Refused {
        detail: String,
    },
}

impl Rejection {
    /// Stable name, used for metrics and problem types.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::InsufficientStock { .. } => "insufficient_stock",
            Rejection::UnknownSku => "unknown_sku",
            Rejection::UnknownWarehouse { .. } => "unknown_warehouse",
            Rejection::NotFound => "not_found",
            Rejection::ReservationExpired { .. } => "reservation_expired",
            Rejection::AlreadyFinal { .. } => "already_final",
            Rejection::Conflict => "conflict",
            Rejection::VersionMismatch { .. } => "version_mismatch",
            Rejection::BelowReserved { .. } => "below_reserved",
            Rejection::ExceedsReservation { .. } => "exceeds_reservation",
            Rejection::TtlTooLong { .. } => "ttl_too_long",
            Rejection::InvalidTtl => "invalid_ttl",
            Rejection::QuantityTooLarge { .. } => "quantity_too_large",
            Rejection::EmptyOrder => "empty_order",
            Rejection::DuplicateWarehouse { .. } => "duplicate_warehouse",
            Rejection::TooManyWarehouses { .. } => "too_many_warehouses",
            Rejection::StockLimit { .. } => "stock_limit",
            Rejection::Refused { .. } => "refused",
        }
    }
}

/// The answer to one request. A retry of the same request gets this value again,
/// byte for byte (invariant I3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reply {
    pub tenant: TenantId,
    pub command_id: CommandId,
    /// Where the request that produced this reply was applied.
    pub position: Position,
    pub at: LogTime,
    pub outcome: Outcome,
}

// ----- events -------------------------------------------------------------------------

/// Domain events for other services (published at least once; dedupe by record id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    ReservationCreated {
        reservation: ReservationId,
        tenant: TenantId,
        quantity: u32,
        allocations: Vec<Allocation>,
        expires_at: LogTime,
    },
    ReservationExtended {
        reservation: ReservationId,
        expires_at: LogTime,
    },
    ReservationReleased {
        reservation: ReservationId,
        returned: u32,
    },
    ReservationExpired {
        reservation: ReservationId,
        expired_at: LogTime,
        returned: u32,
    },
    ReservationPurchased {
        reservation: ReservationId,
        quantity: u32,
        returned: u32,
    },
    StockChanged {
        sku: Sku,
        warehouse: WarehouseId,
        level: StockLevel,
    },
    OutOfStock {
        sku: Sku,
    },
    BackInStock {
        sku: Sku,
        available: u64,
    },
}

// ----- availability -------------------------------------------------------------------

/// Availability of one SKU as of a log position: the record of the compacted
/// availability topic and of the API's read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    pub sku: Sku,
    pub available: u64,
    pub warehouses: BTreeMap<WarehouseId, StockLevel>,
    pub position: Position,
}
