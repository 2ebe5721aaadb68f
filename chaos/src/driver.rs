//! The client: turns draws into HTTP requests to the API instances, as a checkout
//! service would send them, and records each request and answer in the history.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::history::Entry;
use crate::workload::{Draw, Kind, sku_name, tenant_name, warehouse_name};

/// The tenant of the admin key.
pub const ADMIN_TENANT: &str = "chaos-ops";

/// The `api` of a history entry sent through the `ingest` library.
pub const INGEST: usize = usize::MAX;

/// A hold the client knows it has.
#[derive(Debug, Clone)]
struct Hold {
    tenant: usize,
    id: String,
    sku: String,
    quantity: u32,
}

/// An earlier command, for retries.
#[derive(Debug, Clone)]
struct Sent {
    entry: u64,
    tenant: usize,
    kind: Kind,
    key: String,
    sku: String,
    path: String,
    body: Value,
}

#[derive(Debug, Default)]
struct Known {
    holds: Vec<Hold>,
    sent: Vec<Sent>,
    /// Last position seen per SKU (for `min_position`).
    positions: BTreeMap<String, String>,
}

const KNOWN_SENT: usize = 2_000;

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: &'static str,
    pub tenant: String,
    pub key: Option<String>,
    pub sku: Option<String>,
    pub method: reqwest::Method,
    pub path: String,
    pub body: Option<Value>,
    /// Raw bytes instead of `body` (hostile requests).
    pub raw: Option<(String, Vec<u8>)>,
    pub credential: Option<String>,
    pub hostile: bool,
    pub of: Option<u64>,
    /// Through the `ingest` library, when the driver has it (commands only).
    pub ingest: bool,
}

impl Request {
    /// A command (POST with a key and a JSON body) as `tenant`.
    pub fn command(
        kind: &'static str,
        tenant: &str,
        key: String,
        sku: String,
        path: String,
        body: Value,
    ) -> Self {
        Self {
            kind,
            tenant: tenant.to_owned(),
            key: Some(key),
            sku: Some(sku),
            method: reqwest::Method::POST,
            path,
            body: Some(body),
            raw: None,
            credential: None,
            hostile: false,
            of: None,
            ingest: false,
        }
    }
}

/// Sends requests and keeps the history.
#[derive(Debug)]
pub struct Driver {
    client: reqwest::Client,
    pub apis: Vec<String>,
    tenant_keys: Vec<String>,
    admin_key: String,
    start: Instant,
    next_id: AtomicU64,
    known: Mutex<Known>,
    history: Mutex<Vec<Entry>>,
    /// Command requests ask to wait this long for the reply.
    wait_ms: u64,
    /// Commands sent through the `ingest` library instead, and which share of them.
    ingest: Option<crate::ingest_client::IngestClient>,
}

impl Driver {
    pub fn new(
        apis: Vec<String>,
        tenant_keys: Vec<String>,
        admin_key: String,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(256)
            .build()?;
        let wait_ms = (timeout.as_millis() as u64 / 2).max(1);
        Ok(Self {
            client,
            apis,
            tenant_keys,
            admin_key,
            start: Instant::now(),
            next_id: AtomicU64::new(0),
            known: Mutex::new(Known::default()),
            history: Mutex::new(Vec::new()),
            wait_ms,
            ingest: None,
        })
    }

    /// Send the commands whose draw says so through `client` (the `ingest` library,
    /// straight to the commands topic) rather than an API instance.
    pub fn with_ingest(mut self, client: crate::ingest_client::IngestClient) -> Self {
        self.ingest = Some(client);
        self
    }

    /// The ingest client, when `request` goes through it: a tenant's well-formed command
    /// whose draw picked that path.
    fn via_ingest(&self, request: &Request) -> Option<&crate::ingest_client::IngestClient> {
        let client = self.ingest.as_ref()?;
        (request.ingest && !request.hostile && request.credential.is_none()).then_some(client)
    }

    /// Restart the workload clock (history times count from here).
    pub fn restart_clock(&mut self) {
        self.start = Instant::now();
    }

    pub fn elapsed_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    pub fn history(&self) -> Vec<Entry> {
        let mut h = self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        h.sort_by_key(|e| e.id);
        h
    }

