//! One run of a scenario: start (or reach) the target, stock it, drive the open-loop
//! workload while the nemesis applies the faults, then settle, resolve every command
//! that got no reply by sending it again with its key, read the final state, check, and
//! report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::task::JoinSet;

use crate::check::{self, Context};
use crate::cluster::{ClusterError, LocalCluster, LocalSpec};
use crate::driver::{ADMIN_TENANT, Driver};
use crate::history::{Entry, position};
use crate::report::{self, AuditSummary, Report};
use crate::scenario::{FaultKind, Scenario, Target};
use crate::workload::{Generator, Kind, sku_name, warehouse_name};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("local cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

/// Where the run writes and what it starts.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `skuflow` binary (for a local target's child processes).
    pub binary: PathBuf,
    /// Report, history and the local cluster's data and logs go here.
    pub out_dir: PathBuf,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// Most requests in flight before the generator drops arrivals (and counts them).
const MAX_IN_FLIGHT: usize = 20_000;

/// Run `scenario`; writes `history.jsonl`, `report.json` and `report.html` to the
/// output directory and returns the report.
pub fn run(scenario: &Scenario, options: &RunOptions) -> Result<Report, RunError> {
    std::fs::create_dir_all(&options.out_dir)?;
    let started_at = humantime_now();
    let local = matches!(scenario.target, Target::Local { .. });
    let (cluster, apis, tenant_keys, admin_key, tick_bound_ms, brokers) = match &scenario.target {
        Target::Local {
            processors,
            apis,
            partitions,
            tick_interval_ms,
            processor_args,
            data_disk_mb,
        } => {
            let spec = LocalSpec {
                binary: options.binary.clone(),
                dir: options.out_dir.join("cluster"),
                processors: *processors,
                apis: *apis,
                partitions: *partitions,
                tick_interval_ms: *tick_interval_ms,
                tenants: scenario.workload.tenants,
                processor_args: processor_args.clone(),
                seed: scenario.seed,
                proxy: scenario.faults.iter().any(|f| f.kind.is_network()),
                data_disk_mb: scenario
                    .faults
                    .iter()
                    .any(|f| f.kind == FaultKind::FillDisk)
                    .then_some(*data_disk_mb),
            };
            let cluster = LocalCluster::start(&spec)?;
            let urls = cluster.api_urls.clone();
            let keys = cluster.keys.clone();
            let brokers = cluster.bootstrap.clone();
            (
                Some(Arc::new(Mutex::new(cluster))),
                urls,
                keys.tenants,
                keys.admin,
                tick_interval_ms + 1_000,
                Some(brokers),
            )
        }
        Target::Remote { api_urls, brokers, admin_key_env, tenant_key_envs, tick_bound_ms }
        | Target::Kubernetes {
            api_urls,
            brokers,
            admin_key_env,
            tenant_key_envs,
            tick_bound_ms,
            ..
        } => {
            let env = |name: &str| {
                std::env::var(name)
                    .map_err(|_| RunError::Config(format!("variable {name} is not set")))
            };
            let admin = env(admin_key_env)?;
            let tenants = (0..scenario.workload.tenants)
                .map(|i| {
                    let tenant = crate::workload::tenant_name(i);
                    let var = tenant_key_envs.get(&tenant).ok_or_else(|| {
                        RunError::Config(format!("tenant_key_envs has no {tenant}"))
                    })?;
                    env(var)
                })
                .collect::<Result<Vec<_>, _>>()?;
            (None, api_urls.clone(), tenants, admin, *tick_bound_ms, brokers.clone())
        }
    };
    let timeout = Duration::from_millis(scenario.workload.request_timeout_ms);
    let mut driver = Driver::new(apis, tenant_keys, admin_key, timeout)?;
    if scenario.workload.ingest_fraction > 0.0 {
        let brokers = brokers.as_deref().ok_or_else(|| {
            RunError::Config("workload.ingest_fraction needs the target's brokers".into())
        })?;
        let client = crate::ingest_client::IngestClient::start(brokers)
            .map_err(|e| RunError::Config(format!("the ingest client on {brokers}: {e}")))?;
        driver = driver.with_ingest(client);
    }
    let driver = Arc::new(driver);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    // Stock, and every stock command answered: the processors serve every partition
    // before the workload starts.
    rt.block_on(async {
        stock_up(&driver, scenario).await;
        resolve(&driver).await;
    });
    if let Some(c) = &cluster {
        c.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .wait_balanced(Duration::from_secs(120))?;
    }
    let t0_ms = driver.elapsed_ms();
    let workload_start = Instant::now();
    let (processors, api_count) = match &scenario.target {
        Target::Local { processors, apis, .. } => (*processors, *apis),
        Target::Remote { api_urls, .. } => (0, api_urls.len()),
        Target::Kubernetes { api_urls, cluster, .. } => (cluster.replicas as usize, api_urls.len()),
    };
    let plan = scenario.plan(processors, api_count);
    let stop = Arc::new(AtomicBool::new(false));
    let injector = match (&cluster, &scenario.target) {
        (Some(c), _) => Some(crate::nemesis::Injector::Local(c.clone())),
        (None, Target::Kubernetes { cluster, .. }) => {
            Some(crate::nemesis::Injector::Kubernetes(cluster.clone()))
        }
        _ => None,
    };
    let tick = match &scenario.target {
        Target::Local { tick_interval_ms, .. } => *tick_interval_ms,
        _ => 1_000,
    };
    if injector.is_none() && !plan.is_empty() {
        tracing::warn!(
            "a remote target gets no faults (use kind = \"kubernetes\" or a local target)"
        );
    }
    let mut background = Background {
        nemesis: injector.map(|injector| {
            let (plan, stop) = (plan.clone(), stop.clone());
            std::thread::spawn(move || {
                crate::nemesis::run(&injector, &plan, workload_start, tick, &stop)
            })
        }),
        lag_sampler: cluster.as_ref().map(|c| {
            let (c, stop) = (c.clone(), stop.clone());
            std::thread::spawn(move || sample_lag(&c, workload_start, &stop))
        }),
        stop,
    };
    let (skipped, dropped) = rt.block_on(drive(&driver, scenario, options.progress));
    if let Some(c) = &cluster {
        let mut c = c.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for i in 0..c.apis.len() {
            c.wait_api_ready(i, Duration::from_secs(120))?;
        }
    }
    rt.block_on(resolve(&driver));
    rt.block_on(settle(&driver, tick_bound_ms));
    let (mut faults, lag) = background.finish();
    for f in &mut faults {
        f.start_ms += t0_ms;
        f.end_ms += t0_ms;
    }
    let history = driver.history();
    write_history(&options.out_dir, &history)?;
    let halted_gaps = match &cluster {
        Some(c) => c.lock().unwrap_or_else(std::sync::PoisonError::into_inner).halted_gaps(),
        None => Default::default(),
    };
    let ctx = Context {
        halted_gaps,
        tick_bound_ms,
        broker_kills_ms: faults
            .iter()
            .filter(|f| local && matches!(f.kind, FaultKind::KillBroker | FaultKind::RestartBroker))
            .map(|f| f.start_ms)
            .collect(),
    };
    let verdict = check::check(&history, &ctx);
    let broker_lost = verdict.findings.iter().any(|f| f.explained_by.is_some());
    let audit = match &brokers {
        Some(b) => second_opinion(b, broker_lost),
        None => {
            AuditSummary { ran: false, ok: true, explained: false, text: "no brokers given".into() }
        }
    };
    let seconds = scenario.duration_s.ceil() as usize + 1;
    let mut timeline = report::timeline(&history, t0_ms, seconds);
    for (t, lag) in lag {
        if let Some(second) = timeline.get_mut(t) {
            second.lag = Some(second.lag.map_or(lag, |l| l.max(lag)));
        }
    }
    let recoveries = report::recoveries(&timeline, t0_ms, &faults, &scenario.hypothesis);
    let windows =
        report::windows(&history, t0_ms, scenario.duration_s, &faults, &scenario.hypothesis);
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for e in &history {
        *by_kind.entry(e.kind.clone()).or_default() += 1;
    }
    let report = Report {
        scenario: scenario.clone(),
        started_at,
        requests: history.len(),
        by_kind: by_kind.into_iter().collect(),
        timeline,
        faults,
        recoveries,
        windows,
        verdict,
        audit,
        skipped,
        dropped,
    };
    std::fs::write(
        options.out_dir.join("report.json"),
        serde_json::to_vec_pretty(&report).unwrap_or_default(),
    )?;
    std::fs::write(options.out_dir.join("report.html"), report::html(&report, t0_ms))?;
    drop(cluster);
    Ok(report)
}

fn humantime_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    format!("unix {secs}")
}

