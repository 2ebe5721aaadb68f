//! A chaos scenario, read from a TOML file: what to run against, for how long, with
//! which workload, which faults when, and the steady state that must hold. The same
//! seed gives the same arrival times, operation kinds, SKUs, quantities and fault
//! schedule; which of the holds known at that moment a follow-up (purchase, release,
//! extend, retry) picks depends on the answers the system gave.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: {1}")]
    Parse(String, toml::de::Error),
    #[error("{0}: {1}")]
    Invalid(String, String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub seed: u64,
    /// Seconds of workload.
    pub duration_s: f64,
    pub target: Target,
    pub workload: Workload,
    #[serde(default)]
    pub faults: Vec<Fault>,
    #[serde(default)]
    pub hypothesis: Hypothesis,
}

/// What the harness drives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Target {
    /// A cluster the harness starts itself as child processes: the dev broker, `processors`
    /// processors and `apis` API instances.
    Local {
        #[serde(default = "two")]
        processors: usize,
        #[serde(default = "one")]
        apis: usize,
        #[serde(default = "four")]
        partitions: i32,
        /// The processors' tick interval: holds expire at most this long after their time
        /// when no command arrives (the checker's tick bound adds one second to it).
        #[serde(default = "tick")]
        tick_interval_ms: u64,
        /// Extra flags for every processor (for example a fault-injection flag).
        #[serde(default)]
        processor_args: Vec<String>,
        /// Size of the tmpfs mounted as each processor's data disk when the scenario
        /// fills disks (`fill-disk`).
        #[serde(default = "disk")]
        data_disk_mb: u64,
    },
    /// A running deployment: its API URLs, and credentials taken from the environment
    /// (the name of the variable holding each key, never the key).
    Remote {
        api_urls: Vec<String>,
        /// Brokers, for the auditor's second opinion (skipped when absent).
        #[serde(default)]
        brokers: Option<String>,
        admin_key_env: String,
        /// Tenant → variable holding a client key of that tenant.
        tenant_key_envs: BTreeMap<String, String>,
        /// Largest delay between a hold's expiry and its units' return (the tick bound).
        #[serde(default = "remote_tick")]
        tick_bound_ms: u64,
    },
    /// A deployment on Kubernetes: reached like `remote`, broken through `kubectl` and
    /// Chaos Mesh ([`crate::k8s`]).
    Kubernetes {
        api_urls: Vec<String>,
        #[serde(default)]
        brokers: Option<String>,
        admin_key_env: String,
        tenant_key_envs: BTreeMap<String, String>,
        #[serde(default = "remote_tick")]
        tick_bound_ms: u64,
        cluster: crate::k8s::Cluster,
    },
}

fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn four() -> i32 {
    4
}
fn tick() -> u64 {
    200
}
fn disk() -> u64 {
    512
}
fn remote_tick() -> u64 {
    5_000
}

/// The checkout load, open loop: requests start at their arrival times whatever the
/// system's answers, so latency under faults shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Requests per second (Poisson arrivals).
    pub rate: f64,
    #[serde(default = "skus")]
    pub skus: usize,
    /// The first `hot_skus` SKUs get `hot_fraction` of the traffic; the rest is spread
    /// over all SKUs by a Zipf law of exponent `zipf_s`.
    #[serde(default = "hot")]
    pub hot_skus: usize,
    #[serde(default = "hot_fraction")]
    pub hot_fraction: f64,
    #[serde(default = "zipf")]
    pub zipf_s: f64,
    #[serde(default = "warehouses")]
    pub warehouses: usize,
    #[serde(default = "tenants")]
    pub tenants: usize,
    /// Units each (SKU, warehouse) row gets at the start.
    #[serde(default = "stock")]
    pub initial_stock: u32,
    /// Hold times, milliseconds, drawn uniformly from this range.
    #[serde(default = "ttl")]
    pub ttl_ms: [u64; 2],
    /// Largest quantity one reserve asks for.
    #[serde(default = "quantity")]
    pub max_quantity: u32,
    #[serde(default)]
    pub mix: Mix,
    /// Share of requests that are malformed or hostile (must be refused with a 4xx).
    #[serde(default = "hostile")]
    pub hostile_fraction: f64,
    /// How long one request may take before the client gives up on it.
    #[serde(default = "timeout")]
    pub request_timeout_ms: u64,
    /// Share of the tenants' commands (reserve, purchase, release, extend and their
    /// retries) produced straight to the commands topic with the `ingest` library, as a
    /// service that embeds it would, instead of sent to the API. Needs the brokers.
    #[serde(default)]
    pub ingest_fraction: f64,
}