    pub fn entries(&self) -> usize {
        self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Send `request` to API instance `api` and record it; returns the entry.
    pub async fn send(&self, api: usize, request: Request) -> Entry {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let (Some(client), Some(key), true) =
            (self.via_ingest(&request), &request.key, request.method == reqwest::Method::POST)
        {
            let sent_ms = self.elapsed_ms();
            let wait = Duration::from_millis(self.wait_ms);
            if let Some((status, response, error)) =
                client.send(&request.tenant, key, &request.path, request.body.as_ref(), wait).await
            {
                return self.record(id, INGEST, request, sent_ms, status, response, error);
            }
        }
        let api = api % self.apis.len().max(1);
        let url = format!("{}{}", self.apis[api], request.path);
        let mut builder = self.client.request(request.method.clone(), &url);
        let credential = request.credential.clone().unwrap_or_else(|| self.key_of(&request.tenant));
        if !credential.is_empty() {
            builder = builder.header("X-Api-Key", credential);
        }
        if let Some(key) = &request.key {
            builder = builder.header("Idempotency-Key", key);
        }
        if let Some((content_type, bytes)) = &request.raw {
            builder = builder.header("Content-Type", content_type.clone()).body(bytes.clone());
        } else if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let sent_ms = self.elapsed_ms();
        let (status, response, error) = match builder.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.bytes().await {
                    Ok(b) => (Some(status), serde_json::from_slice(&b).ok(), None),
                    Err(e) => (Some(status), None, Some(e.to_string())),
                }
            }
            Err(e) => (None, None, Some(error_kind(&e))),
        };
        self.record(id, api, request, sent_ms, status, response, error)
    }

    /// Put an answered request in the history.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        id: u64,
        api: usize,
        request: Request,
        sent_ms: f64,
        status: Option<u16>,
        response: Option<Value>,
        error: Option<String>,
    ) -> Entry {
        let entry = Entry {
            id,
            kind: request.kind.to_owned(),
            tenant: request.tenant,
            sku: request.sku,
            key: request.key,
            method: request.method.to_string(),
            path: request.path,
            body: request.body,
            hostile: request.hostile,
            api,
            sent_ms,
            done_ms: self.elapsed_ms(),
            status,
            error,
            response,
            of: request.of,
        };
        self.learn(&entry);
        self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(entry.clone());
        entry
    }

    fn key_of(&self, tenant: &str) -> String {
        if tenant == ADMIN_TENANT {
            return self.admin_key.clone();
        }
        tenant
            .strip_prefix("tenant-")
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| self.tenant_keys.get(i).cloned())
            .unwrap_or_default()
    }

    /// Remember holds and positions from an answer.
    fn learn(&self, entry: &Entry) {
        let Some(reply) = entry.reply() else { return };
        let mut known = self.known();
        if let (Some(sku), Some((p, o))) = (&entry.sku, crate::history::position(reply)) {
            known.positions.insert(sku.clone(), format!("{p}-{o}"));
        }
        let outcome = &reply["outcome"];
        if outcome["type"] == "reserved"
            && entry.kind != "retry-same"
            && let (Some(id), Some(q)) =
                (outcome["reservation"].as_str(), outcome["quantity"].as_u64())
            && let Some(tenant) = entry.tenant.strip_prefix("tenant-").and_then(|t| t.parse().ok())
            && !known.holds.iter().any(|h| h.id == id)
        {
            known.holds.push(Hold {
                tenant,
                id: id.to_owned(),
                sku: entry.sku.clone().unwrap_or_default(),
                quantity: q as u32,
            });
        }
    }

    /// The request a draw stands for (`None` when it needs a hold or an earlier request
    /// and the client has none).
    pub fn request(&self, id_hint: u64, d: &Draw) -> Option<Request> {
        let tenant = tenant_name(d.tenant);
        let sku = sku_name(d.sku);
        let wait = self.wait_ms;
        let command = |kind, key: String, sku: String, path: String, body: Value| {
            Request::command(kind, &tenant, key, sku, path, body)
        };
        let request = match d.kind {
            Kind::Reserve | Kind::ReserveThenPoll => {
                let mut body = json!({ "sku": sku, "quantity": d.quantity, "ttl_ms": d.ttl_ms,
                                       "allow_partial": d.allow_partial });
                match d.strategy {
                    1 => body["strategy"] = json!({ "type": "most_available" }),
                    2 => {
                        let first = d.warehouse;
                        let order: Vec<String> =
                            (0..3).map(|i| warehouse_name((first + i) % 3)).collect();
                        let mut order = order;
                        order.dedup();
                        body["strategy"] = json!({ "type": "priority", "order": order });
                    }
                    3 => body["warehouse"] = json!(warehouse_name(d.warehouse)),
                    _ => {}
                }
                let wait = if d.kind == Kind::ReserveThenPoll { 0 } else { wait };
                let kind =
                    if d.kind == Kind::ReserveThenPoll { "reserve-then-poll" } else { "reserve" };
                let key = format!("r-{id_hint}");
                let sent = command(kind, key, sku, format!("/v1/reservations?wait={wait}"), body);
                self.remember(id_hint, d, &sent);
                sent
            }
            Kind::Purchase | Kind::Release | Kind::Extend => {
                let hold = {
                    let mut known = self.known();
                    let mine: Vec<usize> = (0..known.holds.len())
                        .filter(|&i| known.holds[i].tenant == d.tenant)
                        .collect();
                    if mine.is_empty() {
                        return None;
                    }
                    let i = mine[((d.pick * mine.len() as f64) as usize).min(mine.len() - 1)];
                    if d.kind == Kind::Extend {
                        known.holds[i].clone()
                    } else {
                        known.holds.swap_remove(i)
                    }
                };
                let (kind, prefix, body) = match d.kind {
                    Kind::Purchase => {
                        let q = if d.allow_partial {
                            1 + (d.variant % u64::from(hold.quantity)) as u32
                        } else {
                            hold.quantity
                        };
                        ("purchase", "p", json!({ "quantity": q }))
                    }
                    Kind::Release => ("release", "l", json!({})),
                    _ => ("extend", "e", json!({ "ttl_ms": d.ttl_ms })),
                };
                let path = format!("/v1/reservations/{}/{kind}?wait={wait}", hold.id);
                let mut request =
                    command(kind, format!("{prefix}-{id_hint}"), hold.sku, path, body);
                request.tenant = tenant_name(hold.tenant);
                self.remember(id_hint, d, &request);
                request
            }
            Kind::RetrySame | Kind::RetryConflict => {
                let known = self.known();
                let candidates: Vec<&Sent> = known
                    .sent
                    .iter()
                    .filter(|s| d.kind == Kind::RetrySame || s.kind == Kind::Reserve)
                    .collect();
                if candidates.is_empty() {
                    return None;
                }
                let s = candidates
                    [((d.pick * candidates.len() as f64) as usize).min(candidates.len() - 1)];
                let mut body = s.body.clone();
                let kind = if d.kind == Kind::RetrySame {
                    "retry-same"
                } else {
                    let q = body["quantity"].as_u64().unwrap_or(1);
                    body["quantity"] = json!(q % 3 + 1 + u64::from(q % 3 + 1 == q));
                    "retry-conflict"
                };
                let mut request = command(kind, s.key.clone(), s.sku.clone(), s.path.clone(), body);
                request.tenant = tenant_name(s.tenant);
                request.of = Some(s.entry);
                request
            }
            Kind::Availability => {
                let min = self.known().positions.get(&sku).cloned();
                let path = match min {
                    Some(p) => format!("/v1/availability/{sku}?min_position={p}&wait={wait}"),
                    None => format!("/v1/availability/{sku}"),
                };
                self.get("availability", &tenant, Some(sku), path, None)
            }
            Kind::Restock => {
                let w = warehouse_name(d.warehouse);
                let path = format!("/v1/admin/stock/{sku}/{w}/restock?wait={wait}");
                let mut request = command(
                    "restock",
                    format!("s-{id_hint}"),
                    sku,
                    path,
                    json!({ "quantity": d.quantity }),
                );
                request.tenant = ADMIN_TENANT.to_owned();
                request
            }
            Kind::Hostile => hostile(d, &tenant, &sku, id_hint),
        };
        let mut request = request;
        request.ingest =
            d.ingest && request.key.is_some() && !request.hostile && request.tenant != ADMIN_TENANT;
        Some(request)
    }

    fn remember(&self, id_hint: u64, d: &Draw, r: &Request) {
        let mut known = self.known();
        if known.sent.len() >= KNOWN_SENT {
            let i = (d.variant % KNOWN_SENT as u64) as usize;
            known.sent.swap_remove(i);
        }
        known.sent.push(Sent {
            entry: id_hint,
            tenant: d.tenant,
            kind: if matches!(d.kind, Kind::Reserve | Kind::ReserveThenPoll) {
                Kind::Reserve
            } else {
                d.kind
            },
            key: r.key.clone().unwrap_or_default(),
            sku: r.sku.clone().unwrap_or_default(),
            path: r.path.replace("wait=0", &format!("wait={}", self.wait_ms)),
            body: r.body.clone().unwrap_or(Value::Null),
        });
    }

    /// A command request again: same tenant, key, path and body (a retry after no
    /// answer), as kind `kind`, answering entry `of`.
    pub fn again(&self, e: &Entry, kind: &'static str) -> Request {
        let path = match e.path.split_once("wait=") {
            Some((head, _)) => format!("{head}wait={}", self.wait_ms),
            None => e.path.clone(),
        };
        Request {
            kind,
            tenant: e.tenant.clone(),
            key: e.key.clone(),
            sku: e.sku.clone(),
            method: reqwest::Method::POST,
            path,
            body: e.body.clone(),
            raw: None,
            credential: None,
            hostile: false,
            of: Some(e.id),
            ingest: false,
        }
    }

    /// A GET as `tenant`, recorded as `kind`.
    pub fn get(
        &self,
        kind: &'static str,
        tenant: &str,
        sku: Option<String>,
        path: String,
        of: Option<u64>,
    ) -> Request {
        Request {
            kind,
            tenant: tenant.to_owned(),
            key: None,
            sku,
            method: reqwest::Method::GET,
            path,
            body: None,
            raw: None,
            credential: None,
            hostile: false,
            of,
            ingest: false,
        }
    }
}

fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        format!("transport: {e}")
    }
}

/// A request that must be refused with a 4xx and change nothing.
fn hostile(d: &Draw, tenant: &str, sku: &str, id_hint: u64) -> Request {
    let json = |b: Value| ("application/json", b.to_string().into_bytes());
    let variant = d.variant % 12;
    // A body POSTed to /v1/reservations, with a well-formed key and credential unless
    // the variant is about those.
    let raw = match variant {
        0 => ("application/json", b"{\"sku\":".to_vec()),
        1 => json(json!({ "sku": sku, "quantity": 0 })),
        2 => json(json!({ "sku": sku, "quantity": -5 })),
        3 => json(json!({ "sku": sku, "quantity": 4_294_967_296u64 })),
        4 => json(json!({ "sku": sku, "quantity": 1, "price": 0 })),
        5 => json(json!({ "sku": "bad sku ☃", "quantity": 1 })),
        7 => ("text/plain", b"sku=x".to_vec()),
        10 => ("application/json", Vec::new()),
        11 => json(json!({ "sku": sku, "quantity": 1,
                           "strategy": { "type": "priority", "order": ["w0", "w0"] } })),
        // 6: no key; 8: a wrong credential; 9: an overlong key.
        _ => json(json!({ "sku": sku, "quantity": 1 })),
    };
    let key = match variant {
        6 | 10 => None,
        9 => Some("k".repeat(300)),
        _ => Some(format!("h-{id_hint}")),
    };
    // 10: a path traversal, read.
    let (method, path) = match variant {
        10 => (reqwest::Method::GET, "/v1/availability/..%2F..%2Fetc"),
        _ => (reqwest::Method::POST, "/v1/reservations"),
    };
    Request {
        kind: "hostile",
        tenant: tenant.to_owned(),
        key,
        sku: Some(sku.to_owned()),
        method,
        path: path.to_owned(),
        body: None,
        raw: Some((raw.0.to_owned(), raw.1)),
        credential: (variant == 8).then(|| "not-a-key".to_owned()),
        hostile: true,
        of: None,
        ingest: false,
    }
}
