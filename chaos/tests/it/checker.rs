//! The checker on hand-made histories: a clean one passes, and each invariant it claims
//! is caught when a history breaks it.

use chaos::check::{Context, Verdict, check};
use chaos::history::Entry;
use serde_json::{Value, json};

const SKU: &str = "s1";
const T0: i64 = 1_000_000;

/// Builds histories: every command is answered at the next offset of partition 0.
struct H {
    entries: Vec<Entry>,
    offset: i64,
}

fn entry(id: u64, kind: &str, method: &str, path: &str, body: Option<Value>) -> Entry {
    Entry {
        id,
        kind: kind.into(),
        tenant: "tenant-0".into(),
        sku: Some(SKU.into()),
        key: (method == "POST").then(|| format!("k-{id}")),
        method: method.into(),
        path: path.into(),
        body,
        hostile: false,
        api: 0,
        sent_ms: id as f64 * 10.0,
        done_ms: id as f64 * 10.0 + 5.0,
        status: None,
        error: None,
        response: None,
        of: None,
    }
}

impl H {
    fn new() -> Self {
        Self { entries: Vec::new(), offset: 0 }
    }

    fn next_id(&self) -> u64 {
        self.entries.len() as u64
    }

    /// A command answered 200 (or 409 when the outcome is a rejection) at log time `at`.
    fn command(&mut self, kind: &str, path: &str, body: Value, at: i64, outcome: Value) -> u64 {
        let id = self.next_id();
        let mut e = entry(id, kind, "POST", path, Some(body));
        let reply = json!({ "tenant": "tenant-0", "command_id": e.key, "at": T0 + at,
                            "position": { "partition": 0, "offset": self.offset }, "outcome": outcome });
        self.offset += 1;
        if outcome["type"] == "rejected" {
            e.status = Some(409);
            e.response = Some(
                json!({ "type": "x", "title": "x", "status": 409, "detail": "x", "reply": reply }),
            );
        } else {
            e.status = Some(200);
            e.response = Some(reply);
        }
        self.entries.push(e);
        id
    }

    fn restock(&mut self, w: &str, quantity: u64, at: i64, level: [u64; 3]) -> u64 {
        let [on_hand, reserved, sold] = level;
        self.command("restock", &format!("/v1/admin/stock/{SKU}/{w}/restock"), json!({ "quantity": quantity }), at,
            json!({ "type": "stock_updated", "sku": SKU, "warehouse": w,
                    "level": { "on_hand": on_hand, "reserved": reserved, "sold": sold, "version": 1 } }))
    }

    /// A reserve of `quantity` granted as `allocations`, expiring at `expires`.
    fn reserve(
        &mut self,
        quantity: u64,
        allocations: &[(&str, u64)],
        at: i64,
        expires: i64,
    ) -> String {
        let id = format!("{SKU}~{}", self.offset);
        let allocations: Vec<Value> =
            allocations.iter().map(|(w, q)| json!({ "warehouse": w, "quantity": q })).collect();
        self.command("reserve", "/v1/reservations", json!({ "sku": SKU, "quantity": quantity }), at,
            json!({ "type": "reserved", "reservation": id, "quantity": quantity, "allocations": allocations, "expires_at": T0 + expires }));
        id
    }

    fn on(&mut self, reservation: &str, action: &str, at: i64, outcome: Value) -> u64 {
        self.command(
            action,
            &format!("/v1/reservations/{reservation}/{action}"),
            json!({}),
            at,
            outcome,
        )
    }

    fn read(
        &mut self,
        kind: &str,
        min: Option<i64>,
        answer_offset: i64,
        rows: &[(&str, [u64; 3])],
    ) -> u64 {
        let id = self.next_id();
        let path = match min {
            Some(o) => format!("/v1/availability/{SKU}?min_position=0-{o}"),
            None => format!("/v1/availability/{SKU}"),
        };
        let mut e = entry(id, kind, "GET", &path, None);
        let warehouses: serde_json::Map<String, Value> = rows
            .iter()
            .map(|(w, [o, r, s])| {
                ((*w).to_owned(), json!({ "on_hand": o, "reserved": r, "sold": s, "version": 1 }))
            })
            .collect();
        let available: u64 = rows.iter().map(|(_, [o, r, _])| o - r).sum();
        e.status = Some(200);
        e.response = Some(json!({ "sku": SKU, "available": available, "warehouses": warehouses,
                                  "position": { "partition": 0, "offset": answer_offset } }));
        self.entries.push(e);
        id
    }

