//! The operator's scenario that once stalled the processor for good: `skuflow up` (the
//! processor and the API in one process) under load from several HTTP clients, killed
//! with SIGKILL and restarted at once with the same data directory, again and again.
//!
//! The verdict comes from the clients' own history, not from skuflow's code: every
//! command is answered (clients retry with the same idempotency key until they get an
//! answer), availability equals stock minus what the clients were granted, and asking
//! again gives the identical answer. Then the auditor reads the topics as a second
//! opinion.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::http::{ACME, ACME_ADMIN, finish, key_args};
use crate::support::{Cluster, assert_clean};

const SKUS: usize = 8;
const STOCK: u64 = 10_000;
const CLIENTS: usize = 8;
const CYCLES: usize = 6;
/// Answers the clients must get from each incarnation before it is killed.
const ANSWERS_PER_CYCLE: usize = 40;
/// How long an incarnation may take to answer them; far above what a working one needs.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(90);

/// `skuflow up --brokers` as a child process that can be killed and started again.
struct Up {
    args: Vec<String>,
    log: std::path::PathBuf,
    child: Option<Child>,
    url: Arc<RwLock<String>>,
}

impl Up {
    fn new(cluster: &Cluster) -> Self {
        let mut args: Vec<String> = ["up", "--brokers", &cluster.bootstrap, "--partitions", "4"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let data = cluster.dir.path().join("up-store");
        for a in ["--bind", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"] {
            args.push(a.into());
        }
        for a in ["--tick-interval-ms", "200", "--session-timeout-ms", "6000"] {
            args.push(a.into());
        }
        args.extend(["--stall-timeout-ms".into(), "10000".into()]);
        args.extend(["--data-dir".into(), data.display().to_string()]);
        args.extend(key_args());
        let log = cluster.dir.path().join("up.log");
        Self { args, log, child: None, url: Arc::default() }
    }

    /// Start an incarnation and wait until its API listens.
    fn start(&mut self) {
        let before = std::fs::read_to_string(&self.log).unwrap_or_default().len();
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_skuflow"))
            .args(&self.args)
            .env("SKUFLOW_LOG", "info,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let new = &text[before.min(text.len())..];
            if let Some(addr) = new.split("API http://").nth(1).and_then(|r| r.split(' ').next()) {
                *self.url.write().unwrap() = format!("http://{addr}");
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "up did not start:\n{new}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // std's: a no-op once the child has been reaped
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait: the processor ends between transactions, so the auditor reads
    /// no transaction left open.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            broker::dev::signal_live(&mut child, Signal::SIGTERM).unwrap();
            let started = Instant::now();
            while child.try_wait().unwrap().is_none() {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "up did not stop:\n{}",
                    self.log_tail()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One command as a client saw it: what it sent and the answer it finally got.
#[derive(Debug, Clone)]
struct Seen {
    key: String,
    body: Value,
    status: u16,
    answer: Value,
}

/// What a reply says, without what a transport adds: the reply itself for a 200, the
/// reply inside the problem document for a 409.
fn reply_of(status: u16, body: &Value) -> Value {
    if status == 409 { body["reply"].clone() } else { body.clone() }
}

/// POST until the command is answered (200 or 409), retrying with the same key on
/// connection errors, 202 (not answered yet), 429 and 5xx. `None` after `deadline`.
fn send_until_answered(
    client: &Client,
    url: &RwLock<String>,
    path: &str,
    key: &str,
    idem: &str,
    body: &Value,
    deadline: Duration,
) -> Option<(u16, Value)> {
    let started = Instant::now();
    while started.elapsed() < deadline {
        let base = url.read().unwrap().clone();
        let sent = client
            .post(format!("{base}{path}?wait=5000"))
            .header("X-Api-Key", key)
            .header("Idempotency-Key", idem)
            .json(body)
            .send();
        if let Ok(r) = sent {
            let (status, body, _) = finish(r);
            if status == 200 || status == 409 {
                return Some((status, body));
            }
            assert!(
                matches!(status, 202 | 429 | 500..=599),
                "unexpected {status} for {idem}: {body}"
            );
        }
        // Pacing of a client's retries, not synchronisation.
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn sku(i: usize) -> String {
    format!("kill-sku-{i}")
}

#[test]
fn every_command_is_answered_through_repeated_kill9_of_processor_and_api() {
    let cluster = Cluster::start();
    let mut up = Up::new(&cluster);
    up.start();
    let client = Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    for i in 0..SKUS {
        let path = format!("/v1/admin/stock/{}/main/restock", sku(i));
        let body = json!({ "quantity": STOCK });
        let answered = send_until_answered(
            &client,
            &up.url,
            &path,
            ACME_ADMIN,
            &format!("stock-{i}"),
            &body,
            PROGRESS_DEADLINE,
        );
        assert_eq!(answered.map(|a| a.0), Some(200), "restock {i}:\n{}", up.log_tail());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let history: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let unanswered: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, answered, history, unanswered, url, client) = (
                stop.clone(),
                answered.clone(),
                history.clone(),
                unanswered.clone(),
                up.url.clone(),
                client.clone(),
            );
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("c{c}-{n}");
                    let body = json!({
                        "sku": sku((c + n) % SKUS),
                        "quantity": 1 + (n % 3),
                        "ttl_ms": 3_600_000,
                    });
                    n += 1;
                    let deadline = Duration::from_secs(180);
                    match send_until_answered(
                        &client,
                        &url,
                        "/v1/reservations",
                        ACME,
                        &key,
                        &body,
                        deadline,
                    ) {
                        Some((status, answer)) => {
                            history.lock().unwrap().push(Seen { key, body, status, answer });
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        None => unanswered.lock().unwrap().push(key),
                    }
                }
            })
        })
        .collect();

    let wait_for_answers = |up: &Up, cycle: usize| {
        let from = answered.load(Ordering::Relaxed);
        let started = Instant::now();
        while answered.load(Ordering::Relaxed) < from + ANSWERS_PER_CYCLE {
            assert!(
                started.elapsed() < PROGRESS_DEADLINE,
                "incarnation {cycle} answered {} commands in {PROGRESS_DEADLINE:?}: stalled\n{}",
                answered.load(Ordering::Relaxed) - from,
                up.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for cycle in 0..CYCLES {
        wait_for_answers(&up, cycle);
        up.kill9();
        up.start();
    }
    wait_for_answers(&up, CYCLES);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let unanswered = unanswered.lock().unwrap().clone();
    assert!(unanswered.is_empty(), "never answered: {unanswered:?}\n{}", up.log_tail());
    let history = history.lock().unwrap().clone();

    // Availability is what the clients' own answers imply: stock minus what was granted.
    let mut granted: BTreeMap<String, u64> = BTreeMap::new();
    for seen in &history {
        let sku = seen.body["sku"].as_str().unwrap().to_owned();
        let got =
            if seen.status == 200 { seen.answer["outcome"]["quantity"].as_u64() } else { None };
        *granted.entry(sku).or_default() += got.unwrap_or(0);
    }
    let url = up.url.read().unwrap().clone();
    for (sku, granted) in &granted {
        let expected = STOCK - granted;
        let started = Instant::now();
        loop {
            let r =
                client.get(format!("{url}/v1/availability/{sku}")).header("X-Api-Key", ACME).send();
            let available = r.ok().map(finish).and_then(|(_, b, _)| b["available"].as_u64());
            if available == Some(expected) {
                break;
            }
            assert!(
                started.elapsed() < PROGRESS_DEADLINE,
                "{sku}: available {available:?}, but clients were granted {granted} of {STOCK}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // Asking again gives the identical answer (I3), from the restarted deployment.
    for seen in &history {
        let again = send_until_answered(
            &client,
            &up.url,
            "/v1/reservations",
            ACME,
            &seen.key,
            &seen.body,
            PROGRESS_DEADLINE,
        );
        let (status, body) = again.unwrap_or_else(|| panic!("{} not answered again", seen.key));
        assert_eq!(
            (status, reply_of(status, &body)),
            (seen.status, reply_of(seen.status, &seen.answer)),
            "{} answered differently the second time",
            seen.key
        );
    }
    up.stop();
    assert_clean(&cluster.audit());
}
