//! Shared by the tests that run `skuflow` processes as children so they can really be
//! killed: a dev broker with skuflow's topics, a workload, processes, and the audit.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use broker::DevBroker;
use broker::admin::ensure_topics;
use broker::read::read_all;
use nix::sys::signal::Signal;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use topics::codec::{from_json, to_json};
use topics::*;

pub const PARTITIONS: i32 = 4;
pub const WAIT: Duration = Duration::from_secs(120);

pub struct Cluster {
    /// Runs until the cluster is dropped.
    _broker: DevBroker,
    pub bootstrap: String,
    pub topics: Topics,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// A cluster whose topics an operator pre-created: `edit` changes skuflow's specs.
    pub fn start_with(edit: impl FnOnce(&mut Vec<broker::admin::TopicSpec>)) -> Self {
        let broker = DevBroker::start().expect("dev broker starts");
        let bootstrap = broker.bootstrap();
        let topics = Topics::default();
        let mut specs = processor::topic_specs(&topics, PARTITIONS, 1);
        edit(&mut specs);
        ensure_topics(&bootstrap, &specs).unwrap();
        Self { _broker: broker, bootstrap, topics, dir: tempfile::tempdir().unwrap() }
    }

    /// Start `skuflow processor` as instance `instance` with its store in `store`.
    pub fn processor(&self, instance: &str, store: &str) -> Proc {
        self.processor_with(instance, store, &[])
    }

