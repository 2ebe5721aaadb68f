//! A local deployment the harness starts and breaks: the dev broker, processors and API
//! instances as child processes of the `skuflow` binary, each on a fixed port and data
//! directory so that a restart is the same member coming back.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::dev::{DevBroker, DevBrokerConfig};
use nix::sys::signal::Signal;
use topics::Topics;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("dev broker: {0}")]
    Broker(#[from] broker::dev::DevBrokerError),
    #[error("topics: {0}")]
    Admin(#[from] broker::admin::AdminError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} did not become ready within {1:?}; its log: {2}")]
    NotReady(String, Duration, PathBuf),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |e| ClusterError::Io(what, e)
}

/// One `skuflow` child process that can be killed, paused and started again.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    /// Run under this group id (the proxy's NAT rule matches it).
    gid: Option<u32>,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    binary: PathBuf,
    /// Started, and not killed or stopped since: if it exits on its own, it is started
    /// again (as a pod's restart policy would), at most once a second.
    wanted: bool,
    started: Option<Instant>,
    /// Times it exited on its own and was started again.
    pub restarts: u32,
}

impl Member {
    fn new(binary: &Path, name: String, args: Vec<String>, log: PathBuf) -> Self {
        Self {
            name,
            gid: None,
            args,
            log,
            child: None,
            binary: binary.to_owned(),
            wanted: false,
            started: None,
            restarts: 0,
        }
    }