    /// A clean history: stock, a hold bought in part, a hold released, a hold expired,
    /// a retry, and the final reads.
    fn clean() -> Self {
        let mut h = Self::new();
        h.restock("w0", 10, 0, [10, 0, 0]);
        let a = h.reserve(4, &[("w0", 4)], 10, 5_000);
        h.on(
            &a,
            "purchase",
            20,
            json!({ "type": "purchased", "reservation": a, "quantity": 3, "returned": 1 }),
        );
        let b = h.reserve(2, &[("w0", 2)], 30, 5_000);
        h.on(&b, "release", 40, json!({ "type": "released", "reservation": b, "returned": 2 }));
        let _c = h.reserve(5, &[("w0", 5)], 50, 1_000);
        // Expired at 1000: its units are back for this restock at 2000.
        h.restock("w0", 1, 2_000, [8, 0, 3]);
        let retry = h.entries[1].clone();
        h.entries.push(Entry { id: h.next_id(), kind: "retry-same".into(), of: Some(1), ..retry });
        h.read("availability", Some(1), 1, &[("w0", [10, 4, 0])]);
        h.read("settled-read", None, 6, &[("w0", [8, 0, 3])]);
        h.read("final-read", Some(6), 6, &[("w0", [8, 0, 3])]);
        h
    }

    /// A reserve answered 202 and never again.
    fn accepted_never_answered(&mut self) {
        let id = self.next_id();
        let body = json!({ "sku": SKU, "quantity": 1 });
        let mut e = entry(id, "reserve", "POST", "/v1/reservations?wait=0", Some(body));
        e.status = Some(202);
        e.response = Some(json!({ "status": "pending" }));
        self.entries.push(e);
    }

    fn verdict(&self) -> Verdict {
        check(&self.entries, &Context { tick_bound_ms: 1_200, ..Context::default() })
    }
}

fn caught(v: &Verdict, check: &str) -> bool {
    v.findings.iter().any(|f| f.check == check && f.explained_by.is_none())
}

#[test]
fn a_clean_history_passes_and_every_check_looks_at_something() {
    let v = H::clean().verdict();
    assert!(v.ok(), "{:#?}", v.findings);
    let looked: Vec<&str> =
        v.checks.iter().filter(|c| c.checked > 0).map(|c| c.check.as_str()).collect();
    for check in [
        "model-replay",
        "conservation",
        "one-reply-per-key",
        "every-command-answered",
        "holds-end-once",
        "read-your-writes",
        "availability-consistent",
        "expired-holds-return",
    ] {
        assert!(looked.contains(&check), "{check} checked nothing: {looked:?}");
    }
}

#[test]
fn i1_a_hold_beyond_the_stock_is_caught() {
    let mut h = H::new();
    h.restock("w0", 3, 0, [3, 0, 0]);
    h.reserve(2, &[("w0", 2)], 10, 5_000);
    h.reserve(2, &[("w0", 2)], 20, 5_000);
    assert!(caught(&h.verdict(), "no-oversell"));
}

#[test]
fn i1_a_hold_granted_more_than_asked_or_from_the_wrong_warehouse_is_caught() {
    let mut h = H::new();
    h.restock("w0", 9, 0, [9, 0, 0]);
    h.restock("w1", 9, 1, [9, 0, 0]);
    let id = h.reserve(2, &[("w0", 3)], 10, 5_000);
    assert!(caught(&h.verdict(), "no-oversell"), "allocations sum past the quantity: {id}");
    let mut h = H::new();
    h.restock("w0", 9, 0, [9, 0, 0]);
    h.restock("w1", 9, 1, [9, 0, 0]);
    h.command("reserve", "/v1/reservations", json!({ "sku": SKU, "quantity": 1, "warehouse": "w0" }), 10,
        json!({ "type": "reserved", "reservation": "s1~2", "quantity": 1, "allocations": [{ "warehouse": "w1", "quantity": 1 }], "expires_at": T0 + 5_000 }));
    assert!(caught(&h.verdict(), "no-oversell"), "from a warehouse the request excluded");
}

