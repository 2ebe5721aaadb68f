//! Golden bytes: every message kind, encoded, must equal the checked-in file byte for
//! byte, and the file must decode back to the same value. A failing test here means
//! the wire format changed: bump `VERSION` or make the change additive.
//! `SKUFLOW_BLESS=1 cargo test -p topics --test it golden::` rewrites the files after a
//! deliberate change (review the diff).

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use topics::codec::{DecodeError, from_json, to_json};
use topics::*;

use crate::support::*;

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    name: &str,
    value: Envelope<T>,
) {
    let path = crate::manifest_dir().join("tests/golden").join(format!("{name}.json"));
    let bytes = to_json(&value).unwrap();
    if std::env::var_os("SKUFLOW_BLESS").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let golden = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        String::from_utf8_lossy(&golden),
        "{name}: encoding changed"
    );
    assert_eq!(
        from_json::<T>(Some(&golden)).unwrap(),
        value,
        "{name}: golden does not decode to the value"
    );
}

fn request(name: &str, command: Command) {
    let body = LogCommand::Request(Request {
        tenant: tenant(),
        command_id: CommandId::new("order-7").unwrap(),
        command,
    });
    check(&format!("command_{name}"), Envelope::command(body));
}

#[test]
fn commands() {
    request(
        "reserve",
        Command::Reserve(Reserve {
            sku: sku(),
            quantity: Quantity::new(3).unwrap(),
            warehouse: None,
            strategy: Some(Strategy::Priority { order: vec![wh("w2"), wh("w1")] }),
            allow_partial: true,
            ttl_ms: Some(60_000),
        }),
    );
    request(
        "reserve_minimal",
        Command::Reserve(Reserve {
            sku: sku(),
            quantity: Quantity::new(1).unwrap(),
            warehouse: Some(wh("w1")),
            strategy: None,
            allow_partial: false,
            ttl_ms: None,
        }),
    );
    request("release", Command::Release(Release { reservation: rid() }));
    request(
        "purchase",
        Command::Purchase(Purchase { reservation: rid(), quantity: Quantity::new(2) }),
    );
    request("extend", Command::Extend(Extend { reservation: rid(), ttl_ms: 30_000 }));
    request(
        "restock",
        Command::Restock(Restock {
            sku: sku(),
            warehouse: wh("w1"),
            quantity: Quantity::new(100).unwrap(),
        }),
    );
    request("adjust", Command::Adjust(Adjust { sku: sku(), warehouse: wh("w1"), delta: -4 }));
    request(
        "set_stock",
        Command::SetStock(SetStock {
            sku: sku(),
            warehouse: wh("w1"),
            on_hand: 50,
            expected_version: 7,
        }),
    );
    check("command_tick", Envelope::command(LogCommand::Tick));
}

fn reply(name: &str, outcome: Outcome) {
    let reply = Reply {
        tenant: tenant(),
        command_id: CommandId::new("order-7").unwrap(),
        position: Position { partition: 3, offset: 42 },
        at: LogTime(1_700_000_000_000),
        outcome,
    };
    check(&format!("reply_{name}"), Envelope::output(id(), reply));
}