fn skus() -> usize {
    200
}
fn hot() -> usize {
    3
}
fn hot_fraction() -> f64 {
    0.3
}
fn zipf() -> f64 {
    1.1
}
fn warehouses() -> usize {
    3
}
fn tenants() -> usize {
    3
}
fn stock() -> u32 {
    50
}
fn ttl() -> [u64; 2] {
    [1_000, 4_000]
}
fn quantity() -> u32 {
    3
}
fn hostile() -> f64 {
    0.02
}
fn timeout() -> u64 {
    10_000
}

/// Relative weights of the operations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    pub reserve: f64,
    /// Reserve with `?wait=0`, then poll the Location until answered.
    pub reserve_then_poll: f64,
    /// Buy a known hold, whole or in part.
    pub purchase: f64,
    pub release: f64,
    pub extend: f64,
    /// Send an earlier request again with its key and body.
    pub retry_same: f64,
    /// Send an earlier key with another body (must be a conflict).
    pub retry_conflict: f64,
    /// Availability with `min_position` of an earlier answer.
    pub availability: f64,
    /// Admin restock of a random row.
    pub restock: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            reserve: 40.0,
            reserve_then_poll: 5.0,
            purchase: 12.0,
            release: 8.0,
            extend: 5.0,
            retry_same: 5.0,
            retry_conflict: 2.0,
            availability: 15.0,
            restock: 8.0,
        }
    }
}

/// A fault: applied at `at_s`, healed `duration_s` later; `every_s` and `count` repeat
/// it (a campaign).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub kind: FaultKind,
    pub at_s: f64,
    #[serde(default)]
    pub duration_s: f64,
    /// Which processor or API instance (default: chosen by the seed).
    #[serde(default)]
    pub target: Option<usize>,
    #[serde(default)]
    pub every_s: Option<f64>,
    #[serde(default = "once")]
    pub count: u32,
    /// Network faults: added delay per chunk, its jitter (±), a bandwidth cap.
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub jitter_ms: u64,
    #[serde(default)]
    pub bandwidth_kbps: u64,
}

fn once() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// `kill -9` a processor; start it again when healed.
    KillProcessor,
    /// SIGSTOP a processor (a zombie: its group session and transactions time out);
    /// SIGCONT when healed.
    PauseProcessor,
    /// Stop a processor cleanly (it leaves the group: a rebalance); start it when healed.
    StopProcessor,
    /// Start one more processor (a rebalance); stop it cleanly when healed.
    AddProcessor,
    /// `kill -9` an API instance; start it again on the same port when healed.
    KillApi,
    /// `kill -9` the broker; start it again on the same port and data when healed. The
    /// dev broker loses writes it acknowledged shortly before (the report says so).
    KillBroker,
    /// Stop the broker cleanly (SIGTERM); start it again when healed.
    RestartBroker,
    /// Between the processors and the broker (through the proxy): `latency_ms` ±
    /// `jitter_ms` added to every chunk.
    NetworkLatency,
    /// Between the processors and the broker: at most `bandwidth_kbps`.
    NetworkBandwidth,
    /// Between the processors and the broker: nothing passes, connections stay open.
    NetworkBlackhole,
    /// Between the processors and the broker: every connection reset, new ones too.
    NetworkReset,
    /// Fill a processor's data disk (a tmpfs of `data_disk_mb` the local cluster mounts
    /// on each processor's data directory; root needed); free it when healed.
    FillDisk,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillProcessor => "kill-processor",
            FaultKind::PauseProcessor => "pause-processor",
            FaultKind::StopProcessor => "stop-processor",
            FaultKind::AddProcessor => "add-processor",
            FaultKind::KillApi => "kill-api",
            FaultKind::KillBroker => "kill-broker",
            FaultKind::RestartBroker => "restart-broker",
            FaultKind::NetworkLatency => "network-latency",
            FaultKind::NetworkBandwidth => "network-bandwidth",
            FaultKind::NetworkBlackhole => "network-blackhole",
            FaultKind::NetworkReset => "network-reset",
            FaultKind::FillDisk => "fill-disk",
        }
    }

    /// Applied through the proxy between processors and broker.
    pub fn is_network(self) -> bool {
        matches!(
            self,
            FaultKind::NetworkLatency
                | FaultKind::NetworkBandwidth
                | FaultKind::NetworkBlackhole
                | FaultKind::NetworkReset
        )
    }
}

/// The steady state (Chaos Toolkit's hypothesis): checked before the first fault and
/// after the last one has healed (plus `max_recovery_s`); each fault's recovery time is
/// checked against `max_recovery_s`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hypothesis {
    /// Share of requests answered 5xx or not at all.
    pub max_error_rate: f64,
    /// p99 latency of command requests, milliseconds.
    pub max_p99_ms: f64,
    /// Seconds from a fault's heal until a second whose requests meet the error rate and
    /// p99 bounds.
    pub max_recovery_s: f64,
}