    pub fn processor_with(&self, instance: &str, store: &str, extra: &[&str]) -> Proc {
        let data_dir = self.dir.path().join(store);
        let log = self.dir.path().join(format!("{instance}-{}.log", std::process::id()));
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_skuflow"))
            .arg("processor")
            .args(["--brokers", &self.bootstrap, "--instance", instance])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--metrics-addr", "127.0.0.1:0", "--tick-interval-ms", "200"])
            .args(["--session-timeout-ms", "6000", "--max-poll-interval-ms", "15000"])
            .args(extra)
            .env("SKUFLOW_LOG", "info,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("skuflow processor starts");
        Proc { child, data_dir, log }
    }

    pub fn produce(&self, records: &[(String, Vec<u8>)]) {
        let producer: ThreadedProducer<DefaultProducerContext> =
            broker::client::producer_config(&self.bootstrap)
                .set("enable.idempotence", "true")
                .create()
                .unwrap();
        let topic = self.topics.name(Topic::Commands);
        for (key, payload) in records {
            broker::client::send_waiting(
                &producer,
                BaseRecord::to(&topic).key(key).payload(payload),
            )
            .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Committed replies, one per reply id.
    pub fn replies(&self) -> BTreeMap<String, Reply> {
        read_all(&self.bootstrap, &self.topics.name(Topic::Replies), WAIT)
            .unwrap()
            .into_iter()
            .map(|r| {
                let e = from_json::<Reply>(r.payload.as_deref()).unwrap();
                (e.id.expect("replies carry ids").to_string(), e.body)
            })
            .collect()
    }

    /// Wait until at least `n` distinct replies are committed; returns them.
    pub fn wait_replies(&self, n: usize) -> BTreeMap<String, Reply> {
        let started = Instant::now();
        loop {
            let replies = self.replies();
            if replies.len() >= n {
                return replies;
            }
            assert!(
                started.elapsed() < WAIT,
                "only {} of {n} replies after {WAIT:?}\n{}",
                replies.len(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last lines of every processor's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out += &format!("--- {}\n", path.display());
                for line in &lines[lines.len().saturating_sub(40)..] {
                    out += line;
                    out.push('\n');
                }
            }
        }
        out
    }

    pub fn audit(&self) -> chaos::Report {
        let log = chaos::Log::read(&self.bootstrap, &self.topics, WAIT).unwrap();
        chaos::audit(&log, state::MachineConfig::default())
    }
}

pub struct Proc {
    pub child: Child,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Proc {
    /// Signal the process unless it has been reaped (its pid may belong to another by now).
    pub fn signal(&mut self, signal: Signal) {
        broker::dev::signal_live(&mut self.child, signal).unwrap();
    }

    pub fn kill9(mut self) {
        self.signal(Signal::SIGKILL);
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait(WAIT)
    }

    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "processor did not exit within {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Partitions the processor says it owns (its metrics; 0 until it has said).
    pub fn assigned(&self) -> i32 {
        let log = self.log_text();
        if !log.contains("metrics at http://") {
            return 0;
        }
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix("skuflow_processor_assigned_partitions "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// `GET /healthz` on the processor's metrics port: status line and body.
    pub fn healthz(&self) -> String {
        self.get("/healthz", false)
    }

    /// The Prometheus text of the processor's metrics endpoint (the latest address in the
    /// log: a restarted instance appends to the same file).
    pub fn metrics(&self) -> String {
        self.get("/metrics", true)
    }

    fn get(&self, path: &str, must_be_ok: bool) -> String {
        // A process just started may not have said where its metrics are yet.
        let started = Instant::now();
        while !self.log_text().contains("metrics at http://") && started.elapsed() < WAIT {
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = self.log_text();
        let addr = log
            .rsplit("metrics at http://")
            .next()
            .filter(|_| log.contains("metrics at http://"))
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            !must_be_ok
                || response.starts_with("HTTP/1.0 200")
                || response.starts_with("HTTP/1.1 200"),
            "{response}"
        );
        response
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const TENANT: &str = "acme";

pub fn request(id: &str, command: Command) -> (String, Vec<u8>) {
    let key = command.sku().to_string();
    let r = Request {
        tenant: TenantId::new(TENANT).unwrap(),
        command_id: CommandId::new(id).unwrap(),
        command,
    };
    (key, to_json(&Envelope::command(LogCommand::Request(r))).unwrap())
}

pub fn sku(i: usize) -> Sku {
    Sku::new(format!("sku-{i}")).unwrap()
}

/// Phase one of the workload: stock for `skus` SKUs in two warehouses, then `holds`
/// reservations of 1-3 units (every fourth with a short TTL, so ticks expire it), ten
/// retries, and two poison records (undecodable, and keyed by the wrong SKU).
pub fn stock_and_holds(tag: &str, skus: usize, holds: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..skus {
        for w in ["north", "south"] {
            out.push(request(
                &format!("{tag}-stock-{i}-{w}"),
                Command::Restock(Restock {
                    sku: sku(i),
                    warehouse: WarehouseId::new(w).unwrap(),
                    quantity: Quantity::new(10).unwrap(),
                }),
            ));
        }
    }
    for h in 0..holds {
        out.push(request(
            &format!("{tag}-hold-{h}"),
            Command::Reserve(Reserve {
                sku: sku(h % skus),
                quantity: Quantity::new(1 + (h % 3) as u32).unwrap(),
                warehouse: None,
                strategy: None,
                allow_partial: false,
                ttl_ms: (h % 4 == 0).then_some(300),
            }),
        ));
        if h == holds / 2 {
            out.push(("sku-0".into(), b"{not json".to_vec()));
            let restock = Command::Restock(Restock {
                sku: sku(0),
                warehouse: WarehouseId::new("north").unwrap(),
                quantity: Quantity::new(1).unwrap(),
            });
            let (_, payload) = request(&format!("{tag}-misrouted"), restock);
            out.push(("sku-1".into(), payload));
        }
    }
    let retries: Vec<_> = out[2 * skus..2 * skus + 10].to_vec();
    out.extend(retries);
    out
}

/// Phase two: release every third active hold of `replies`, purchase every third, with
/// a retry and a conflicting payload under a used id.
pub fn release_and_purchase(
    tag: &str,
    replies: &BTreeMap<String, Reply>,
) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let held: Vec<ReservationId> = replies
        .values()
        .filter_map(|r| match &r.outcome {
            Outcome::Reserved { reservation, .. } => Some(reservation.clone()),
            _ => None,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for (i, reservation) in held.iter().enumerate() {
        let command = match i % 3 {
            0 => Command::Release(Release { reservation: reservation.clone() }),
            1 => Command::Purchase(Purchase { reservation: reservation.clone(), quantity: None }),
            _ => continue,
        };
        out.push(request(&format!("{tag}-end-{i}"), command));
    }
    if let (Some(first), Some(other)) = (out.first().cloned(), held.get(1)) {
        out.push(first);
        let conflicting = Command::Release(Release { reservation: other.clone() });
        out.push(request(&format!("{tag}-end-0"), conflicting));
    }
    out
}

/// How many command records of `records` the processor answers: every request, also a
/// misrouted one (dead-lettered and answered `refused`); an undecodable record has no
/// sender to answer.
pub fn answerable(records: &[(String, Vec<u8>)]) -> usize {
    records
        .iter()
        .filter(|(_, payload)| {
            from_json::<LogCommand>(Some(payload))
                .is_ok_and(|e| matches!(e.body, LogCommand::Request(_)))
        })
        .count()
}

pub fn assert_clean(report: &chaos::Report) {
    assert!(report.ok(), "audit:\n{report}");
    assert_eq!(report.duplicates, 0, "read_committed showed an output twice:\n{report}");
}
