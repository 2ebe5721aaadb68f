//! Table-style fixtures: for every command, its success and each of its rejections.

use crate::support::*;
use state::DedupKey;
use topics::*;

/// One case: a history, then the command under test and what it must answer.
struct Case {
    name: &'static str,
    given: fn(&mut Log) -> Option<ReservationId>,
    when: fn(Option<&ReservationId>) -> Command,
    then: Outcome,
}

fn stocked(log: &mut Log) -> Option<ReservationId> {
    log.send(restock("s", "w1", 5));
    None
}

fn held(log: &mut Log) -> Option<ReservationId> {
    stocked(log);
    Some(log.hold(reserve("s", 3)))
}

fn bought(log: &mut Log) -> Option<ReservationId> {
    let r = held(log)?;
    log.send(purchase(&r, None));
    Some(r)
}

fn lapsed(log: &mut Log) -> Option<ReservationId> {
    let r = held(log)?;
    log.now += TTL;
    log.tick();
    Some(r)
}

fn id(r: Option<&ReservationId>) -> ReservationId {
    r.cloned().unwrap()
}

fn level(on_hand: u64, reserved: u64, sold: u64, version: u64) -> StockLevel {
    StockLevel { on_hand, reserved, sold, version }
}

fn rejected(r: Rejection) -> Outcome {
    Outcome::Rejected(r)
}

