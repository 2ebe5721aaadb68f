//! Avro end to end: `skuflow schema-registry` runs as a process of its own; `skuflow up`
//! (processor and API) and a second `skuflow api` are started with `--schema-registry`;
//! commands go in over HTTP and their replies and the views come back, while every
//! record in Kafka is in the Confluent wire format under the schema id the registry
//! gave its subject. The auditor reads the same topics in Avro, and a JSON record
//! written by someone else is dead-lettered with its reason.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use topics::Topic;

use crate::http::*;

/// A `skuflow schema-registry` child process, stopped on drop.
struct RegistryProcess {
    child: Child,
    url: String,
}

impl RegistryProcess {
    fn start(dir: &std::path::Path) -> Self {
        let log = dir.join("schema-registry.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_skuflow"))
            .args(["schema-registry", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // Owned (killed and waited for on drop) before anything can fail.
        let mut registry = Self { child, url: String::new() };
        let started = Instant::now();
        let marker = "schema registry listening on ";
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(url) = text.split(marker).nth(1).and_then(|r| r.split_whitespace().next()) {
                registry.url = url.to_owned();
                return registry;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no registry:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str) -> Value {
        reqwest::blocking::get(format!("{}{path}", self.url)).unwrap().json().unwrap()
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn commands_replies_and_views_in_avro_through_a_schema_registry() {
    let dir = tempfile::tempdir().unwrap();
    let registry = RegistryProcess::start(dir.path());
    let flags = ["--schema-registry", registry.url.as_str()];
    let mut stack = Stack::start(&flags);
    stack.restock("avro-sku", "main", 10);
    let api = stack.second_api_with(&flags);

    // A reserve through the second API, waited for: the reply came back through Kafka.
    let (status, held, _) = stack.post_to(
        &api,
        "/v1/reservations",
        ACME,
        "avro-1",
        json!({ "sku": "avro-sku", "quantity": 4 }),
    );
    assert_eq!(status, 200, "{held}");
    let reservation = held["outcome"]["reservation"].as_str().unwrap().to_owned();
    // The availability view, read at the reply's position.
    let at = position_of(&held);
    let (status, availability, _) =
        stack.get_from(&api, &format!("/v1/availability/avro-sku?min_position={at}"), ACME);
    assert_eq!(status, 200, "{availability}");
    assert_eq!(availability["available"], 6);
    // The reservations view (from the events topic).
    let started = Instant::now();
    let view = loop {
        let (status, body, _) =
            stack.get_from(&api, &format!("/v1/reservations/{reservation}"), ACME);
        if status == 200 {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(view["state"], "active", "{view}");
    // A poll by position (the replies tail, or a lookup in Kafka).
    let (status, polled, _) = stack.get_from(&api, &format!("/v1/commands/avro-1?at={at}"), ACME);
    assert_eq!(status, 200, "{polled}");
    assert_eq!(polled["outcome"]["reservation"], reservation.as_str());

    // Every record of these topics is Avro under its subject's id, compatibility BACKWARD.
    let topics = &stack.cluster.topics;
    for topic in [Topic::Commands, Topic::Replies, Topic::Events, Topic::Availability] {
        let subject = format!("{}-value", topics.name(topic));
        let id = registry.get(&format!("/subjects/{subject}/versions/latest"))["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{subject} registered"));
        assert_eq!(registry.get(&format!("/config/{subject}"))["compatibilityLevel"], "BACKWARD");
        let records = broker::read::read_all(
            &stack.cluster.bootstrap,
            &topics.name(topic),
            Duration::from_secs(30),
        )
        .unwrap();
        let ticks_only = topic == Topic::Commands;
        assert!(records.len() > usize::from(ticks_only), "{topic:?} has records");
        for r in records {
            let payload = r.payload.unwrap();
            assert_eq!(payload[0], 0, "{topic:?}: Confluent magic byte");
            assert_eq!(u64::from(u32::from_be_bytes(payload[1..5].try_into().unwrap())), id);
        }
    }

    // A JSON record from another writer is dead-lettered with its reason.
    stack.cluster.produce(&[crate::support::request(
        "json-writer",
        topics::Command::Restock(topics::Restock {
            sku: topics::Sku::new("avro-sku").unwrap(),
            warehouse: topics::WarehouseId::new("main").unwrap(),
            quantity: topics::Quantity::new(1).unwrap(),
        }),
    )]);
    let started = Instant::now();
    let reason = loop {
        let dead = broker::read::read_all(
            &stack.cluster.bootstrap,
            &topics.name(Topic::DeadLetter),
            Duration::from_secs(30),
        )
        .unwrap();
        if let Some(r) = dead.first() {
            break String::from_utf8_lossy(r.header(topics::envelope::REASON_HEADER).unwrap())
                .into_owned();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "nothing dead-lettered");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(reason.contains("not the Confluent Avro wire format"), "{reason}");

    // The auditor reads the deployment in Avro too.
    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_skuflow"))
        .args(["audit", "--brokers", &stack.cluster.bootstrap, "--schema-registry", &registry.url])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "{report}\n{}", String::from_utf8_lossy(&audit.stderr));

    // The registry refuses a schema its subject's compatibility does not allow.
    let refused = reqwest::blocking::Client::new()
        .post(format!("{}/subjects/{}-value/versions", registry.url, topics.name(Topic::Commands)))
        .json(&json!({ "schema": r#"{"type":"record","name":"Other","fields":[{"name":"x","type":"string"}]}"# }))
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
}
