//! The HTTP API end to end: `skuflow up --brokers` (processor + API) against the real dev
//! broker, driven over HTTP.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::http::*;

fn reserve(sku: &str, quantity: u32) -> Value {
    json!({ "sku": sku, "quantity": quantity })
}

#[test]
fn concurrent_clients_on_a_hot_sku_get_exactly_the_stock() {
    let stack = Stack::start(&[]);
    const STOCK: usize = 40;
    stack.restock("hot", "main", STOCK as u32);
    let stack = std::sync::Arc::new(stack);
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let stack = stack.clone();
            std::thread::spawn(move || {
                (0..6)
                    .map(|i| {
                        stack.post(
                            "/v1/reservations",
                            ACME,
                            &format!("h-{w}-{i}"),
                            reserve("hot", 1),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let answers: Vec<Reply> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let held = answers.iter().filter(|(s, _, _)| *s == 200).count();
    let refused = answers
        .iter()
        .filter(|(s, b, _)| {
            *s == 409 && b["type"].as_str().unwrap().ends_with("/insufficient-stock")
        })
        .count();
    assert_eq!(held, STOCK, "exactly the stock is held");
    assert_eq!(held + refused, answers.len(), "every other request is refused as insufficient");
    assert!(
        answers.iter().all(|(_, _, h)| h.get("traceresponse").is_none()),
        "no trace is started for requests without traceparent while export is off"
    );

    // Read-your-writes: with the position of the last hold, availability shows 0.
    let (_, last, _) = answers
        .iter()
        .filter(|(s, _, _)| *s == 200)
        .max_by_key(|(_, b, _)| b["position"]["offset"].as_i64())
        .unwrap();
    let at = position_of(last);
    let (status, availability, _) =
        stack.get(&format!("/v1/availability/hot?min_position={at}"), ACME);
    assert_eq!(status, 200, "{availability}");
    assert_eq!(availability["available"], 0);
    assert_eq!(availability["warehouses"]["main"]["reserved"], STOCK as u64);
    let future = format!("{}-{}", last["position"]["partition"], 1_000_000);
    let (status, problem, _) =
        stack.get(&format!("/v1/availability/hot?min_position={future}&wait=100"), ACME);
    assert_eq!(status, 412, "a position no command has is not visible: {problem}");

    let metrics =
        stack.client.get(format!("{}/metrics", stack.url)).send().unwrap().text().unwrap();
    for line in [
        "skuflow_api_responses_total{route=\"/v1/reservations\",status=\"200\"} 40",
        "skuflow_api_request_seconds_bucket{route=\"/v1/reservations\"",
    ] {
        assert!(metrics.contains(line), "metrics lack {line}:\n{metrics}");
    }
}

#[test]
fn a_hold_expires_returns_its_units_and_cannot_be_bought() {
    let stack = Stack::start(&[]);
    stack.restock("fleeting", "main", 5);
    let (status, held, _) = stack.post(
        "/v1/reservations",
        ACME,
        "short-hold",
        json!({ "sku": "fleeting", "quantity": 3, "ttl_ms": 300 }),
    );
    assert_eq!(status, 200, "{held}");
    let id = held["outcome"]["reservation"].as_str().unwrap().to_owned();

    // Ticks move log time on the quiet partition; the view shows the expiry.
    let started = Instant::now();
    loop {
        let (_, r, _) = stack.get(&format!("/v1/reservations/{id}"), ACME);
        if r["state"] == "expired" {
            assert_eq!(r["returned"], 3);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never expired: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, problem, _) =
        stack.post(&format!("/v1/reservations/{id}/purchase"), ACME, "late-buy", json!({}));
    assert_eq!(status, 409);
    assert!(problem["type"].as_str().unwrap().ends_with("/reservation-expired"), "{problem}");
    assert!(problem["reply"]["outcome"]["expired_at"].is_u64(), "the rejection carries expired_at");
    let (_, availability, _) = stack.get("/v1/availability/fleeting", ACME);
    assert_eq!(availability["available"], 5, "the units came back");
}

#[test]
fn retries_are_identical_conflicts_are_refused_and_any_instance_answers_polls() {
    let mut stack = Stack::start(&[]);
    stack.restock("sku-r", "main", 10);
    let first = stack.post("/v1/reservations", ACME, "same-key", reserve("sku-r", 2));
    let retry = stack.post("/v1/reservations", ACME, "same-key", reserve("sku-r", 2));
    assert_eq!(first.0, 200);
    assert_eq!(first.1, retry.1, "a retry gets the identical reply");
    let (status, conflict, _) =
        stack.post("/v1/reservations", ACME, "same-key", reserve("sku-r", 3));
    assert_eq!(status, 409);
    assert!(conflict["type"].as_str().unwrap().ends_with("/conflict"), "{conflict}");

    // Accepted without waiting: 202 with a Location (or, if the reply was already there,
    // 200); either way another instance, started later, finds it by its position.
    let (status, first, headers) =
        stack.post("/v1/reservations?wait=0", ACME, "poll-me", reserve("sku-r", 1));
    assert!(status == 202 || status == 200, "{first}");
    if status == 202 {
        assert!(headers["location"].to_str().unwrap().contains("?at="));
    }
    let location = format!("/v1/commands/poll-me?at={}", position_of(&first));
    let second = stack.second_api();
    let started = Instant::now();
    let reply = loop {
        let (status, body, _) = stack.get_from(&second, &location, ACME);
        if status == 200 {
            break body;
        }
        assert_eq!(status, 404, "{body}");
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(reply["command_id"], "poll-me");
    // The same poll by another tenant finds nothing.
    let (status, _, _) = stack.get_from(&second, &location, OTHER);
    assert_eq!(status, 404, "another tenant's command is not found");
}

fn jwt(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[test]
fn authentication_and_tenant_isolation() {
    let stack = Stack::start(&[]);
    stack.restock("sku-a", "main", 10);
    let (_, held, _) = stack.post("/v1/reservations", ACME, "acme-hold", reserve("sku-a", 1));
    let id = held["outcome"]["reservation"].as_str().unwrap().to_owned();

    let get = |auth: Option<(&str, String)>| {
        let mut r = stack.client.get(format!("{}/v1/reservations/{id}", stack.url));
        if let Some((name, value)) = auth {
            r = r.header(name, value);
        }
        r.send().unwrap().status().as_u16()
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let good = json!({ "sub": "svc", "tenant": "acme", "aud": "skuflow", "exp": now + 600 });
    // The reservations view follows the events topic: wait until it has the hold.
    let started = Instant::now();
    while get(Some(("X-Api-Key", ACME.into()))) != 200 {
        assert!(started.elapsed() < Duration::from_secs(30), "the view never showed {id}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(None), 401, "no credential");
    assert_eq!(get(Some(("X-Api-Key", "wrong".into()))), 401, "unknown key");
    assert_eq!(get(Some(("X-Api-Key", ACME.into()))), 200);
    assert_eq!(get(Some(("X-Api-Key", OTHER.into()))), 404, "another tenant's reservation");
    assert_eq!(get(Some(("Authorization", format!("Bearer {}", jwt(good.clone()))))), 200);
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    assert_eq!(get(Some(("Authorization", format!("Bearer {}", jwt(wrong_aud))))), 401);
    let mut expired = good.clone();
    expired["exp"] = json!(now - 600);
    assert_eq!(get(Some(("Authorization", format!("Bearer {}", jwt(expired))))), 401);
    // alg "none": header {"alg":"none"} and no signature.
    let none = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        base64url(&serde_json::to_vec(&good).unwrap())
    );
    assert_eq!(get(Some(("Authorization", format!("Bearer {none}")))), 401, "alg none refused");
    let mut other_tenant = good;
    other_tenant["tenant"] = json!("other");
    assert_eq!(get(Some(("Authorization", format!("Bearer {}", jwt(other_tenant))))), 404);

    let (status, problem, _) = stack.post(
        "/v1/admin/stock/sku-a/main/restock",
        ACME,
        "not-an-admin",
        json!({ "quantity": 1 }),
    );
    assert_eq!(status, 403);
    assert!(problem["type"].as_str().unwrap().ends_with("/forbidden"));

    // Tenancy of stock: one catalog per deployment. No client of any tenant changes it;
    // the operator's (admin) stock is what every tenant reserves from and reads.
    let (status, _, _) = stack.post(
        "/v1/admin/stock/sku-a/main/restock",
        OTHER,
        "other-not-an-admin",
        json!({ "quantity": 1 }),
    );
    assert_eq!(status, 403, "another tenant's client cannot change stock either");
    let (status, other_hold, _) =
        stack.post("/v1/reservations", OTHER, "other-hold", reserve("sku-a", 9));
    assert_eq!(status, 200, "another tenant reserves from the same catalog: {other_hold}");
    let (status, _, _) = stack.post("/v1/reservations", ACME, "acme-hold-2", reserve("sku-a", 1));
    assert_eq!(status, 409, "the catalog's 10 units are held (1 by acme, 9 by other)");
    let (_, availability, _) = stack.get("/v1/availability/sku-a", OTHER);
    assert_eq!(availability["available"], 0, "{availability}");
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn bad_input_is_a_problem_and_a_burst_over_the_limit_is_429() {
    let stack = Stack::start(&["--rate", "1", "--burst", "5"]);
    let (status, p, _) = stack.post(
        "/v1/reservations",
        ACME,
        "bad-1",
        json!({ "sku": "x", "quantity": 1, "extra": true }),
    );
    assert_eq!(
        (status, p["type"].as_str().unwrap()),
        (400, "https://skuflow.dev/problems/bad-request")
    );
    let (status, p, _) =
        stack.post("/v1/reservations", ACME, "bad-2", json!({ "sku": "x", "quantity": 1_000_000 }));
    assert_eq!(status, 400, "{p}");
    let (status, p, _) = stack.post(
        "/v1/reservations",
        ACME,
        "bad-3",
        json!({ "sku": "x", "quantity": 1, "ttl_ms": 999_999_999 }),
    );
    assert_eq!(status, 400, "{p}");
    let big = json!({ "sku": "x".repeat(20_000), "quantity": 1 });
    let (status, p, _) = stack.post("/v1/reservations", ACME, "bad-4", big);
    assert_eq!(status, 413, "a body over the limit: {p}");
    assert!(p["type"].as_str().unwrap().ends_with("/too-large"), "{p}");
    let (status, p, _) = stack.get("/v1/nothing-here", ACME);
    assert_eq!(
        (status, p["type"].as_str().unwrap()),
        (404, "https://skuflow.dev/problems/not-found")
    );

    let statuses: Vec<Reply> = (0..10).map(|_| stack.get("/v1/availability/x", ACME)).collect();
    let limited: Vec<_> = statuses.iter().filter(|(s, _, _)| *s == 429).collect();
    assert!(!limited.is_empty(), "a burst of 10 over a bucket of 5 is limited");
    assert!(limited.iter().all(|(_, p, h)| h.contains_key("retry-after")
        && p["type"] == "https://skuflow.dev/problems/rate-limited"));
    // The other tenant's credential has its own bucket.
    assert_ne!(stack.get("/v1/availability/x", OTHER).0, 429);
}

#[test]
fn schemathesis_finds_no_server_error_and_only_documented_statuses_types_and_bodies() {
    // Short waits: fuzzed positions that never become visible answer quickly (412).
    let stack = Stack::start(&["--wait-max-ms", "200"]);
    stack.restock("sku-1", "main", 100);
    let bin = broker::dev::install_root().join("bin/schemathesis");
    assert!(bin.exists(), "schemathesis missing at {}: run scripts/setup", bin.display());
    let out = std::process::Command::new(bin)
        .args([
            "run",
            &format!("{}/openapi.json", stack.url),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
        ])
        .args(["-H", &format!("X-Api-Key: {ACME_ADMIN}"), "--max-examples", "30", "--seed", "1"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}

#[test]
fn bulk_load_from_csv_is_summarised_and_idempotent() {
    let stack = Stack::start(&[]);
    let file = stack.cluster.dir.path().join("stock.csv");
    std::fs::write(
        &file,
        "op,sku,warehouse,amount\nrestock,bulk-1,north,7\nrestock,bulk-1,south,3\nadjust,bulk-1,north,-2\nrestock,bad sku,north,1\n",
    )
    .unwrap();
    let load = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_skuflow"))
            .args([
                "ingest",
                file.to_str().unwrap(),
                "--tenant",
                "acme",
                "--brokers",
                &stack.cluster.bootstrap,
            ])
            .output()
            .unwrap()
    };
    for _ in 0..2 {
        let out = load();
        let summary = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "a refused line fails the load:\n{summary}");
        assert!(summary.contains("accepted: 3"), "{summary}");
        assert!(summary.contains("refused:  1"), "{summary}");
        assert!(summary.contains("line 5: sku"), "{summary}");
        assert!(summary.contains("applied: 3"), "{summary}");
    }
    // A hold placed after both loads, read with its own position: 7 + 3 - 2 - 1 = 7
    // available only if the second load restocked nothing.
    let (status, held, _) =
        stack.post("/v1/reservations", ACME, "after-load", reserve("bulk-1", 1));
    assert_eq!(status, 200, "{held}");
    let at = position_of(&held);
    let (status, a, _) = stack.get(&format!("/v1/availability/bulk-1?min_position={at}"), ACME);
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["available"], 7, "loading the file twice restocks once: {a}");
}

/// The two sequences that once broke the ledger, sent by an outside client: over HTTP
/// they are 400s; written straight to the commands topic (a foreign producer, the ingest
/// library) they are named rejections. Either way nothing is oversold, nothing wraps, the
/// processor goes on and the auditor is clean.
#[test]
fn a_repeated_warehouse_and_u64_stock_are_refused_through_http_and_through_kafka() {
    let stack = Stack::start(&[]);
    stack.restock("ledger", "w1", 5);
    let twice = json!({"sku": "ledger", "quantity": 8, "strategy": {"type": "priority", "order": ["w1", "w1"]}});
    let (status, body, _) = stack.post("/v1/reservations", ACME, "twice", twice);
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("more than once"), "{body}");
    let empty =
        json!({"sku": "ledger", "quantity": 1, "strategy": {"type": "priority", "order": []}});
    assert_eq!(stack.post("/v1/reservations", ACME, "empty", empty).0, 400);
    let set = json!({"on_hand": u64::MAX, "expected_version": 0});
    let (status, body, _) = stack.post("/v1/admin/stock/ledger/w2/set", ACME_ADMIN, "huge", set);
    assert_eq!(status, 400, "{body}");
    let (status, body, _) = stack.post(
        "/v1/admin/stock/ledger/w2/adjust",
        ACME_ADMIN,
        "huge-delta",
        json!({"delta": i64::MIN}),
    );
    assert_eq!(status, 400, "{body}");

    // The same through Kafka, where no API stands in the way.
    use topics::*;
    let wh = |w: &str| WarehouseId::new(w).unwrap();
    let sku = Sku::new("ledger").unwrap();
    let records = [
        crate::support::request(
            "kafka-twice",
            Command::Reserve(Reserve {
                sku: sku.clone(),
                quantity: Quantity::new(8).unwrap(),
                warehouse: None,
                strategy: Some(Strategy::Priority { order: vec![wh("w1"), wh("w1")] }),
                allow_partial: false,
                ttl_ms: None,
            }),
        ),
        crate::support::request(
            "kafka-huge",
            Command::SetStock(SetStock {
                sku: sku.clone(),
                warehouse: wh("w2"),
                on_hand: u64::MAX,
                expected_version: 0,
            }),
        ),
        crate::support::request(
            "kafka-restock",
            Command::Restock(Restock {
                sku: sku.clone(),
                warehouse: wh("w2"),
                quantity: Quantity::new(1).unwrap(),
            }),
        ),
    ];
    stack.cluster.produce(&records);
    let replies = stack.cluster.wait_replies(4);
    let outcome = |id: &str| {
        replies.values().find(|r| r.command_id.as_str() == id).map(|r| r.outcome.clone())
    };
    assert_eq!(
        outcome("kafka-twice"),
        Some(Outcome::Rejected(Rejection::DuplicateWarehouse { warehouse: wh("w1") }))
    );
    assert_eq!(
        outcome("kafka-huge"),
        Some(Outcome::Rejected(Rejection::StockLimit { max: topics::DEFAULT_MAX_STOCK }))
    );
    assert!(
        matches!(outcome("kafka-restock"), Some(Outcome::StockUpdated { .. })),
        "the processor goes on"
    );
    // Nothing held beyond the stock: w1 still has its 5 units, w2 the one restocked.
    let started = Instant::now();
    loop {
        let (_, a, _) = stack.get("/v1/availability/ledger", ACME);
        if a["available"] == 6 {
            assert_eq!(a["warehouses"]["w1"]["reserved"], 0, "{a}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "availability {a}");
        std::thread::sleep(Duration::from_millis(100));
    }
    crate::support::assert_clean(&stack.cluster.audit());
}

/// Configuration that would fail open is refused at start: an empty or short JWT secret,
/// no credentials for a real cluster, the published development key off loopback.
#[test]
fn credentials_fail_closed_at_start() {
    let cluster = crate::support::Cluster::start();
    let refused = |args: &[&str], expect: &str| {
        let extra: &[&str] = if args[0] == "up" { &["--metrics-addr", "127.0.0.1:0"] } else { &[] };
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skuflow"))
            .args(args)
            .args(["--brokers", &cluster.bootstrap, "--bind", "127.0.0.1:0"])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must not start:\n{text}");
        assert!(text.contains(expect), "{args:?}: {expect:?} not in\n{text}");
    };
    refused(&["api", "--jwt-secret", ""], "at least 32 are required");
    refused(&["api", "--jwt-secret", "short-secret"], "at least 32 are required");
    refused(&["api"], "no credentials configured");
    let key = format!("acme:client:{}", hex::encode(api::hash_key("k")));
    refused(
        &["api", "--api-key", &key, "--topic-prefix", "typo"],
        "topic typo.commands does not exist",
    );
    refused(&["up", "--partitions", "4"], "no credentials configured");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skuflow"))
        .args(["up", "--brokers", &cluster.bootstrap, "--partitions", "4", "--dev-key"])
        .args(["--bind", "0.0.0.0:0", "--metrics-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("not loopback"), "{text}");
}

/// An idempotency key with `/`, `+` and `=` gets a Location that is one path segment, and
/// polling it finds the reply.
#[test]
fn a_location_with_a_slash_in_the_key_can_be_polled() {
    let stack = Stack::start(&[]);
    stack.restock("loc", "main", 3);
    let (status, body, headers) =
        stack.post("/v1/reservations?wait=0", ACME, "ord/1+x=y", reserve("loc", 1));
    assert!(status == 202 || status == 200, "{status} {body}");
    if status == 202 {
        let location = headers["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with("/v1/commands/ord%2F1%2Bx%3Dy?at="), "{location}");
        let reply = stack.poll(&location, ACME);
        assert_eq!(reply["command_id"], "ord/1+x=y", "{reply}");
    }
}

/// A poll with `at` answers the reply at that position (not the first reply seen for the
/// key), and a poll of a command the replies tail has not reached yet is answered 202
/// from memory, without a Kafka lookup.
#[test]
fn polls_answer_by_position_and_pending_polls_cost_no_lookup() {
    let stack = Stack::start(&["--rate", "100000", "--burst", "100000"]);
    stack.restock("poll", "main", 10);
    let (status, first, _) = stack.post("/v1/reservations", ACME, "K", reserve("poll", 2));
    assert_eq!(status, 200, "{first}");
    let (status, conflict, _) = stack.post("/v1/reservations", ACME, "K", reserve("poll", 3));
    assert_eq!(status, 409, "{conflict}");
    let at_conflict = position_of(&conflict["reply"]);
    let (status, body, _) = stack.get(&format!("/v1/commands/K?at={at_conflict}"), ACME);
    assert_eq!(status, 409, "by position: the conflict, not the key's first reply: {body}");
    let (status, body, _) = stack.get(&format!("/v1/commands/K?at={}", position_of(&first)), ACME);
    assert_eq!(status, 200, "{body}");

    let lookups = || {
        let text =
            stack.client.get(format!("{}/metrics", stack.url)).send().unwrap().text().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("skuflow_api_reply_lookups_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no lookup counter in\n{text}"))
    };
    let before = lookups();
    let partition = &first["position"]["partition"];
    for i in 0..2_000 {
        let (status, body, _) =
            stack.get(&format!("/v1/commands/K?at={partition}-{}", 1_000_000_000 + i), ACME);
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "pending");
    }
    assert_eq!(lookups(), before, "pending polls asked Kafka");
}

/// `/readyz` tells the truth. An API whose availability topic has another partition count
/// than the commands topic is not ready, says why, and answers reads 503 `not-ready`
/// (never a 404 for a SKU it cannot know); a new instance on a healthy cluster becomes
/// ready once its views have read every partition to its end, and then finds the SKUs
/// that existed before it started.
#[test]
fn readyz_tells_the_truth_and_reads_wait_for_it() {
    let mut stack = Stack::start(&[]);
    stack.restock("ready-sku", "main", 5);
    let second = stack.second_api();
    let started = Instant::now();
    loop {
        let r = stack.client.get(format!("{second}/readyz")).send().unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(started.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body, _) = stack.get_from(&second, "/v1/availability/ready-sku", ACME);
    assert_eq!((status, body["available"].as_u64()), (200, Some(5)), "{body}");

    let skewed = crate::support::Cluster::start_with(|specs| {
        for s in specs.iter_mut().filter(|s| s.name.ends_with(".availability")) {
            s.partitions = 2;
        }
    });
    let mut args: Vec<String> = ["api", "--brokers", &skewed.bootstrap, "--bind", "127.0.0.1:0"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.extend(crate::http::key_args());
    let url = stack.spawn(&args, "api listening on http://", "api-skewed");
    let r = stack.client.get(format!("{url}/readyz")).send().unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().unwrap();
    assert!(
        body["reason"].as_str().unwrap().contains("has 2 partitions, the commands topic 4"),
        "{body}"
    );
    let (status, body, headers) = stack.get_from(&url, "/v1/availability/ready-sku", ACME);
    assert_eq!(status, 503, "{body}");
    assert!(body["type"].as_str().unwrap().ends_with("/not-ready"), "{body}");
    assert_eq!(headers["retry-after"], "1");
}

/// Connection hygiene: a request without credentials is refused from its headers, before
/// its body is read (a client that never sends the body it announced gets 401 at once);
/// an authenticated body that does not arrive within `--body-timeout-ms` is 408
/// `body-timeout`. Both problem+json. (A body over the limit is 413 `too-large`: see
/// `bad_input_is_a_problem_and_a_burst_over_the_limit_is_429`.) One address may hold at
/// most `--max-connections-per-address` connections: one more is answered 429
/// `too-many-connections` and closed, and once one of the others closes a new one is
/// served.
#[test]
fn slow_bodies_and_connections_beyond_the_address_limit_are_refused() {
    use std::io::{Read, Write};
    let stack = Stack::start(&["--body-timeout-ms", "500", "--max-connections-per-address", "3"]);
    let addr = stack.url.trim_start_matches("http://").to_owned();
    let exchange = |head: String, body: &[u8]| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let started = Instant::now();
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the head and the problem document are in (or the server closes).
        while !String::from_utf8_lossy(&response).contains("\"status\"") {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
                Err(e) => panic!("no response within 5 s: {e}"),
            }
        }
        (String::from_utf8_lossy(&response).into_owned(), started.elapsed())
    };
    let head = |key: Option<&str>, length: usize| {
        let auth = key.map(|k| format!("X-Api-Key: {k}\r\n")).unwrap_or_default();
        format!(
            "POST /v1/reservations HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Idempotency-Key: slow-1\r\n{auth}Content-Length: {length}\r\n\r\n"
        )
    };
    // No credentials, a body announced and never sent: answered from the headers.
    let (response, _) = exchange(head(None, 1000), b"");
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");
    // The same with the path percent-encoded (`/%761/` routes as `/v1/`): still refused
    // from the headers, not after reading a body that never comes.
    let (response, took) = exchange(head(None, 1000).replacen("POST /v1/", "POST /%761/", 1), b"");
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(took < Duration::from_secs(4), "answered from the headers: {took:?}");
    // Credentials, and a body that stops after 5 of 50 bytes: 408 after the timeout.
    let (response, took) = exchange(head(Some(ACME), 50), b"{\"sku");
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("/body-timeout"), "{response}");
    assert!(took >= Duration::from_millis(400), "not before the timeout: {took:?}");

    // Three keep-alive connections, each served.
    let healthz = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let ask = |s: &mut std::net::TcpStream| {
        s.write_all(healthz.as_bytes()).unwrap();
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        // The head, then as many body bytes as it announces.
        loop {
            let text = String::from_utf8_lossy(&response).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned)
                    })
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    return text;
                }
            }
            match s.read(&mut buf) {
                Ok(0) => return text,
                Ok(n) => response.extend_from_slice(&buf[..n]),
                Err(e) => panic!("no response within 5 s: {e}"),
            }
        }
    };
    let connect = || {
        let s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    // (The connections above may not be closed on the server's side yet: retry.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = Vec::new();
    while held.len() < 3 {
        let mut s = connect();
        let response = ask(&mut s);
        if response.starts_with("HTTP/1.1 200") {
            held.push(s);
        } else {
            assert!(Instant::now() < deadline, "{response}");
        }
    }
    // The fourth: 429 problem+json, then closed by the server.
    let mut fourth = connect();
    let response = ask(&mut fourth);
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");
    assert!(response.contains("/too-many-connections"), "{response}");
    assert_eq!(fourth.read(&mut [0u8; 16]).unwrap(), 0, "the server closed it");
    // The held ones are still served; after one closes, a new connection is.
    let response = ask(&mut held[0]);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = ask(&mut connect());
        if response.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "a closed connection was never given back: {response}");
    }
}

/// Polls of commands older than an instance's reply cache are searched for in Kafka by
/// one searcher per instance behind a bounded queue: a burst beyond the queue is refused
/// at once with 503 `overloaded` (and `Retry-After`), never queued without bound; what
/// is searched for is found, and once the burst is over every poll is answered.
#[test]
fn old_reply_lookups_share_one_bounded_queue() {
    let mut stack = Stack::start(&[]);
    stack.restock("sku-l", "main", 100);
    let locations: Vec<String> = (0..20)
        .map(|i| {
            let (status, body, _) =
                stack.post("/v1/reservations", ACME, &format!("old-{i}"), reserve("sku-l", 1));
            assert_eq!(status, 200, "{body}");
            format!("/v1/commands/old-{i}?at={}", position_of(&body))
        })
        .collect();
    // A new instance's replies tail starts at the end: every one of these is a search.
    let second = stack.second_api_with(&["--lookup-queue", "1"]);
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..60)
            .map(|i| {
                let (stack, second, location) = (&stack, &second, &locations[i % 20]);
                scope.spawn(move || {
                    let (status, body, _) = stack.get_from(second, location, ACME);
                    (status, body)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (status, body) in &answers {
        match status {
            200 => assert!(body["command_id"].as_str().unwrap().starts_with("old-"), "{body}"),
            503 => assert!(body["type"].as_str().unwrap().ends_with("/overloaded"), "{body}"),
            _ => panic!("{status}: {body}"),
        }
    }
    assert!(answers.iter().any(|(s, _)| *s == 200), "searches are answered");
    assert!(answers.iter().any(|(s, _)| *s == 503), "a burst beyond the queue is refused");
    for location in &locations {
        let (status, body, _) = stack.get_from(&second, location, ACME);
        assert_eq!(status, 200, "after the burst every poll is answered: {body}");
    }
}

/// JWTs from an identity provider: RS256 and ES256 tokens verified with a JWKS, the key
/// chosen by `kid`, `iss` required when configured; a token whose algorithm is not its
/// key's (HS256, or RS256 naming the EC key), or with another issuer, is 401.
#[test]
fn jwts_signed_by_a_jwks_key_with_the_configured_issuer_are_accepted() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let fixtures = format!("{}/tests/fixtures", crate::manifest_dir().display());
    let jwks = format!("{fixtures}/jwks.json");
    let stack = Stack::start(&["--jwks-file", &jwks, "--jwt-issuer", "https://idp.example"]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = |iss: &str| json!({ "sub": "svc", "tenant": "acme", "aud": "skuflow", "iss": iss, "exp": now + 600 });
    let sign = |alg: Algorithm, kid: &str, der: &str, claims: Value| {
        let der = std::fs::read(format!("{fixtures}/{der}")).unwrap();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_der(&der),
            _ => EncodingKey::from_ec_der(&der),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        encode(&header, &claims, &key).unwrap()
    };
    let status = |token: String| bearer_status(&stack, &token);
    let idp = "https://idp.example";
    // Authenticated: the poll of an unknown command is 404, not 401.
    assert_eq!(status(sign(Algorithm::RS256, "rsa-1", "jwt-rs256.der", claims(idp))), 404);
    assert_eq!(status(sign(Algorithm::ES256, "ec-1", "jwt-es256.der", claims(idp))), 404);
    assert_eq!(
        status(sign(Algorithm::RS256, "rsa-1", "jwt-rs256.der", claims("https://evil.example"))),
        401,
        "another issuer"
    );
    let mut no_iss = claims(idp);
    no_iss.as_object_mut().unwrap().remove("iss");
    assert_eq!(status(sign(Algorithm::RS256, "rsa-1", "jwt-rs256.der", no_iss)), 401, "no iss");
    assert_eq!(
        status(sign(Algorithm::RS256, "ec-1", "jwt-rs256.der", claims(idp))),
        401,
        "RS256 naming the EC key"
    );
    let hs = encode(
        &Header::new(Algorithm::HS256),
        &claims(idp),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(status(hs), 401, "HS256 is not accepted when a JWKS is configured");
}

/// The status of a poll of an unknown command with bearer `token`: 404 when the token
/// is accepted, 401 when not.
fn bearer_status(stack: &Stack, token: &str) -> u16 {
    stack
        .client
        .get(format!("{}/v1/commands/nothing-here", stack.url))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// A JWKS served over HTTP, whose document the test swaps; counts fetches.
struct JwksServer {
    url: String,
    document: std::sync::Arc<std::sync::Mutex<String>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    fn start(document: String) -> Self {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let document = std::sync::Arc::new(std::sync::Mutex::new(document));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (doc, count) = (document.clone(), fetches.clone());
        // Lives as long as the test process; one request per connection.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                count.fetch_add(1, Ordering::SeqCst);
                let body = doc.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { url, document, fetches }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The keys of the fixture JWKS whose `kid` is in `kids`.
fn jwks_with(kids: &[&str]) -> String {
    let path = crate::manifest_dir().join("tests/fixtures/jwks.json");
    let mut set: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    set["keys"].as_array_mut().unwrap().retain(|k| kids.contains(&k["kid"].as_str().unwrap()));
    set.to_string()
}

/// Keys from the identity provider's URL: a key the provider adds (rotation) is taken
/// when a token first names its `kid`, without waiting for the periodic refresh; tokens
/// naming made-up `kid`s make the API refetch at most once every 5 s; a provider that
/// cannot be reached at start stops the API with an error naming the flag.
#[test]
fn jwks_from_a_url_follows_the_providers_rotation_without_being_hammered() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let fixtures = format!("{}/tests/fixtures", crate::manifest_dir().display());
    let idp = JwksServer::start(jwks_with(&["ec-1"]));
    let stack = Stack::start(&["--jwks-url", &idp.url, "--jwks-refresh-s", "3600"]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({ "sub": "svc", "tenant": "acme", "aud": "skuflow", "exp": now + 600 });
    let rsa =
        EncodingKey::from_rsa_der(&std::fs::read(format!("{fixtures}/jwt-rs256.der")).unwrap());
    let status = |kid: &str| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        bearer_status(&stack, &encode(&header, &claims, &rsa).unwrap())
    };
    assert_eq!(idp.fetches(), 1, "fetched once at start");
    assert_eq!(status("rsa-1"), 401, "not in the set yet");
    // The provider publishes the RSA key: the next tokens naming it are accepted.
    *idp.document.lock().unwrap() = jwks_with(&["ec-1", "rsa-1"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while status("rsa-1") != 404 {
        assert!(Instant::now() < deadline, "the rotated-in key was never fetched");
    }
    // A flood of made-up kids: at most one fetch per 5 s (and one already asked for).
    let before = idp.fetches();
    let started = Instant::now();
    for i in 0..200 {
        assert_eq!(status(&format!("made-up-{i}")), 401);
    }
    let allowed = 2 + (started.elapsed().as_secs() / 5) as usize;
    assert!(idp.fetches() - before <= allowed, "{} fetches", idp.fetches() - before);

    // Unreachable at start: the API does not start.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skuflow"))
        .args(["api", "--brokers", &stack.cluster.bootstrap, "--bind", "127.0.0.1:0"])
        .args(["--jwks-url", &format!("http://{closed}/jwks.json")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--jwks-url") && stderr.contains("fetching the JWKS"), "{stderr}");
}
