//! The API under a burst of hostile and careless requests: bad JSON, wrong types, huge
//! numbers, unicode and control characters, overlong ids, wrong content types, duplicate
//! headers, path traversal, repeated keys with other payloads, stock commands from a
//! client. Every one is answered 4xx problem+json, nothing of the stock or the earlier
//! reservation changes, and the service goes on serving.

use reqwest::blocking::RequestBuilder;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::http::*;

/// A small deterministic generator, so the burst is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn coin(&mut self) -> bool {
        self.next().is_multiple_of(2)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

const BURST: usize = 2_000;

#[test]
fn a_burst_of_hostile_requests_is_refused_without_changing_anything() {
    let stack = Stack::start(&["--rate", "1000000", "--burst", "1000000"]);
    stack.restock("abuse-1", "main", 10);
    let (status, held, _) = stack.post(
        "/v1/reservations",
        ACME,
        "abuse-hold",
        json!({ "sku": "abuse-1", "quantity": 3, "ttl_ms": 600_000 }),
    );
    assert_eq!(status, 200, "{held}");
    let id = held["outcome"]["reservation"].as_str().unwrap().to_owned();
    let position = position_of(&held);
    let before = availability(&stack, &position);
    assert_eq!(before["available"], 7, "{before}");

    let bad_bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"\"abuse-1\"".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x01],
        br#"{"sku": "abuse-1", "quantity": "ten"}"#.to_vec(),
        br#"{"sku": "abuse-1", "quantity": -1}"#.to_vec(),
        br#"{"sku": "abuse-1", "quantity": 0}"#.to_vec(),
        br#"{"sku": "abuse-1", "quantity": 1e30}"#.to_vec(),
        br#"{"sku": "abuse-1", "quantity": 18446744073709551616}"#.to_vec(),
        br#"{"sku": "abuse-1", "quantity": 4294967296}"#.to_vec(),
        br#"{"sku": "abuse-1", "quantity": 1, "ttl_ms": 99999999999999}"#.to_vec(),
        br#"{"sku": "abuse-1", "quantity": 1, "ttl_ms": 0}"#.to_vec(),
        br#"{"sku": 12, "quantity": 1}"#.to_vec(),
        br#"{"sku": "abuse-1", "quantity": 1, "evil": true}"#.to_vec(),
        br#"{"sku": "abuse-1", "sku": "abuse-2", "quantity": 1}"#.to_vec(),
        br#"{"sku": "abus\u0000e-1", "quantity": 1}"#.to_vec(),
        "{\"sku\": \"abusé-1\", \"quantity\": 1}".as_bytes().to_vec(),
        "{\"sku\": \"\u{1F4A5}\", \"quantity\": 1}".as_bytes().to_vec(),
        format!("{{\"sku\": \"{}\", \"quantity\": 1}}", "s".repeat(10_000)).into_bytes(),
        br#"{"sku": "../../etc/passwd", "quantity": 1}"#.to_vec(),
        br#"{"sku": "abuse-1", "quantity": 1, "warehouses": ["main", "main"]}"#.to_vec(),
        br#"{"sku": "abuse-1", "quantity": 1, "strategy": "steal"}"#.to_vec(),
    ];
    // (Control characters and raw non-ASCII cannot be sent in a header by the client
    // library; their escapes can.)
    let bad_keys = [
        "%07bell".to_owned(),
        "%C3%A9".to_owned(),
        "x".repeat(1_000),
        String::new(),
        "two words".to_owned(),
        "a\tb".to_owned(),
    ];
    let bad_paths = [
        "/v1/reservations/..%2F..%2Fetc%2Fpasswd",
        "/v1/reservations/%2e%2e",
        "/v1/availability/%00",
        "/v1/availability/a%20b",
        "/v1/reservations/abuse-1~notanumber",
        "/v1/reservations/abuse-1~99999999999999999999999",
        "/v1/commands/x?at=not-a-position",
        "/v1/commands/x?at=9-99999999999999999999",
        "/v1/availability/abuse-1?min_position=banana",
        "/v1/availability/abuse-1?wait=-1",
        "/v1/../v1/availability/abuse-1/extra",
    ];
    let mut rng = Rng(0x5eed);
    let url = |path: &str| format!("{}{path}", stack.url);
    for i in 0..BURST {
        let key = format!("abuse-{i}");
        let request: RequestBuilder = match rng.next() % 8 {
            // A reserve with a broken body.
            0 | 1 => stack
                .client
                .post(url("/v1/reservations"))
                .header("X-Api-Key", ACME)
                .header("Idempotency-Key", &key)
                .header(CONTENT_TYPE, "application/json")
                .body(rng.pick(&bad_bodies).clone()),
            // A valid body with a broken idempotency key, or two of them.
            2 => {
                let r = stack
                    .client
                    .post(url("/v1/reservations"))
                    .header("X-Api-Key", ACME)
                    .json(&json!({ "sku": "abuse-1", "quantity": 1 }));
                if rng.coin() {
                    r.header("Idempotency-Key", rng.pick(&bad_keys).as_str())
                } else {
                    r
                }
            }
            // The wrong content type, or none.
            3 => {
                let r = stack
                    .client
                    .post(url("/v1/reservations"))
                    .header("X-Api-Key", ACME)
                    .header("Idempotency-Key", &key)
                    .body(r#"{"sku": "abuse-1", "quantity": 1}"#);
                if rng.coin() { r.header(CONTENT_TYPE, "text/plain") } else { r }
            }
            // Hostile paths and queries.
            4 => {
                let path: &&str = rng.pick(&bad_paths);
                stack.client.get(url(path)).header("X-Api-Key", ACME)
            }
            // The held reservation's key with another payload: a conflict, nothing held.
            5 => stack
                .client
                .post(url("/v1/reservations"))
                .header("X-Api-Key", ACME)
                .header("Idempotency-Key", "abuse-hold")
                .json(&json!({ "sku": "abuse-1", "quantity": 1 + rng.next() % 5 })),
            // Stock commands from a client, and from nobody.
            6 => {
                let r = stack
                    .client
                    .post(url("/v1/admin/stock/abuse-1/main/set"))
                    .header("Idempotency-Key", &key)
                    .json(&json!({ "on_hand": u64::MAX, "expected_version": 0 }));
                if rng.coin() { r.header("X-Api-Key", ACME) } else { r }
            }
            // Another tenant acting on acme's reservation, or a forged credential.
            _ => {
                let r = stack
                    .client
                    .post(url(&format!("/v1/reservations/{id}/release")))
                    .header("Idempotency-Key", &key);
                if rng.coin() {
                    r.header("X-Api-Key", OTHER)
                } else {
                    r.header("Authorization", "Bearer eyJhbGciOiJub25lIn0.e30.")
                }
            }
        };
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = response.json().unwrap_or(Value::Null);
        assert!((400..500).contains(&status), "request {i}: {status} {body}");
        assert_eq!(content_type, "application/problem+json", "request {i}: {status} {body}");
        assert!(
            body["type"].as_str().is_some_and(|t| t.starts_with("https://skuflow.dev/problems/")),
            "request {i}: {body}"
        );
    }

    // Alive, and nothing changed: the stock, the hold, and the hold can still be bought.
    assert_eq!(stack.client.get(url("/healthz")).send().unwrap().status(), 200);
    let after = availability(&stack, &position);
    assert_eq!(after["available"], before["available"], "{after}");
    assert_eq!(after["warehouses"], before["warehouses"], "{after}");
    let (status, reservation, _) = stack.get(&format!("/v1/reservations/{id}"), ACME);
    assert_eq!((status, reservation["state"].as_str()), (200, Some("active")), "{reservation}");
    // (A `null` body, which the schema allows, buys all of it.)
    let (status, bought, _) =
        stack.post(&format!("/v1/reservations/{id}/purchase"), ACME, "abuse-buy", Value::Null);
    assert_eq!(status, 200, "{bought}");
}

/// Availability of the SKU as of at least `position` (the hold).
fn availability(stack: &Stack, position: &str) -> Value {
    let path = format!("/v1/availability/abuse-1?min_position={position}&wait=10000");
    let (status, body, _) = stack.get(&path, ACME);
    assert_eq!(status, 200, "{body}");
    body
}
