//! One request's trace, followed from the outside: a client sends `traceparent` to a
//! `skuflow api` process; that API's span, the processor's span (in the `skuflow up`
//! process) and the reply record in Kafka all carry the client's trace id, each span the
//! one before it as parent. The spans are read from what both processes export over
//! OTLP to a collector this test runs (`OTEL_EXPORTER_OTLP_ENDPOINT`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use topics::{TRACE_HEADER, Topic, TraceContext};

use crate::http::*;

/// An OTLP/HTTP collector that keeps every span it is sent, with its service's name.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Collector {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve(conn, &kept));
            }
        });
        Self { url, spans }
    }

    /// The spans of trace `trace_id` once `want` of them came (at most 60 s).
    fn wait_for(&self, trace_id: &str, want: usize) -> Vec<(String, Value)> {
        let started = Instant::now();
        loop {
            let found: Vec<_> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, s)| s["traceId"] == trace_id)
                .cloned()
                .collect();
            if found.len() >= want || started.elapsed() > Duration::from_secs(60) {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Answer OTLP export requests on one connection (HTTP/1.1, keep-alive).
fn serve(conn: std::net::TcpStream, kept: &Mutex<Vec<(String, Value)>>) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let request: Value = serde_json::from_slice(&body).unwrap();
        for resource in request["resourceSpans"].as_array().unwrap() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].as_str().unwrap().to_owned())
                .unwrap();
            for scope in resource["scopeSpans"].as_array().unwrap() {
                for span in scope["spans"].as_array().unwrap() {
                    kept.lock().unwrap().push((service.clone(), span.clone()));
                }
            }
        }
        writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
    }
}

#[test]
fn one_trace_id_from_the_api_through_the_processor_to_the_reply() {
    let collector = Collector::start();
    let mut stack =
        Stack::start_env(&[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.as_str())]);
    stack.restock("traced", "main", 5);
    let api = stack.second_api();

    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let r = stack
        .client
        .post(format!("{api}/v1/reservations?wait=30000"))
        .header("X-Api-Key", ACME)
        .header("Idempotency-Key", "traced-1")
        .header(TRACE_HEADER, format!("00-{client_trace}-{client_span}-01"))
        .json(&json!({ "sku": "traced", "quantity": 2 }))
        .send()
        .unwrap();
    let (status, body, headers) = finish(r);
    assert_eq!(status, 200, "{body}");

    // The API answers with its own span in the client's trace.
    let answered = headers.get("traceresponse").expect("traceresponse header").as_bytes();
    let api_ctx = TraceContext::parse(answered).expect("a valid traceresponse");
    assert_eq!(api_ctx.trace_hex(), client_trace);
    assert_ne!(api_ctx.span_hex(), client_span);

    // The command record carries the API's span, the reply record the processor's.
    let header_of = |topic: Topic, command_id: &str| {
        broker::read::read_all(
            &stack.cluster.bootstrap,
            &stack.cluster.topics.name(topic),
            Duration::from_secs(30),
        )
        .unwrap()
        .into_iter()
        .find(|r| {
            r.payload.as_deref().is_some_and(|p| String::from_utf8_lossy(p).contains(command_id))
        })
        .and_then(|r| r.header(TRACE_HEADER).and_then(TraceContext::parse))
        .unwrap_or_else(|| panic!("a {topic:?} record of {command_id} with a traceparent"))
    };
    assert_eq!(header_of(Topic::Commands, "traced-1"), api_ctx);
    let reply_ctx = header_of(Topic::Replies, "traced-1");
    assert_eq!(reply_ctx.trace_hex(), client_trace);

    // Both processes exported their span of the trace, each child of the one before.
    let spans = collector.wait_for(client_trace, 2);
    let span = |name: &str| {
        spans
            .iter()
            .find(|(_, s)| s["name"] == name)
            .unwrap_or_else(|| panic!("a {name} span of the trace among {spans:?}"))
    };
    let (api_service, request) = span("skuflow.request");
    assert_eq!(api_service, "skuflow-api");
    assert_eq!(request["spanId"], api_ctx.span_hex());
    assert_eq!(request["parentSpanId"], client_span);
    let (processor_service, apply) = span("skuflow.apply");
    assert_eq!(processor_service, "skuflow-up");
    assert_eq!(apply["parentSpanId"], api_ctx.span_hex());
    assert_eq!(apply["spanId"], reply_ctx.span_hex(), "the reply is written under the apply span");
    // Causality, on one machine's clock: the processor read the command after the API
    // began to send it.
    let start = |s: &Value| s["startTimeUnixNano"].as_str().unwrap().parse::<u128>().unwrap();
    assert!(start(request) <= start(apply), "{spans:?}");
}