impl Default for Hypothesis {
    fn default() -> Self {
        Self { max_error_rate: 0.01, max_p99_ms: 1_000.0, max_recovery_s: 30.0 }
    }
}

/// One fault as scheduled: seconds from the start of the workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    pub kind: FaultKind,
    pub start_s: f64,
    pub end_s: f64,
    pub target: usize,
    /// What a network fault does to the bytes.
    pub toxics: crate::proxy::Toxics,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let name = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| ScenarioError::Read(name.clone(), e))?;
        let scenario: Self =
            toml::from_str(&text).map_err(|e| ScenarioError::Parse(name.clone(), e))?;
        scenario.validate().map_err(|e| ScenarioError::Invalid(name, e))?;
        Ok(scenario)
    }

    /// Bounds that keep a run meaningful and finite.
    pub fn validate(&self) -> Result<(), String> {
        let w = &self.workload;
        let checks = [
            (
                self.duration_s > 0.0 && self.duration_s <= 86_400.0,
                "duration_s must be in (0, 86400]",
            ),
            (w.rate > 0.0 && w.rate <= 100_000.0, "workload.rate must be in (0, 100000]"),
            (w.skus >= 1 && w.skus <= 1_000_000, "workload.skus must be 1 to 1000000"),
            (w.hot_skus <= w.skus, "workload.hot_skus must not exceed skus"),
            ((0.0..=1.0).contains(&w.hot_fraction), "workload.hot_fraction must be in [0, 1]"),
            (
                (0.0..=1.0).contains(&w.hostile_fraction),
                "workload.hostile_fraction must be in [0, 1]",
            ),
            (
                (0.0..=1.0).contains(&w.ingest_fraction),
                "workload.ingest_fraction must be in [0, 1]",
            ),
            (w.warehouses >= 1 && w.warehouses <= 32, "workload.warehouses must be 1 to 32"),
            (w.tenants >= 1 && w.tenants <= 100, "workload.tenants must be 1 to 100"),
            (
                w.ttl_ms[0] >= 1 && w.ttl_ms[0] <= w.ttl_ms[1],
                "workload.ttl_ms must be [low, high], low >= 1",
            ),
            (
                w.max_quantity >= 1 && w.max_quantity <= 10_000,
                "workload.max_quantity must be 1 to 10000",
            ),
            (w.zipf_s > 0.0, "workload.zipf_s must be positive"),
        ];
        if let Some((_, message)) = checks.iter().find(|(ok, _)| !ok) {
            return Err((*message).to_owned());
        }
        for f in &self.faults {
            if f.at_s < 0.0
                || f.duration_s < 0.0
                || f.count == 0
                || f.every_s.is_some_and(|e| e <= 0.0)
            {
                return Err(format!(
                    "fault {}: at_s and duration_s >= 0, count >= 1, every_s > 0",
                    f.kind.name()
                ));
            }
        }
        // A window that starts after the load has ended would be skipped without a word.
        if let Some(late) = self.plan(1, 1).iter().find(|p| p.start_s >= self.duration_s) {
            return Err(format!(
                "fault {} at {} s starts after the workload's {} s (duration_s)",
                late.kind.name(),
                late.start_s,
                self.duration_s
            ));
        }
        Ok(())
    }

    /// Every fault window, in start order; targets not given are drawn from the seed.
    pub fn plan(&self, processors: usize, apis: usize) -> Vec<Planned> {
        let mut rng = crate::workload::Rng::new(self.seed ^ 0x6661_756c_7473);
        let mut plan = Vec::new();
        for f in &self.faults {
            let every = f.every_s.unwrap_or(f.duration_s.max(1.0));
            for i in 0..f.count {
                let start_s = f.at_s + every * f64::from(i);
                let pool = match f.kind {
                    FaultKind::KillApi => apis,
                    FaultKind::KillProcessor
                    | FaultKind::PauseProcessor
                    | FaultKind::StopProcessor => processors,
                    _ => 1,
                };
                let target = f.target.unwrap_or_else(|| rng.below(pool.max(1) as u64) as usize);
                let toxics = crate::proxy::Toxics {
                    latency_ms: f.latency_ms,
                    jitter_ms: f.jitter_ms,
                    bandwidth_kbps: f.bandwidth_kbps,
                    blackhole: f.kind == FaultKind::NetworkBlackhole,
                    reset: f.kind == FaultKind::NetworkReset,
                };
                let end_s = start_s + f.duration_s;
                plan.push(Planned { kind: f.kind, start_s, end_s, target, toxics });
            }
        }
        plan.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        plan
    }
}