fn cases() -> Vec<Case> {
    let at = |ms: u64| LogTime(1_000_000 + ms);
    vec![
        Case {
            name: "reserve takes units from stock",
            given: stocked,
            when: |_| Command::Reserve(reserve("s", 2)),
            then: Outcome::Reserved {
                reservation: rid("s", 1),
                quantity: 2,
                allocations: vec![Allocation { warehouse: wh("w1"), quantity: 2 }],
                expires_at: at(TTL),
            },
        },
        Case {
            name: "reserve more than available",
            given: stocked,
            when: |_| Command::Reserve(reserve("s", 6)),
            then: rejected(Rejection::InsufficientStock { requested: 6, available: 5 }),
        },
        Case {
            name: "reserve partial takes what is left",
            given: held,
            when: |_| Command::Reserve(Reserve { allow_partial: true, ..reserve("s", 4) }),
            then: Outcome::Reserved {
                reservation: rid("s", 2),
                quantity: 2,
                allocations: vec![Allocation { warehouse: wh("w1"), quantity: 2 }],
                expires_at: at(TTL),
            },
        },
        Case {
            name: "reserve an unknown sku",
            given: stocked,
            when: |_| Command::Reserve(reserve("nope", 1)),
            then: rejected(Rejection::UnknownSku),
        },
        Case {
            name: "reserve from an unknown warehouse",
            given: stocked,
            when: |_| Command::Reserve(Reserve { warehouse: Some(wh("w9")), ..reserve("s", 1) }),
            then: rejected(Rejection::UnknownWarehouse { warehouse: wh("w9") }),
        },
        Case {
            name: "reserve with a ttl above the maximum",
            given: stocked,
            when: |_| Command::Reserve(Reserve { ttl_ms: Some(10 * TTL + 1), ..reserve("s", 1) }),
            then: rejected(Rejection::TtlTooLong { max_ms: 10 * TTL }),
        },
        Case {
            name: "reserve with a zero ttl",
            given: stocked,
            when: |_| Command::Reserve(Reserve { ttl_ms: Some(0), ..reserve("s", 1) }),
            then: rejected(Rejection::InvalidTtl),
        },
        Case {
            name: "release returns the units",
            given: held,
            when: |r| release(&id(r)),
            then: Outcome::Released { reservation: rid("s", 1), returned: 3 },
        },
        Case {
            name: "release an unknown reservation",
            given: stocked,
            when: |_| release(&rid("s", 99)),
            then: rejected(Rejection::NotFound),
        },
        Case {
            name: "release a purchased reservation",
            given: bought,
            when: |r| release(&id(r)),
            then: rejected(Rejection::AlreadyFinal { state: ReservationState::Purchased }),
        },
        Case {
            name: "purchase everything held",
            given: held,
            when: |r| purchase(&id(r), None),
            then: Outcome::Purchased { reservation: rid("s", 1), quantity: 3, returned: 0 },
        },
        Case {
            name: "purchase part, the rest returns",
            given: held,
            when: |r| purchase(&id(r), Some(1)),
            then: Outcome::Purchased { reservation: rid("s", 1), quantity: 1, returned: 2 },
        },
        Case {
            name: "purchase more than held",
            given: held,
            when: |r| purchase(&id(r), Some(4)),
            then: rejected(Rejection::ExceedsReservation { held: 3, requested: 4 }),
        },
        Case {
            name: "purchase an expired hold",
            given: lapsed,
            when: |r| purchase(&id(r), None),
            then: rejected(Rejection::ReservationExpired { expired_at: at(TTL) }),
        },
        Case {
            name: "purchase twice",
            given: bought,
            when: |r| purchase(&id(r), None),
            then: rejected(Rejection::AlreadyFinal { state: ReservationState::Purchased }),
        },
        Case {
            name: "extend moves the expiry",
            given: held,
            when: |r| extend(&id(r), 2 * TTL),
            then: Outcome::Extended { reservation: rid("s", 1), expires_at: at(2 * TTL) },
        },
        Case {
            name: "extend past the maximum",
            given: held,
            when: |r| extend(&id(r), 10 * TTL + 1),
            then: rejected(Rejection::TtlTooLong { max_ms: 10 * TTL }),
        },
        Case {
            name: "extend an expired hold",
            given: lapsed,
            when: |r| extend(&id(r), TTL),
            then: rejected(Rejection::ReservationExpired { expired_at: at(TTL) }),
        },
        Case {
            name: "restock creates a row",
            given: |_| None,
            when: |_| restock("s", "w1", 7),
            then: Outcome::StockUpdated {
                sku: sku("s"),
                warehouse: wh("w1"),
                level: level(7, 0, 0, 1),
            },
        },
        Case {
            name: "adjust down",
            given: stocked,
            when: |_| adjust("s", "w1", -2),
            then: Outcome::StockUpdated {
                sku: sku("s"),
                warehouse: wh("w1"),
                level: level(3, 0, 0, 2),
            },
        },
        Case {
            name: "adjust below what is reserved",
            given: held,
            when: |_| adjust("s", "w1", -3),
            then: rejected(Rejection::BelowReserved {
                on_hand: 5,
                reserved: 3,
                requested_on_hand: 2,
            }),
        },
        Case {
            name: "adjust an unknown sku",
            given: stocked,
            when: |_| adjust("x", "w1", 1),
            then: rejected(Rejection::UnknownSku),
        },
        Case {
            name: "adjust an unknown warehouse",
            given: stocked,
            when: |_| adjust("s", "w2", 1),
            then: rejected(Rejection::UnknownWarehouse { warehouse: wh("w2") }),
        },
        Case {
            name: "set with the expected version",
            given: stocked,
            when: |_| set_stock("s", "w1", 9, 1),
            then: Outcome::StockUpdated {
                sku: sku("s"),
                warehouse: wh("w1"),
                level: level(9, 0, 0, 2),
            },
        },
        Case {
            name: "set with a stale version",
            given: stocked,
            when: |_| set_stock("s", "w1", 9, 0),
            then: rejected(Rejection::VersionMismatch { current: 1 }),
        },
        Case {
            name: "set below what is reserved",
            given: held,
            when: |_| set_stock("s", "w1", 2, 2),
            then: rejected(Rejection::BelowReserved {
                on_hand: 5,
                reserved: 3,
                requested_on_hand: 2,
            }),
        },
        // Found as an outside client: [w1, w1] offered w1's 5 units twice and held 8.
        Case {
            name: "reserve with a warehouse twice in the priority order",
            given: stocked,
            when: |_| {
                Command::Reserve(Reserve {
                    strategy: Some(priority(&["w1", "w1"])),
                    ..reserve("s", 8)
                })
            },
            then: rejected(Rejection::DuplicateWarehouse { warehouse: wh("w1") }),
        },
        Case {
            name: "reserve with an empty priority order",
            given: stocked,
            when: |_| {
                Command::Reserve(Reserve { strategy: Some(priority(&[])), ..reserve("s", 1) })
            },
            then: rejected(Rejection::EmptyOrder),
        },
        Case {
            name: "reserve more than one command may hold",
            given: stocked,
            when: |_| Command::Reserve(reserve("s", 1_000_001)),
            then: rejected(Rejection::QuantityTooLarge { max: 1_000_000 }),
        },
        Case {
            name: "set above the stock maximum",
            given: |_| None,
            when: |_| set_stock("s", "w1", u64::MAX, 0),
            then: rejected(Rejection::StockLimit { max: MAX_STOCK }),
        },
        Case {
            name: "restock past the stock maximum",
            given: |log| {
                log.send(set_stock("s", "w1", MAX_STOCK, 0));
                None
            },
            when: |_| restock("s", "w1", 1),
            then: rejected(Rejection::StockLimit { max: MAX_STOCK }),
        },
        Case {
            name: "adjust past the stock maximum",
            given: stocked,
            when: |_| adjust("s", "w1", i64::MAX),
            then: rejected(Rejection::StockLimit { max: MAX_STOCK }),
        },
        Case {
            name: "adjust far below zero",
            given: stocked,
            when: |_| adjust("s", "w1", i64::MIN),
            then: rejected(Rejection::BelowReserved {
                on_hand: 5,
                reserved: 0,
                requested_on_hand: i64::MIN + 5,
            }),
        },
        Case {
            name: "restock one warehouse more than a SKU may have",
            given: |log| {
                for w in 0..64 {
                    log.send(restock("s", &format!("w{w}"), 1));
                }
                None
            },
            when: |_| restock("s", "w64", 1),
            then: rejected(Rejection::TooManyWarehouses { max: 64 }),
        },
    ]
}