fn write_history(dir: &std::path::Path, history: &[Entry]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("history.jsonl"))?);
    for e in history {
        serde_json::to_writer(&mut out, e)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Every (SKU, warehouse) row gets its initial stock.
async fn stock_up(driver: &Arc<Driver>, scenario: &Scenario) {
    let w = &scenario.workload;
    let rows: Vec<(usize, usize)> =
        (0..w.skus).flat_map(|s| (0..w.warehouses).map(move |h| (s, h))).collect();
    let mut tasks = JoinSet::new();
    for (i, (s, h)) in rows.into_iter().enumerate() {
        if tasks.len() >= 32 {
            tasks.join_next().await;
        }
        let driver = driver.clone();
        let quantity = w.initial_stock.max(1);
        tasks.spawn(async move {
            let (sku, wh) = (sku_name(s), warehouse_name(h));
            let path = format!("/v1/admin/stock/{sku}/{wh}/restock?wait=5000");
            let body = json!({ "quantity": quantity });
            let request = crate::driver::Request::command(
                "setup",
                ADMIN_TENANT,
                format!("setup-{i}"),
                sku,
                path,
                body,
            );
            driver.send(i, request).await;
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// The open-loop workload; returns (skipped, dropped) draws.
async fn drive(driver: &Arc<Driver>, scenario: &Scenario, progress: bool) -> (usize, usize) {
    let mut generator = Generator::new(scenario.seed, &scenario.workload);
    let start = tokio::time::Instant::now();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (mut skipped, mut dropped) = (0, 0);
    let mut tasks = JoinSet::new();
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new((scenario.duration_s * 10.0) as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {elapsed}/{duration} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut t = 0.0;
    let mut n: u64 = 0;
    let api_count = driver.apis.len().max(1) as u64;
    loop {
        t += generator.gap();
        if t >= scenario.duration_s {
            break;
        }
        let draw = generator.draw();
        n += 1;
        tokio::time::sleep_until(start + Duration::from_secs_f64(t)).await;
        if let Some(bar) = &bar {
            bar.set_position((t * 10.0) as u64);
            if n.is_multiple_of(64) {
                bar.set_message(format!(
                    "{} requests, {} in flight",
                    driver.entries(),
                    in_flight.load(Ordering::Relaxed)
                ));
            }
        }
        while tasks.try_join_next().is_some() {}
        if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            dropped += 1;
            continue;
        }
        let Some(request) = driver.request(n, &draw) else {
            skipped += 1;
            continue;
        };
        let api = (draw.variant % api_count) as usize;
        let (driver, in_flight) = (driver.clone(), in_flight.clone());
        in_flight.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let entry = driver.send(api, request).await;
            if draw.kind == Kind::ReserveThenPoll && entry.accepted() {
                poll(&driver, &entry, api).await;
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    while tasks.join_next().await.is_some() {}
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    (skipped, dropped)
}

/// How long a client polls a 202's Location before it gives up (the harness's
/// resolution after the run finds the answer).
const POLL_FOR: Duration = Duration::from_secs(10);

/// Poll a 202's Location until it answers, 250 ms apart, from any instance, for at
/// most [`POLL_FOR`].
async fn poll(driver: &Driver, accepted: &Entry, api: usize) {
    let Some(location) =
        accepted.response.as_ref().and_then(|r| r["poll"].as_str()).map(str::to_owned)
    else {
        return;
    };
    let deadline = tokio::time::Instant::now() + POLL_FOR;
    for i in 0.. {
        if tokio::time::Instant::now() > deadline {
            return;
        }
        let request = driver.get(
            "poll",
            &accepted.tenant,
            accepted.sku.clone(),
            location.clone(),
            Some(accepted.id),
        );
        let entry = driver.send(api + i, request).await;
        if entry.reply().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How long the harness keeps sending unanswered requests again after the run.
const RESOLVE_WITHIN: Duration = Duration::from_secs(60);

/// Every command without a reply anywhere in the history is resolved, a second apart,
/// for at most [`RESOLVE_WITHIN`]: one the API accepted (202) is polled at its position
/// (an answer at once, from any instance), and sent again with its key and body when
/// the poll does not know it; one that got no position is sent again.
async fn resolve(driver: &Arc<Driver>) {
    let history = driver.history();
    let by_id: BTreeMap<u64, &Entry> = history.iter().map(|e| (e.id, e)).collect();
    let request_of = |e: &Entry| -> Entry {
        match e.of.and_then(|id| by_id.get(&id)) {
            Some(of) if e.method == "GET" => (*of).clone(),
            _ => e.clone(),
        }
    };
    let answered: std::collections::BTreeSet<_> = history
        .iter()
        .filter(|e| e.reply().is_some())
        .filter_map(|e| check::identity(&request_of(e)))
        .collect();
    // Where each command was accepted, if it was: the poll location of a 202.
    let mut polls: BTreeMap<_, String> = BTreeMap::new();
    for e in &history {
        if let (Some(id), Some(location)) =
            (check::identity(&request_of(e)), e.response.as_ref().and_then(|r| r["poll"].as_str()))
        {
            polls.insert(id, location.to_owned());
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let open: Vec<Entry> = history
        .iter()
        .filter(|e| e.is_command())
        .filter(|e| check::identity(e).is_some_and(|id| !answered.contains(&id) && seen.insert(id)))
        .cloned()
        .collect();
    let deadline = tokio::time::Instant::now() + RESOLVE_WITHIN;
    let mut tasks = JoinSet::new();
    for (i, e) in open.into_iter().enumerate() {
        if tasks.len() >= 128 {
            tasks.join_next().await;
        }
        let driver = driver.clone();
        let mut poll = check::identity(&e).and_then(|id| polls.get(&id).cloned());
        tasks.spawn(async move {
            // Past the deadline the rest stay open (the checker reports them).
            if tokio::time::Instant::now() > deadline {
                return;
            }
            for attempt in 0.. {
                let request = match &poll {
                    Some(location) => driver.get(
                        "resolve",
                        &e.tenant,
                        e.sku.clone(),
                        location.clone(),
                        Some(e.id),
                    ),
                    None => driver.again(&e, "resolve"),
                };
                let answer = driver.send(i + attempt, request).await;
                if answer.reply().is_some() || tokio::time::Instant::now() > deadline {
                    return;
                }
                // A position the instance does not know (the broker gave it to another
                // record): the command itself again, under its key.
                if answer.status == Some(404) {
                    poll = None;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Wait until every hold's time plus the tick bound has passed, read every SKU's
/// availability (`settled-read`), then send one probe command per SKU (a restock of one
/// unit) and read again as of its position (`final-read`).
async fn settle(driver: &Arc<Driver>, tick_bound_ms: u64) {
    let history = driver.history();
    let mut last: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut latest_expiry = 0i64;
    for e in &history {
        let Some(reply) = e.reply() else { continue };
        latest_expiry = latest_expiry.max(reply["outcome"]["expires_at"].as_i64().unwrap_or(0));
        let sku = e.sku.clone().or_else(|| {
            e.of.and_then(|id| history.iter().find(|x| x.id == id)).and_then(|x| x.sku.clone())
        });
        if let (Some(sku), Some(p)) = (sku, position(reply)) {
            let slot = last.entry(sku).or_insert(p);
            *slot = (*slot).max(p);
        }
    }
    let now_ms =
        || SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let wait = latest_expiry + tick_bound_ms as i64 + 1_000 - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let deadline = tokio::time::Instant::now() + RESOLVE_WITHIN;
    let mut tasks = JoinSet::new();
    for (i, (sku, p)) in last.into_iter().enumerate() {
        let driver = driver.clone();
        tasks.spawn(async move {
            let read = |kind: &'static str, (p, o): (i64, i64)| {
                let path = format!("/v1/availability/{sku}?min_position={p}-{o}&wait=10000");
                driver.get(kind, ADMIN_TENANT, Some(sku.clone()), path, None)
            };
            driver.send(i, read("settled-read", p)).await;
            let path = format!("/v1/admin/stock/{sku}/{}/restock?wait=10000", warehouse_name(0));
            let body = json!({ "quantity": 1 });
            let probe = crate::driver::Request::command(
                "probe",
                ADMIN_TENANT,
                format!("probe-{i}"),
                sku.clone(),
                path,
                body,
            );
            for attempt in 0.. {
                if let Some(at) =
                    driver.send(i + attempt, probe.clone()).await.reply().and_then(position)
                {
                    driver.send(i, read("final-read", at)).await;
                    return;
                }
                if tokio::time::Instant::now() > deadline {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// The threads that run beside the workload, each holding the local cluster. Finished
/// (stopped and joined) on every way out of [`run`], an error included: otherwise the
/// process would exit with a thread still owning the cluster, whose members (broker,
/// processors, APIs) would outlive it as orphans.
struct Background {
    stop: Arc<AtomicBool>,
    nemesis: Option<std::thread::JoinHandle<Vec<crate::nemesis::Applied>>>,
    lag_sampler: Option<std::thread::JoinHandle<Vec<(usize, i64)>>>,
}

impl Background {
    /// Stop both threads and take what they collected.
    fn finish(&mut self) -> (Vec<crate::nemesis::Applied>, Vec<(usize, i64)>) {
        self.stop.store(true, Ordering::Relaxed);
        let faults = self.nemesis.take().map(|n| n.join().unwrap_or_default());
        let lag = self.lag_sampler.take().map(|s| s.join().unwrap_or_default());
        (faults.unwrap_or_default(), lag.unwrap_or_default())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The processors' lag once a second, as (second of the workload, records), until `stop`.
fn sample_lag(
    cluster: &Arc<Mutex<LocalCluster>>,
    start: Instant,
    stop: &AtomicBool,
) -> Vec<(usize, i64)> {
    let Ok(client) =
        reqwest::blocking::Client::builder().timeout(Duration::from_millis(500)).build()
    else {
        return Vec::new();
    };
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let urls =
            cluster.lock().unwrap_or_else(std::sync::PoisonError::into_inner).running_metrics();
        if let Some(lag) = crate::cluster::scrape_lag(&client, &urls) {
            samples.push((start.elapsed().as_secs() as usize, lag));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    samples
}

/// `skuflow audit`'s checks on the topics. When the checker found that the broker lost
/// acknowledged records, the auditor's findings (which cannot tell a lost record from a
/// bug) are marked as explained by that loss.
fn second_opinion(brokers: &str, broker_lost: bool) -> AuditSummary {
    let topics = topics::Topics::default();
    match crate::log::Log::read(brokers, &topics, Duration::from_secs(120)) {
        Ok(log) => {
            let audit = crate::audit(&log, state::MachineConfig::default());
            let explained = !audit.ok() && broker_lost;
            AuditSummary { ran: true, ok: audit.ok(), explained, text: audit.to_string() }
        }
        Err(e) => AuditSummary {
            ran: true,
            ok: false,
            explained: false,
            text: format!("could not read the topics: {e}"),
        },
    }
}
