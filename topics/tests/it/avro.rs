//! The Avro format against an HTTP fixture that implements the schema-registry endpoints
//! skuflow calls: `PUT /config/{subject}` (compatibility), `POST
//! /subjects/{subject}/versions` (register, answers the id) and `GET /schemas/ids/{id}`
//! (fetch by id). Round trips for every message kind, the Confluent wire format, and
//! decode failures as values.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;
use topics::avro::{AvroFormat, RegistryConfig};
use topics::*;

use crate::support::*;

#[derive(Default)]
struct Registry {
    /// id - 1 indexes this: (subject, schema text)
    schemas: Vec<(String, String)>,
    requests: Vec<String>,
}

/// A schema registry on a free loopback port, serving until the test process ends.
fn registry() -> (String, Arc<Mutex<Registry>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(Registry::default()));
    let shared = state.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let (status, reply) = answer(&shared, request_line.trim(), &body);
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
        }
    });
    (url, state)
}

fn answer(state: &Mutex<Registry>, request_line: &str, body: &[u8]) -> (&'static str, String) {
    let mut reg = state.lock().unwrap();
    reg.requests.push(request_line.to_owned());
    let mut parts = request_line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("PUT", ["config", _subject]) => ("200 OK", String::from_utf8_lossy(body).into_owned()),
        ("POST", ["subjects", subject, "versions"]) => {
            let json: serde_json::Value = serde_json::from_slice(body).unwrap();
            let schema = json["schema"].as_str().unwrap().to_owned();
            let existing = reg.schemas.iter().position(|(s, t)| s == subject && *t == schema);
            let id = match existing {
                Some(i) => i + 1,
                None => {
                    reg.schemas.push((subject.to_string(), schema));
                    reg.schemas.len()
                }
            };
            ("200 OK", format!(r#"{{"id":{id}}}"#))
        }
        ("GET", ["schemas", "ids", id]) => match id
            .parse::<usize>()
            .ok()
            .and_then(|i| reg.schemas.get(i - 1))
        {
            Some((_, schema)) => ("200 OK", serde_json::json!({ "schema": schema }).to_string()),
            None => {
                ("404 Not Found", r#"{"error_code":40403,"message":"Schema not found"}"#.to_owned())
            }
        },
        _ => ("404 Not Found", r#"{"error_code":404,"message":"not here"}"#.to_owned()),
    }
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    codec: &AvroFormat,
    topic: Topic,
    value: Envelope<T>,
) -> Vec<u8> {
    let bytes = codec.encode(topic, &value).unwrap();
    assert_eq!(bytes[0], 0, "Confluent magic byte");
    let back: Envelope<T> = codec.decode(Some(&bytes)).unwrap();
    assert_eq!(back, value);
    bytes
}

fn register(url: &str) -> AvroFormat {
    AvroFormat::register(&RegistryConfig::new(url), &Topics::default()).unwrap()
}

#[test]
fn every_message_kind_round_trips_through_the_registry() {
    let (url, registry) = registry();
    let codec = register(&url);

    let reserve = Command::Reserve(Reserve {
        sku: sku(),
        quantity: Quantity::new(3).unwrap(),
        warehouse: Some(wh("w1")),
        strategy: Some(Strategy::Priority { order: vec![wh("w1"), wh("w2")] }),
        allow_partial: true,
        ttl_ms: Some(60_000),
    });
    let commands = [
        reserve,
        Command::Purchase(Purchase { reservation: rid(), quantity: None }),
        Command::Adjust(Adjust { sku: sku(), warehouse: wh("w1"), delta: -3 }),
        Command::SetStock(SetStock {
            sku: sku(),
            warehouse: wh("w1"),
            on_hand: 5,
            expected_version: 2,
        }),
    ];
    let mut schema_ids = Vec::new();
    for command in commands {
        let body = LogCommand::Request(Request {
            tenant: tenant(),
            command_id: CommandId::new("k").unwrap(),
            command,
        });
        let bytes = round_trip(&codec, Topic::Commands, Envelope::command(body));
        schema_ids.push(u32::from_be_bytes(bytes[1..5].try_into().unwrap()));
    }
    round_trip(&codec, Topic::Commands, Envelope::command(LogCommand::Tick));

    let outcomes = [
        Outcome::Reserved {
            reservation: rid(),
            quantity: 3,
            allocations: vec![Allocation { warehouse: wh("w1"), quantity: 3 }],
            expires_at: LogTime(5),
        },
        Outcome::StockUpdated { sku: sku(), warehouse: wh("w1"), level: level() },
        Outcome::Rejected(Rejection::InsufficientStock { requested: 5, available: 2 }),
        Outcome::Rejected(Rejection::AlreadyFinal { state: ReservationState::Expired }),
        Outcome::Rejected(Rejection::BelowReserved {
            on_hand: 5,
            reserved: 3,
            requested_on_hand: -1,
        }),
    ];
    for outcome in outcomes {
        let reply = Reply {
            tenant: tenant(),
            command_id: CommandId::new("k").unwrap(),
            position: Position { partition: 1, offset: 9 },
            at: LogTime(1_700_000_000_000),
            outcome,
        };
        round_trip(&codec, Topic::Replies, Envelope::output(id(), reply));
    }
    let events = [
        Event::ReservationCreated {
            reservation: rid(),
            tenant: tenant(),
            quantity: 1,
            allocations: vec![],
            expires_at: LogTime(9),
        },
        Event::ReservationExpired { reservation: rid(), expired_at: LogTime(9), returned: 1 },
        Event::StockChanged { sku: sku(), warehouse: wh("w1"), level: level() },
        Event::BackInStock { sku: sku(), available: 4 },
    ];
    for e in events {
        round_trip(&codec, Topic::Events, Envelope::output(id(), e));
    }
    let warehouses = BTreeMap::from([(wh("w1"), level()), (wh("w2"), StockLevel::default())]);
    let availability = Availability {
        sku: sku(),
        available: 7,
        warehouses,
        position: Position { partition: 1, offset: 9 },
    };
    round_trip(&codec, Topic::Availability, Envelope::output(id(), availability));

    assert!(schema_ids.windows(2).all(|w| w[0] == w[1]), "one schema per topic: {schema_ids:?}");
    let reg = registry.lock().unwrap();
    let subjects: Vec<&str> = reg.schemas.iter().map(|(s, _)| s.as_str()).collect();
    let names = [
        "skuflow.commands-value",
        "skuflow.replies-value",
        "skuflow.events-value",
        "skuflow.availability-value",
    ];
    assert_eq!(subjects, names);
    for subject in names {
        let configured = format!("PUT /config/{subject} HTTP/1.1");
        let at = |line: &str| reg.requests.iter().position(|r| r == line);
        let registered = format!("POST /subjects/{subject}/versions HTTP/1.1");
        assert!(
            at(&configured).is_some() && at(&configured) < at(&registered),
            "BACKWARD set before registering {subject}: {:?}",
            reg.requests
        );
    }
}

#[test]
fn decode_failures_are_values() {
    let (url, registry) = registry();
    let codec = register(&url);
    let empty: Result<Envelope<LogCommand>, _> = codec.decode(None);
    assert_eq!(empty.unwrap_err().reason(), "empty");
    // An unknown schema id is asked for once, then refused from memory.
    for _ in 0..3 {
        let unknown_id: Result<Envelope<LogCommand>, _> = codec.decode(Some(&[0, 0, 0, 0, 99, 2]));
        assert_eq!(unknown_id.unwrap_err().reason(), "malformed");
    }
    let asked =
        |reg: &Registry| reg.requests.iter().filter(|r| r.contains("/schemas/ids/99")).count();
    assert_eq!(asked(&registry.lock().unwrap()), 1);
    let good = codec.encode(Topic::Commands, &Envelope::command(LogCommand::Tick)).unwrap();
    let truncated: Result<Envelope<LogCommand>, _> = codec.decode(Some(&good[..8]));
    assert_eq!(truncated.unwrap_err().reason(), "malformed");
    let mut trailing = good.clone();
    trailing.push(0);
    let long: Result<Envelope<LogCommand>, _> = codec.decode(Some(&trailing));
    assert_eq!(long.unwrap_err().reason(), "malformed");
    let json: Result<Envelope<LogCommand>, _> =
        codec.decode(Some(&codec::to_json(&Envelope::command(LogCommand::Tick)).unwrap()));
    assert!(json.unwrap_err().to_string().contains("not the Confluent Avro wire format"));
}

/// A hostile length prefix (a 100 MiB string in a few bytes) is refused before anything
/// that large is allocated: the decoder's limit is 4 MiB, not apache-avro's 512 MiB.
#[test]
fn a_hostile_length_prefix_is_refused_without_allocating_it() {
    let (url, _registry) = registry();
    let codec = register(&url);
    let good = codec.encode(Topic::Commands, &Envelope::command(LogCommand::Tick)).unwrap();
    // After the 5-byte header: v = 1 (zigzag 0x02), id = null (union index 0), then the
    // body's `type` string, length 4 (zigzag 0x08) and "tick".
    assert_eq!(&good[5..8], &[0x02, 0x00, 0x08]);
    let mut length = Vec::new();
    let mut n: u64 = 2 * 100 * 1024 * 1024; // zigzag of 100 MiB
    while n >= 0x80 {
        length.push((n as u8) | 0x80);
        n >>= 7;
    }
    length.push(n as u8);
    let hostile: Vec<u8> = good[..7].iter().chain(&length).chain(&good[8..]).copied().collect();
    let refused = codec.decode::<LogCommand>(Some(&hostile)).unwrap_err();
    assert_eq!(refused.reason(), "malformed");
    let limit = topics::avro::MAX_DECODE_ALLOCATION.to_string();
    assert!(refused.to_string().contains(&format!("maximum allowed: {limit}")), "{refused}");
}