const MAX_STOCK: u64 = 1_000_000_000_000;

fn priority(order: &[&str]) -> Strategy {
    Strategy::Priority { order: order.iter().map(|w| wh(w)).collect() }
}

#[test]
fn every_command_and_rejection() {
    let mut failures = Vec::new();
    for case in cases() {
        let mut log = Log::new();
        let r = (case.given)(&mut log);
        let before = log.state.clone();
        let got = log.send((case.when)(r.as_ref()));
        if got != case.then {
            failures
                .push(format!("{}:\n  expected {:?}\n  got      {:?}", case.name, case.then, got));
        }
        if matches!(got, Outcome::Rejected(_)) && log.state.stock_rows() != before.stock_rows() {
            failures.push(format!("{}: a rejection changed stock", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn expiry_on_tick_returns_units_and_emits_an_event() {
    let mut log = Log::new();
    log.send(restock("s", "w1", 5));
    let r = log.hold(reserve("s", 5));
    log.now += TTL - 1;
    assert!(log.tick().events.is_empty(), "not yet due");
    log.now += 1;
    let fx = log.tick();
    assert!(fx.events.contains(&Event::ReservationExpired {
        reservation: r.clone(),
        expired_at: LogTime(1_000_000 + TTL),
        returned: 5
    }));
    assert!(fx.events.contains(&Event::BackInStock { sku: sku("s"), available: 5 }));
    assert_eq!(log.level("s", "w1").reserved, 0);
    assert_eq!(log.state.reservation(&r).unwrap().state, ReservationState::Expired);
}

#[test]
fn expiry_also_happens_on_any_later_command() {
    let mut log = Log::new();
    log.send(restock("s", "w1", 1));
    let r = log.hold(reserve("s", 1));
    log.now += TTL;
    // Another SKU's command moves log time; the hold expires first.
    let fx = log.send_as(&CommandId::new("other").unwrap(), restock("t", "w1", 1));
    assert!(
        fx.events.iter().any(
            |e| matches!(e, Event::ReservationExpired { reservation, .. } if *reservation == r)
        )
    );
    assert_eq!(log.hold(reserve("s", 1)), rid("s", 3), "the returned unit can be held again");
    assert_eq!(log.state.reservation(&r).unwrap().state, ReservationState::Expired);
}

#[test]
fn log_time_never_goes_backwards() {
    let mut log = Log::new();
    log.send(restock("s", "w1", 1));
    log.now -= 500;
    log.tick();
    assert_eq!(log.state.log_time(), LogTime(1_000_000));
}

#[test]
fn a_duplicate_gets_the_original_reply_and_no_second_effect() {
    let mut log = Log::new();
    log.send(restock("s", "w1", 5));
    let key = CommandId::new("k1").unwrap();
    let first = log.send_as(&key, Command::Reserve(reserve("s", 2))).reply.unwrap();
    log.now += 10;
    let again = log.send_as(&key, Command::Reserve(reserve("s", 2)));
    assert_eq!(again.reply.unwrap(), first, "identical reply, original position and time");
    assert!(again.events.is_empty());
    assert_eq!(log.level("s", "w1").reserved, 2);
}

#[test]
fn a_different_payload_under_the_same_id_is_a_conflict() {
    let mut log = Log::new();
    log.send(restock("s", "w1", 5));
    let key = CommandId::new("k1").unwrap();
    log.send_as(&key, Command::Reserve(reserve("s", 2)));
    let other = log.send_as(&key, Command::Reserve(reserve("s", 3))).reply.unwrap();
    assert_eq!(other.outcome, Outcome::Rejected(Rejection::Conflict));
    assert_eq!(log.level("s", "w1").reserved, 2);
}

#[test]
fn command_ids_are_scoped_to_the_tenant() {
    let mut log = Log::new();
    log.send(restock("s", "w1", 5));
    let key = CommandId::new("k1").unwrap();
    log.send_as(&key, Command::Reserve(reserve("s", 2)));
    log.tenant = TenantId::new("other").unwrap();
    let theirs = log.send_as(&key, Command::Reserve(reserve("s", 1))).reply.unwrap();
    assert!(matches!(theirs.outcome, Outcome::Reserved { quantity: 1, .. }));
}

#[test]
fn another_tenants_reservation_is_not_found() {
    let mut log = Log::new();
    log.send(restock("s", "w1", 5));
    let r = log.hold(reserve("s", 2));
    log.tenant = TenantId::new("other").unwrap();
    assert_eq!(log.send(release(&r)), Outcome::Rejected(Rejection::NotFound));
    assert_eq!(log.send(purchase(&r, None)), Outcome::Rejected(Rejection::NotFound));
}

#[test]
fn command_ids_are_forgotten_after_the_window() {
    let mut log = Log::new();
    log.send(restock("s", "w1", 5));
    let key = CommandId::new("k1").unwrap();
    log.send_as(&key, Command::Reserve(reserve("s", 1)));
    log.now += crate::support::config().dedup_window_ms;
    log.tick();
    let scope = DedupKey { tenant: log.tenant.clone(), sku: sku("s"), command_id: key.clone() };
    assert!(log.state.dedup(&scope).is_none());
    let again = log.send_as(&key, Command::Reserve(reserve("s", 1))).reply.unwrap();
    assert!(matches!(again.outcome, Outcome::Reserved { .. }), "a new command now");
}

#[test]
fn purchase_sells_across_warehouses_in_allocation_order() {
    let mut log = Log::new();
    log.send(restock("s", "a", 2));
    log.send(restock("s", "b", 2));
    let r = log.hold(Reserve { strategy: Some(Strategy::MostAvailable), ..reserve("s", 3) });
    log.send(purchase(&r, Some(3)));
    let (a, b) = (log.level("s", "a"), log.level("s", "b"));
    assert_eq!((a.sold + b.sold, a.reserved + b.reserved, a.on_hand + b.on_hand), (3, 0, 1));
}

#[test]
fn events_name_every_transition() {
    let mut log = Log::new();
    log.send(restock("s", "w1", 1));
    let key = CommandId::new("r").unwrap();
    let fx = log.send_as(&key, Command::Reserve(reserve("s", 1)));
    let names: Vec<&str> = fx.events.iter().map(event_name).collect();
    assert_eq!(names, ["stock_changed", "reservation_created", "out_of_stock"]);
    assert_eq!(fx.touched, [sku("s")]);
}

fn event_name(e: &Event) -> &'static str {
    match e {
        Event::ReservationCreated { .. } => "reservation_created",
        Event::ReservationExtended { .. } => "reservation_extended",
        Event::ReservationReleased { .. } => "reservation_released",
        Event::ReservationExpired { .. } => "reservation_expired",
        Event::ReservationPurchased { .. } => "reservation_purchased",
        Event::StockChanged { .. } => "stock_changed",
        Event::OutOfStock { .. } => "out_of_stock",
        Event::BackInStock { .. } => "back_in_stock",
    }
}

#[test]
fn an_offset_at_or_before_the_applied_one_is_refused() {
    let mut log = Log::new();
    log.tick();
    log.offset = 0;
    let position = Position { partition: 0, offset: 0 };
    let err = log
        .machine
        .apply(
            &mut log.state,
            state::LogEntry { position, at: LogTime(0), command: &LogCommand::Tick },
        )
        .unwrap_err();
    assert_eq!(err, state::ApplyError::OffsetNotAfterApplied { offset: 0, applied: 0 });
}

/// One idempotency key used with two SKUs is two commands, whether the SKUs share a
/// partition or not: the scope is tenant, SKU and key, never the partition.
#[test]
fn one_key_with_two_skus_is_two_commands_wherever_the_skus_live() {
    let key = CommandId::new("same-key").unwrap();
    let hold = |log: &mut Log, s: &str| {
        log.send_as(&key, Command::Reserve(reserve(s, 1))).reply.unwrap().outcome
    };
    // Both SKUs in one partition.
    let mut shared = Log::new();
    shared.send(restock("a", "w1", 5));
    shared.send(restock("b", "w1", 5));
    let (a, b) = (hold(&mut shared, "a"), hold(&mut shared, "b"));
    assert!(matches!(a, Outcome::Reserved { .. }), "{a:?}");
    assert!(matches!(b, Outcome::Reserved { .. }), "the second SKU is not a conflict: {b:?}");
    // Each SKU in a partition of its own.
    let (mut pa, mut pb) = (Log::new(), Log::new());
    pa.send(restock("a", "w1", 5));
    pb.send(restock("b", "w1", 5));
    assert!(matches!(hold(&mut pa, "a"), Outcome::Reserved { .. }));
    assert!(matches!(hold(&mut pb, "b"), Outcome::Reserved { .. }));
    // The same key, SKU and body again: the original reply; another body: a conflict.
    let again = shared.send_as(&key, Command::Reserve(reserve("a", 1))).reply.unwrap().outcome;
    assert_eq!(again, a);
    let other = shared.send_as(&key, Command::Reserve(reserve("a", 2))).reply.unwrap().outcome;
    assert_eq!(other, Outcome::Rejected(Rejection::Conflict));
}