#[test]
fn i1_an_availability_showing_more_reserved_than_on_hand_is_caught() {
    let mut h = H::clean();
    h.read("availability", None, 1, &[("w0", [3, 3, 0])]);
    let last = h.entries.last_mut().unwrap();
    last.response.as_mut().unwrap()["warehouses"]["w0"]["reserved"] = json!(4);
    assert!(caught(&h.verdict(), "availability-consistent"));
}

#[test]
fn i2_a_row_that_differs_from_the_history_is_caught() {
    let mut h = H::new();
    h.restock("w0", 5, 0, [5, 0, 0]);
    h.restock("w0", 5, 10, [11, 0, 0]);
    assert!(caught(&h.verdict(), "conservation"), "a unit appeared");
    let mut h = H::clean();
    let last = h.entries.last_mut().unwrap();
    last.response.as_mut().unwrap()["warehouses"]["w0"]["sold"] = json!(2);
    assert!(caught(&h.verdict(), "conservation"), "the final read lost a sale");
}

#[test]
fn i3_two_replies_for_one_key_and_a_conflict_for_an_identical_retry_are_caught() {
    let mut h = H::clean();
    let mut other = h.entries[1].clone();
    other.id = h.next_id();
    other.kind = "retry-same".into();
    other.response.as_mut().unwrap()["position"]["offset"] = json!(99);
    h.entries.push(other);
    assert!(caught(&h.verdict(), "one-reply-per-key"), "another reply");

    let mut h = H::clean();
    let mut retry = h.entries[1].clone();
    retry.id = h.next_id();
    retry.status = Some(409);
    let mut reply = retry.response.take().unwrap();
    reply["outcome"] = json!({ "type": "rejected", "reason": "conflict" });
    reply["position"]["offset"] = json!(50);
    retry.response =
        Some(json!({ "type": "x", "title": "x", "status": 409, "detail": "x", "reply": reply }));
    h.entries.push(retry);
    assert!(caught(&h.verdict(), "one-reply-per-key"), "an identical retry answered conflict");
}

#[test]
fn i4_an_accepted_command_never_answered_is_caught() {
    let mut h = H::clean();
    h.accepted_never_answered();
    assert!(caught(&h.verdict(), "every-command-answered"));
}

#[test]
fn i7_a_hold_used_after_its_time_or_ended_twice_is_caught() {
    let mut h = H::new();
    h.restock("w0", 5, 0, [5, 0, 0]);
    let a = h.reserve(2, &[("w0", 2)], 10, 100);
    h.on(
        &a,
        "purchase",
        500,
        json!({ "type": "purchased", "reservation": a, "quantity": 2, "returned": 0 }),
    );
    assert!(caught(&h.verdict(), "holds-end-once"), "bought after it expired");

    let mut h = H::new();
    h.restock("w0", 5, 0, [5, 0, 0]);
    let a = h.reserve(2, &[("w0", 2)], 10, 5_000);
    h.on(&a, "release", 20, json!({ "type": "released", "reservation": a, "returned": 2 }));
    h.on(&a, "release", 30, json!({ "type": "released", "reservation": a, "returned": 2 }));
    assert!(caught(&h.verdict(), "holds-end-once"), "released twice");

    let mut h = H::new();
    h.restock("w0", 5, 0, [5, 0, 0]);
    let a = h.reserve(2, &[("w0", 2)], 10, 5_000);
    h.on(
        &a,
        "purchase",
        20,
        json!({ "type": "rejected", "reason": "reservation_expired", "expired_at": T0 + 5_000 }),
    );
    assert!(caught(&h.verdict(), "holds-end-once"), "refused as expired before its time");
}

#[test]
fn i7_expired_units_not_back_are_caught() {
    // Still reserved when the settled read came after every hold's time.
    let mut h = H::clean();
    let settled = h.entries.iter().position(|e| e.kind == "settled-read").unwrap();
    h.entries[settled].response.as_mut().unwrap()["warehouses"]["w0"]["reserved"] = json!(5);
    assert!(caught(&h.verdict(), "expired-holds-return"));

    // Refused for stock that the expired hold had given back.
    let mut h = H::new();
    h.restock("w0", 5, 0, [5, 0, 0]);
    h.reserve(5, &[("w0", 5)], 10, 100);
    h.command("reserve", "/v1/reservations", json!({ "sku": SKU, "quantity": 3 }), 1_000,
        json!({ "type": "rejected", "reason": "insufficient_stock", "requested": 3, "available": 0 }));
    assert!(caught(&h.verdict(), "no-undersell"));
}