    pub fn start(&mut self) -> Result<(), ClusterError> {
        if self.is_running() {
            return Ok(());
        }
        let log =
            File::options().create(true).append(true).open(&self.log).map_err(io(&self.name))?;
        let mut command = Command::new(&self.binary);
        if let Some(gid) = self.gid {
            std::os::unix::process::CommandExt::gid(&mut command, gid);
        }
        let child = command
            .args(&self.args)
            .env("SKUFLOW_LOG", "info,rdkafka=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io(&self.name))?;
        self.child = Some(child);
        self.wanted = true;
        self.started = Some(Instant::now());
        Ok(())
    }

    /// Start it again if it exited on its own (at most once a second).
    pub fn supervise(&mut self) {
        let exited =
            self.wanted && self.child.as_mut().is_some_and(|c| !matches!(c.try_wait(), Ok(None)));
        let due = self.started.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if exited && due {
            tracing::warn!(member = %self.name, log = %self.log.display(), "exited on its own; starting it again");
            self.child = None;
            self.restarts += 1;
            if let Err(e) = self.start() {
                tracing::warn!(member = %self.name, error = %e, "could not start it again");
            }
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.wanted = false;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (a clean stop: the member leaves its group).
    pub fn stop(&mut self) {
        self.wanted = false;
        if let Some(mut child) = self.child.take() {
            signal_live(&mut child, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&mut self, signal: Signal) {
        if let Some(child) = &mut self.child {
            signal_live(child, signal);
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log(&self) -> &Path {
        &self.log
    }
}

/// [`broker::dev::signal_live`], with a warning when the signal was not sent.
pub(crate) fn signal_live(child: &mut std::process::Child, signal: Signal) {
    match broker::dev::signal_live(child, signal) {
        Ok(true) => {}
        Ok(false) => tracing::warn!(pid = child.id(), ?signal, "not signalled: already reaped"),
        Err(error) => tracing::warn!(pid = child.id(), ?signal, %error, "could not signal"),
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // A paused member must be woken to die cleanly.
        self.signal(Signal::SIGCONT);
        self.kill9();
    }
}

/// Keys the local cluster is configured with.
#[derive(Debug, Clone)]
pub struct Keys {
    pub admin: String,
    pub tenants: Vec<String>,
}

/// The running local deployment.
#[derive(Debug)]
pub struct LocalCluster {
    pub broker: DevBroker,
    /// Between processors and broker, when the scenario has network faults.
    pub proxy: Option<crate::proxy::Proxy>,
    pub bootstrap: String,
    pub topics: Topics,
    pub processors: Vec<Member>,
    pub apis: Vec<Member>,
    pub api_urls: Vec<String>,
    pub keys: Keys,
    pub dir: PathBuf,
    binary: PathBuf,
    processor_args: Vec<String>,
    processor_metrics: Vec<String>,
    partitions: i32,
    data_disk_mb: Option<u64>,
    /// tmpfs mounts to undo when the cluster stops.
    mounts: Vec<PathBuf>,
}

/// How to start the local cluster.
#[derive(Debug, Clone)]
pub struct LocalSpec {
    pub binary: PathBuf,
    pub dir: PathBuf,
    pub processors: usize,
    pub apis: usize,
    pub partitions: i32,
    pub tick_interval_ms: u64,
    pub tenants: usize,
    pub processor_args: Vec<String>,
    pub seed: u64,
    /// Route the processors through a proxy (network faults; root and iptables).
    pub proxy: bool,
    /// Mount a tmpfs of this many MiB as each processor's data disk (disk faults; root).
    pub data_disk_mb: Option<u64>,
}

impl LocalCluster {
    pub fn start(spec: &LocalSpec) -> Result<Self, ClusterError> {
        clear_dir(&spec.dir)?;
        std::fs::create_dir_all(&spec.dir).map_err(io(spec.dir.display().to_string()))?;
        // Without the front that makes empty fetches wait (`broker::long_poll`): the one
        // broker campaign run through it halted a partition where the runs without it
        // answered every command (RELIABILITY.md, open); the campaigns measure the broker
        // as they always have until that is understood.
        let broker = DevBroker::start_with(DevBrokerConfig {
            data_dir: Some(spec.dir.join("broker")),
            hold_fetches: false,
            ..DevBrokerConfig::default()
        })?;
        let bootstrap = broker.bootstrap();
        let topics = Topics::default();
        broker::admin::ensure_topics(
            &bootstrap,
            &processor::topic_specs(&topics, spec.partitions, 1),
        )?;
        let mut rng = crate::workload::Rng::new(spec.seed ^ 0x6b65_7973);
        let mut key =
            |label: &str| format!("{label}-{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        let keys = Keys {
            admin: key("admin"),
            tenants: (0..spec.tenants).map(|i| key(&format!("t{i}"))).collect(),
        };
        let proxy = if spec.proxy {
            let upstream = bootstrap
                .parse()
                .map_err(|e| ClusterError::Io("broker address".into(), std::io::Error::other(e)))?;
            Some(
                crate::proxy::Proxy::start(upstream)
                    .map_err(|e| ClusterError::Io("proxy".into(), std::io::Error::other(e)))?,
            )
        } else {
            None
        };
        let mut cluster = Self {
            proxy,
            broker,
            bootstrap,
            topics,
            processors: Vec::new(),
            apis: Vec::new(),
            api_urls: Vec::new(),
            keys,
            dir: spec.dir.clone(),
            binary: spec.binary.clone(),
            processor_args: spec.processor_args.clone(),
            processor_metrics: Vec::new(),
            partitions: spec.partitions,
            data_disk_mb: spec.data_disk_mb,
            mounts: Vec::new(),
        };
        for _ in 0..spec.processors {
            cluster.add_processor(spec.tick_interval_ms)?;
        }
        for i in 0..spec.apis {
            let port = broker::dev::free_port("127.0.0.1").map_err(io("a free port"))?;
            let mut args: Vec<String> = ["api", "--brokers", &cluster.bootstrap, "--bind"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            args.push(format!("127.0.0.1:{port}"));
            // The harness is one client with a few credentials: no rate limits in its way.
            args.extend(
                ["--rate", "1000000", "--burst", "1000000", "--max-in-flight", "100000"]
                    .map(String::from),
            );
            args.extend(["--max-connections-per-address", "0"].map(String::from));
            let hash = |k: &str| hex_sha256(k);
            args.push("--api-key".into());
            args.push(format!(
                "{}:admin:{}",
                crate::driver::ADMIN_TENANT,
                hash(&cluster.keys.admin)
            ));
            for (t, k) in cluster.keys.tenants.iter().enumerate() {
                args.push("--api-key".into());
                args.push(format!("{}:client:{}", crate::workload::tenant_name(t), hash(k)));
            }
            let log = cluster.dir.join(format!("api-{i}.log"));
            let mut member = Member::new(&cluster.binary, format!("api-{i}"), args, log);
            member.start()?;
            cluster.apis.push(member);
            cluster.api_urls.push(format!("http://127.0.0.1:{port}"));
        }
        for i in 0..cluster.apis.len() {
            cluster.wait_api_ready(i, Duration::from_secs(60))?;
        }
        Ok(cluster)
    }

    /// Start one more processor (its own instance name and store); returns its index.
    pub fn add_processor(&mut self, tick_interval_ms: u64) -> Result<usize, ClusterError> {
        let i = self.processors.len();
        let name = format!("processor-{i}");
        let mut args: Vec<String> =
            ["processor", "--brokers", &self.bootstrap, "--instance", &name]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        let data_dir = self.dir.join(&name);
        std::fs::create_dir_all(&data_dir).map_err(io(data_dir.display().to_string()))?;
        if let Some(mb) = self.data_disk_mb {
            mount_tmpfs(&data_dir, mb)?;
            self.mounts.push(data_dir.clone());
        }
        args.push("--data-dir".into());
        args.push(data_dir.display().to_string());
        let port = broker::dev::free_port("127.0.0.1").map_err(io("a free port"))?;
        args.push("--metrics-addr".into());
        args.push(format!("127.0.0.1:{port}"));
        self.processor_metrics.push(format!("http://127.0.0.1:{port}/metrics"));
        args.push("--tick-interval-ms".into());
        args.push(tick_interval_ms.to_string());
        args.extend(
            [
                "--session-timeout-ms",
                "6000",
                "--max-poll-interval-ms",
                "15000",
                "--group-patience-ms",
                "20000",
            ]
            .map(String::from),
        );
        args.extend(self.processor_args.iter().cloned());
        let log = self.dir.join(format!("{name}.log"));
        let mut member = Member::new(&self.binary, name, args, log);
        member.gid = self.proxy.as_ref().map(|_| crate::proxy::PROCESSOR_GID);
        member.start()?;
        self.processors.push(member);
        Ok(i)
    }

    /// Wait until API instance `i` answers `/readyz` with 200.
    pub fn wait_api_ready(&mut self, i: usize, timeout: Duration) -> Result<(), ClusterError> {
        let url = format!("{}/readyz", self.api_urls[i]);
        let deadline = Instant::now() + timeout;
        let client =
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .map_err(|e| ClusterError::Io("http client".into(), std::io::Error::other(e)))?;
        loop {
            if client.get(&url).send().is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline || !self.apis[i].is_running() {
                let member = &self.apis[i];
                return Err(ClusterError::NotReady(
                    member.name.clone(),
                    timeout,
                    member.log().to_owned(),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the running processors share every partition, each owning one at
    /// least (as far as there are partitions): the group has settled.
    pub fn wait_balanced(&mut self, timeout: Duration) -> Result<(), ClusterError> {
        let client =
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .map_err(|e| ClusterError::Io("http client".into(), std::io::Error::other(e)))?;
        let deadline = Instant::now() + timeout;
        loop {
            let running: Vec<usize> =
                (0..self.processors.len()).filter(|&i| self.processors[i].is_running()).collect();
            let owned: Vec<i64> = running
                .iter()
                .map(|&i| {
                    client
                        .get(&self.processor_metrics[i])
                        .send()
                        .and_then(|r| r.text())
                        .ok()
                        .and_then(|text| {
                            text.lines()
                                .find_map(|l| {
                                    l.strip_prefix("skuflow_processor_assigned_partitions ")
                                })
                                .and_then(|v| v.trim().parse::<f64>().ok())
                        })
                        .map_or(0, |v| v as i64)
                })
                .collect();
            let all = owned.iter().sum::<i64>() == i64::from(self.partitions);
            let spread = owned.iter().all(|&n| n > 0) || running.len() > self.partitions as usize;
            if all && spread {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.processors.first().map(|m| m.log().to_owned()).unwrap_or_default();
                return Err(ClusterError::NotReady(
                    format!("processor group (owned {owned:?})"),
                    timeout,
                    log,
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The metrics URLs of the processors running now.
    pub fn running_metrics(&mut self) -> Vec<String> {
        let urls = self.processor_metrics.clone();
        self.processors
            .iter_mut()
            .zip(urls)
            .filter_map(|(m, url)| m.is_running().then_some(url))
            .collect()
    }

    /// Partitions the running processors report halted as a gap (`/healthz`): the
    /// broker lost committed changelog records, so the processor stopped rather than
    /// skip commands.
    pub fn halted_gaps(&mut self) -> std::collections::BTreeSet<i64> {
        let Ok(client) =
            reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build()
        else {
            return Default::default();
        };
        let mut halted = std::collections::BTreeSet::new();
        for url in self.running_metrics() {
            let url = url.replace("/metrics", "/healthz");
            let Ok(text) = client.get(&url).send().and_then(|r| r.text()) else { continue };
            for line in text.lines() {
                let partition = line
                    .split_once(": halted: gap")
                    .and_then(|(head, _)| head.rsplit(' ').next()?.parse::<i64>().ok());
                halted.extend(partition);
            }
        }
        halted
    }

    /// Start again every member that exited on its own.
    pub fn supervise(&mut self) {
        for m in self.processors.iter_mut().chain(self.apis.iter_mut()) {
            m.supervise();
        }
    }

    /// The data directory of processor `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("processor-{i}"))
    }

    /// Every member's log, for the report.
    pub fn logs(&self) -> Vec<PathBuf> {
        self.processors.iter().chain(&self.apis).map(|m| m.log().to_owned()).collect()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // Processes first (a mount in use cannot go), then the disks.
        for m in self.processors.iter_mut().chain(self.apis.iter_mut()) {
            m.signal(Signal::SIGCONT);
            m.kill9();
        }
        for dir in &self.mounts {
            let _ = Command::new("umount").arg(dir).status();
        }
    }
}

/// A cluster starts on an empty directory: a broker that found an earlier run's data
/// would serve it, and the checker would compare this run's history with another's. An
/// earlier run that was killed can leave its data disks mounted under it: unmounted first.
fn clear_dir(dir: &Path) -> Result<(), ClusterError> {
    if !dir.exists() {
        return Ok(());
    }
    let canonical = dir.canonicalize().map_err(io(dir.display().to_string()))?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for point in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
        if Path::new(point).starts_with(&canonical) {
            let _ = Command::new("umount").arg(point).status();
        }
    }
    std::fs::remove_dir_all(dir).map_err(|e| {
        ClusterError::Io(
            format!(
                "the cluster directory {} holds an earlier run and cannot be cleared",
                dir.display()
            ),
            e,
        )
    })
}

/// `mount -t tmpfs -o size=<mb>m tmpfs <dir>` (root needed).
fn mount_tmpfs(dir: &Path, mb: u64) -> Result<(), ClusterError> {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
        .arg(dir)
        .output()
        .map_err(io("mount"))?;
    if out.status.success() {
        Ok(())
    } else {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(ClusterError::Io(
            format!("disk faults mount a tmpfs on {} (root needed)", dir.display()),
            std::io::Error::other(why),
        ))
    }
}

/// Fill the file system holding `dir` with a file of zeros until it is full; returns
/// the bytes written.
pub fn fill_disk(dir: &Path) -> std::io::Result<u64> {
    use std::io::Write;
    let mut file = File::create(dir.join(FILLER))?;
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => return Ok(written),
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => return Ok(written),
            Err(e) => return Err(e),
        }
    }
}

/// Free what [`fill_disk`] took.
pub fn free_disk(dir: &Path) -> std::io::Result<()> {
    std::fs::remove_file(dir.join(FILLER))
}

const FILLER: &str = "chaos-disk-filler";

fn hex_sha256(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Records not yet applied, over all partitions, as the processors at `urls` report them
/// (`skuflow_processor_lag{partition}`; the highest report per partition counts, since a
/// processor that lost a partition may still show its last value).
pub fn scrape_lag(client: &reqwest::blocking::Client, urls: &[String]) -> Option<i64> {
    let mut by_partition: std::collections::BTreeMap<String, i64> =
        std::collections::BTreeMap::new();
    let mut any = false;
    for url in urls {
        let Ok(text) = client.get(url).send().and_then(|r| r.text()) else { continue };
        any = true;
        for line in text.lines().filter(|l| l.starts_with("skuflow_processor_lag{")) {
            let Some((labels, value)) = line.rsplit_once(' ') else { continue };
            let value = value.trim().parse::<f64>().unwrap_or(0.0) as i64;
            let slot = by_partition.entry(labels.to_owned()).or_insert(value);
            *slot = (*slot).max(value);
        }
    }
    any.then(|| by_partition.values().sum())
}