#[test]
fn replies() {
    let at = LogTime(1_700_000_060_000);
    reply(
        "reserved",
        Outcome::Reserved { reservation: rid(), quantity: 3, allocations: alloc(), expires_at: at },
    );
    reply("released", Outcome::Released { reservation: rid(), returned: 3 });
    reply("purchased", Outcome::Purchased { reservation: rid(), quantity: 2, returned: 1 });
    reply("extended", Outcome::Extended { reservation: rid(), expires_at: at });
    reply(
        "stock_updated",
        Outcome::StockUpdated { sku: sku(), warehouse: wh("w1"), level: level() },
    );
    let rejections = [
        Rejection::InsufficientStock { requested: 5, available: 2 },
        Rejection::UnknownSku,
        Rejection::UnknownWarehouse { warehouse: wh("w9") },
        Rejection::NotFound,
        Rejection::ReservationExpired { expired_at: at },
        Rejection::AlreadyFinal { state: ReservationState::Purchased },
        Rejection::Conflict,
        Rejection::VersionMismatch { current: 8 },
        Rejection::BelowReserved { on_hand: 5, reserved: 3, requested_on_hand: 2 },
        Rejection::ExceedsReservation { held: 3, requested: 4 },
        Rejection::TtlTooLong { max_ms: 3_600_000 },
        Rejection::InvalidTtl,
        Rejection::QuantityTooLarge { max: 1_000_000 },
        Rejection::EmptyOrder,
        Rejection::DuplicateWarehouse { warehouse: wh("w1") },
        Rejection::TooManyWarehouses { max: 64 },
        Rejection::StockLimit { max: 1_000_000_000_000 },
        Rejection::Refused { detail: "unsupported_version: envelope version 9".into() },
    ];
    for r in rejections {
        reply(&format!("rejected_{}", r.reason()), Outcome::Rejected(r));
    }
}

#[test]
fn events() {
    let at = LogTime(1_700_000_060_000);
    let events = [
        (
            "reservation_created",
            Event::ReservationCreated {
                reservation: rid(),
                tenant: tenant(),
                quantity: 3,
                allocations: alloc(),
                expires_at: at,
            },
        ),
        ("reservation_extended", Event::ReservationExtended { reservation: rid(), expires_at: at }),
        ("reservation_released", Event::ReservationReleased { reservation: rid(), returned: 3 }),
        (
            "reservation_expired",
            Event::ReservationExpired { reservation: rid(), expired_at: at, returned: 3 },
        ),
        (
            "reservation_purchased",
            Event::ReservationPurchased { reservation: rid(), quantity: 2, returned: 1 },
        ),
        ("stock_changed", Event::StockChanged { sku: sku(), warehouse: wh("w1"), level: level() }),
        ("out_of_stock", Event::OutOfStock { sku: sku() }),
        ("back_in_stock", Event::BackInStock { sku: sku(), available: 4 }),
    ];
    for (name, e) in events {
        check(&format!("event_{name}"), Envelope::output(id(), e));
    }
}

#[test]
fn availability() {
    let warehouses = BTreeMap::from([(wh("w1"), level()), (wh("w2"), StockLevel::default())]);
    let a = Availability {
        sku: sku(),
        available: 7,
        warehouses,
        position: Position { partition: 3, offset: 42 },
    };
    check("availability", Envelope::output(id(), a));
}

#[test]
fn decode_failures_are_values_with_reasons() {
    let cases: [(Option<&[u8]>, &str); 5] = [
        (None, "empty"),
        (Some(b"{not json"), "malformed"),
        (Some(br#"{"v":2,"body":{"type":"tick"}}"#), "unsupported_version"),
        (Some(br#"{"v":1,"body":{"type":"launch"}}"#), "malformed"),
        (Some(br#"{"v":1,"body":{"type":"request","tenant":"t","command_id":"c","command":{"type":"reserve","sku":"bad sku","quantity":1}}}"#), "malformed"),
    ];
    for (bytes, reason) in cases {
        let err: DecodeError = from_json::<LogCommand>(bytes).unwrap_err();
        assert_eq!(err.reason(), reason, "{err}");
    }
}

#[test]
fn zero_quantities_and_unknown_fields_are_refused() {
    let zero = br#"{"v":1,"body":{"type":"request","tenant":"t","command_id":"c","command":{"type":"reserve","sku":"s","quantity":0}}}"#;
    assert!(from_json::<LogCommand>(Some(zero)).is_err());
    let extra = br#"{"v":1,"body":{"type":"request","tenant":"t","command_id":"c","command":{"type":"release","reservation":"s~1","force":true}}}"#;
    assert!(from_json::<LogCommand>(Some(extra)).is_err());
}
