//! Sample values shared by the wire-format tests.
#![allow(dead_code)]

use topics::*;

pub fn sku() -> Sku {
    Sku::new("sku-1").unwrap()
}
pub fn wh(s: &str) -> WarehouseId {
    WarehouseId::new(s).unwrap()
}
pub fn rid() -> ReservationId {
    ReservationId::new(sku(), 42)
}
pub fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}
pub fn id() -> RecordId {
    RecordId { partition: 3, offset: 42, index: 1 }
}
pub fn level() -> StockLevel {
    StockLevel { on_hand: 10, reserved: 3, sold: 2, version: 7 }
}
pub fn alloc() -> Vec<Allocation> {
    vec![
        Allocation { warehouse: wh("w1"), quantity: 2 },
        Allocation { warehouse: wh("w2"), quantity: 1 },
    ]
}