#[test]
fn i5_a_read_older_than_its_min_position_is_caught() {
    let mut h = H::clean();
    // The hold at offset 1 changed the SKU; a read asking for 0-1 answered as of 0-0.
    h.read("availability", Some(1), 0, &[("w0", [10, 0, 0])]);
    assert!(caught(&h.verdict(), "read-your-writes"));
}

#[test]
fn a_hostile_request_accepted_is_caught() {
    let mut h = H::clean();
    let id = h.next_id();
    let mut e = entry(id, "hostile", "POST", "/v1/reservations", None);
    e.hostile = true;
    e.status = Some(200);
    h.entries.push(e);
    assert!(caught(&h.verdict(), "hostile-refused"));
}

#[test]
fn a_loss_right_after_a_broker_kill_is_reported_as_explained() {
    let mut h = H::new();
    h.restock("w0", 5, 0, [5, 0, 0]);
    h.restock("w0", 5, 10, [5, 0, 0]); // the first restock was lost
    let kill_ms = h.entries[0].done_ms + 100.0;
    let v = check(
        &h.entries,
        &Context { tick_bound_ms: 1_200, broker_kills_ms: vec![kill_ms], ..Context::default() },
    );
    let f = v.findings.iter().find(|f| f.check == "conservation").expect("still reported");
    assert!(f.explained_by.as_deref().is_some_and(|e| e.contains("BROKERS.md")), "{f:?}");
    // No final read in this history: that is never excused by a loss.
    let unexplained: Vec<_> = v.findings.iter().filter(|f| f.explained_by.is_none()).collect();
    assert!(unexplained.iter().all(|f| f.invariant == "I4"), "{unexplained:?}");
    assert!(!v.ok(), "an unanswered read still fails the run");
}

/// The checker must not share code with what it checks.
#[test]
fn the_checker_uses_no_state_or_processor_code() {
    for (name, source) in [
        ("check.rs", include_str!("../../src/check.rs")),
        ("history.rs", include_str!("../../src/history.rs")),
    ] {
        for forbidden in
            ["state::", "processor::", "topics::", "use state", "use processor", "use topics"]
        {
            assert!(!source.contains(forbidden), "{name} mentions {forbidden}");
        }
    }
}

#[test]
fn an_unanswered_command_is_excused_only_on_a_partition_halted_as_a_gap() {
    let mut h = H::clean();
    h.accepted_never_answered();
    let kill = h.entries[0].done_ms + 1.0;
    let judge = |halted: &[i64]| {
        let ctx = Context {
            tick_bound_ms: 1_200,
            broker_kills_ms: vec![kill],
            halted_gaps: halted.iter().copied().collect(),
        };
        check(&h.entries, &ctx)
    };
    assert!(caught(&judge(&[]), "every-command-answered"), "a broker loss alone excuses nothing");
    let v = judge(&[0]);
    let f = v.findings.iter().find(|f| f.check == "every-command-answered").unwrap();
    assert!(f.explained_by.as_deref().is_some_and(|e| e.contains("gap")), "{f:?}");
}

#[test]
fn i7_a_partial_reserve_refused_while_units_were_there_is_caught() {
    let mut h = H::new();
    h.restock("w0", 2, 0, [2, 0, 0]);
    let body = json!({ "sku": SKU, "quantity": 3, "allow_partial": true });
    h.command("reserve", "/v1/reservations", body, 10,
        json!({ "type": "rejected", "reason": "insufficient_stock", "requested": 3, "available": 2 }));
    assert!(caught(&h.verdict(), "no-undersell"), "2 units could have been held");
}

#[test]
fn i2_a_row_in_the_final_read_that_the_history_never_made_is_caught() {
    let mut h = H::clean();
    let last = h.entries.last_mut().unwrap();
    last.response.as_mut().unwrap()["warehouses"]["w9"] =
        json!({ "on_hand": 5, "reserved": 0, "sold": 0, "version": 1 });
    assert!(caught(&h.verdict(), "conservation"));
}
