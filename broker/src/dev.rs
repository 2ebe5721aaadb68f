//! The local development broker as a child process.
//!
//! [`DevBroker::start`] picks a free loopback port and a temporary data directory,
//! starts the broker binary, waits until it answers a metadata request and kills it
//! when dropped. The binary is the one `scripts/setup` installs (see BROKERS.md for why
//! noida-db); `SKUFLOW_BROKER_BIN` points at another build of it.
//!
//! By default clients reach it through [`crate::long_poll`], which holds empty fetches
//! as a Kafka broker does (noida answers them at once, and its clients spin); the broker
//! itself then listens on a second free port that only the front uses.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::kafka;
use crate::long_poll::{HoldStats, LongPoll};

/// Version of the dev broker `scripts/setup` pins; the install path carries it.
pub const DEV_BROKER_VERSION: &str = "0.2.3";

#[derive(Debug, thiserror::Error)]
pub enum DevBrokerError {
    #[error("dev broker binary not found at {0} (run scripts/setup, or set SKUFLOW_BROKER_BIN)")]
    NotInstalled(PathBuf),
    #[error("could not start the dev broker: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("dev broker exited during start-up ({status}); last log lines:\n{log}")]
    Exited { status: String, log: String },
    #[error(
        "dev broker on {addr} did not answer a metadata request within {waited:?}; last log lines:\n{log}"
    )]
    NotReady { addr: String, waited: Duration, log: String },
    #[error(
        "the dev broker's port {port} was taken by another process while it started; last log lines:\n{log}"
    )]
    PortTaken { port: u16, log: String },
    #[error("dev broker io: {0}")]
    Io(#[from] std::io::Error),
    #[error("could not signal the dev broker: {0}")]
    Signal(#[from] nix::Error),
}

/// Where and how to run the dev broker.
#[derive(Debug, Clone)]
pub struct DevBrokerConfig {
    pub binary: PathBuf,
    pub host: String,
    /// `None` picks a free port.
    pub port: Option<u16>,
    /// The broker process's own port behind the front; `None` picks a free one. (Only
    /// with the front; without it the broker listens on `port`.)
    pub broker_port: Option<u16>,
    /// `None` uses a temporary directory removed with the broker.
    pub data_dir: Option<PathBuf>,
    pub ready_timeout: Duration,
    /// Put [`crate::long_poll`] in front (the default; `SKUFLOW_BROKER_HOLD_FETCHES=0`
    /// turns it off): empty fetches wait for data as on Kafka. Off, clients talk to the
    /// broker directly and spin on its empty answers.
    pub hold_fetches: bool,
}

impl Default for DevBrokerConfig {
    fn default() -> Self {
        Self {
            binary: default_binary(),
            host: "127.0.0.1".to_owned(),
            port: None,
            broker_port: None,
            data_dir: None,
            ready_timeout: Duration::from_secs(30),
            hold_fetches: std::env::var("SKUFLOW_BROKER_HOLD_FETCHES").map_or(true, |v| v != "0"),
        }
    }
}

/// `SKUFLOW_BROKER_BIN`, else the path `scripts/setup` installs to.
pub fn default_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SKUFLOW_BROKER_BIN") {
        return PathBuf::from(bin);
    }
    install_root().join("bin").join("noida-db")
}

/// Tools live outside the clone so that they survive between runs on one machine.
pub fn install_root() -> PathBuf {
    // An empty SKUFLOW_HOME is unset, not the current directory.
    if let Some(dir) = std::env::var_os("SKUFLOW_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".local/share/skuflow")
}

enum DataDir {
    Temp(TempDir),
    Fixed(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Temp(t) => t.path(),
            DataDir::Fixed(p) => p,
        }
    }
}

/// A running dev broker; killed (SIGKILL) when dropped.
pub struct DevBroker {
    config: DevBrokerConfig,
    /// Where clients connect: the front's port, or the broker's without one.
    port: u16,
    /// Where the broker process listens.
    broker_port: u16,
    front: Option<LongPoll>,
    data_dir: DataDir,
    child: Option<Child>,
}

impl std::fmt::Debug for DevBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevBroker")
            .field("bootstrap", &self.bootstrap())
            .field("data_dir", &self.data_dir())
            .field("pid", &self.pid())
            .finish()
    }
}

impl DevBroker {
    /// The default binary on a free port with a temporary data directory.
    pub fn start() -> Result<Self, DevBrokerError> {
        Self::start_with(DevBrokerConfig::default())
    }

    pub fn start_with(config: DevBrokerConfig) -> Result<Self, DevBrokerError> {
        if !config.binary.exists() {
            return Err(DevBrokerError::NotInstalled(config.binary.clone()));
        }
        let public = TcpListener::bind((config.host.as_str(), config.port.unwrap_or(0)))?;
        let port = public.local_addr()?.port();
        let data_dir = match &config.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                DataDir::Fixed(dir.clone())
            }
            None => DataDir::Temp(tempfile::Builder::new().prefix("skuflow-broker-").tempdir()?),
        };
        let (broker_port, front) = if config.hold_fetches {
            let broker_port = match config.broker_port {
                Some(port) => port,
                None => free_port(&config.host)?,
            };
            let upstream = socket_addr(&config.host, broker_port)?;
            (broker_port, Some(LongPoll::start(public, upstream)?))
        } else {
            drop(public);
            (port, None)
        };
        let mut broker = Self { config, port, broker_port, front, data_dir, child: None };
        broker.spawn()?;
        Ok(broker)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.config.host, self.port)
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// What the front has done with empty fetches; `None` without one.
    pub fn fetch_holds(&self) -> Option<HoldStats> {
        self.front.as_ref().map(LongPoll::stats)
    }

    /// Where the broker process itself listens (the front's port without a front).
    pub fn broker_port(&self) -> u16 {
        self.broker_port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir().join("broker.log")
    }

    /// Start the broker process and wait until it is ready. Behind the front, a private
    /// port that another process took between being picked and being bound (a parallel
    /// test's broker, say) is replaced by a new one, a few times: clients only ever see
    /// the front's port.
    fn spawn(&mut self) -> Result<(), DevBrokerError> {
        let mut attempts = 1;
        loop {
            match self.spawn_once() {
                Err(DevBrokerError::PortTaken { port, .. })
                    if attempts < PORT_ATTEMPTS && self.front.is_some() =>
                {
                    attempts += 1;
                    self.broker_port = free_port(&self.config.host)?;
                    if let Some(front) = &self.front {
                        front.set_upstream(socket_addr(&self.config.host, self.broker_port)?);
                    }
                    tracing::debug!(
                        taken = port,
                        now = self.broker_port,
                        "dev broker moves to another private port"
                    );
                }
                other => return other,
            }
        }
    }

    fn spawn_once(&mut self) -> Result<(), DevBrokerError> {
        let log = File::options().create(true).append(true).open(self.log_path())?;
        let child = Command::new(&self.config.binary)
            .arg("start")
            .args(["--only", "kafka"])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--host", &self.config.host])
            .args(["--kafka-port", &self.broker_port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(DevBrokerError::Spawn)?;
        tracing::debug!(pid = child.id(), bootstrap = %self.bootstrap(), "dev broker spawned");
        self.child = Some(child);
        self.wait_ready()
    }

    /// Ready: this very process listens on its port and a metadata request through the
    /// public address is answered. (Answers alone could come from another broker that
    /// holds the port this one failed to bind.)
    fn wait_ready(&mut self) -> Result<(), DevBrokerError> {
        let started = Instant::now();
        let addr = self.bootstrap();
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(DevBrokerError::NotReady {
                    addr,
                    waited: started.elapsed(),
                    log: self.log_tail(),
                });
            };
            if let Some(status) = child.try_wait()? {
                self.child = None;
                let log = self.log_tail();
                // Taken: a listener holds it now, or the broker said so (the taker may
                // have been a connection's own end, or a listener gone since).
                if listening_inodes(self.broker_port).is_some_and(|l| !l.is_empty())
                    || log.contains("already in use")
                {
                    return Err(DevBrokerError::PortTaken { port: self.broker_port, log });
                }
                return Err(DevBrokerError::Exited { status: status.to_string(), log });
            }
            if !listens(child.id(), self.broker_port) {
                std::thread::sleep(Duration::from_millis(20));
            } else if kafka::metadata_answers(&addr, Duration::from_secs(1)) {
                // (Each attempt blocks for up to a second inside librdkafka while it
                // connects.)
                return Ok(());
            }
            if started.elapsed() > self.config.ready_timeout {
                return Err(DevBrokerError::NotReady {
                    addr,
                    waited: started.elapsed(),
                    log: self.log_tail(),
                });
            }
        }
    }

    /// The last lines the broker wrote, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `kill -9`: the broker gets no chance to flush anything.
    pub fn kill9(&mut self) -> Result<(), DevBrokerError> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Start again on the same port and data directory (after [`Self::kill9`] or [`Self::stop`]).
    pub fn restart(&mut self) -> Result<(), DevBrokerError> {
        self.kill9()?;
        self.spawn()
    }

    /// Graceful stop: SIGTERM, then wait for the process to exit.
    pub fn stop(&mut self) -> Result<(), DevBrokerError> {
        if let Some(mut child) = self.child.take() {
            signal_live(&mut child, Signal::SIGTERM)?;
            child.wait()?;
        }
        Ok(())
    }

    /// Whether the broker process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Send `signal` to `child` only while it has not been reaped; returns whether it was
/// sent. Once a `try_wait` (an `is_running` check, a supervisor's) has collected the
/// child's exit, its pid is free and the kernel hands it to the next process or thread,
/// maybe one of this very process's own threads: `kill` on it would signal a stranger
/// or this process (pids wrap at `pid_max`, 32,768 on small machines, within minutes of
/// a test run). A child that exits after the check stays a zombie, its pid taken, until
/// it is waited for, so the check cannot race.
pub fn signal_live(child: &mut Child, signal: Signal) -> std::io::Result<bool> {
    if child.try_wait()?.is_some() {
        return Ok(false);
    }
    kill(Pid::from_raw(child.id() as i32), signal)?;
    Ok(true)
}

/// How many private ports start-up tries behind the front (see [`DevBroker::spawn`]).
const PORT_ATTEMPTS: u32 = 5;

/// The inodes of the sockets listening on TCP `port` (any address), from the kernel's
/// tables of this network namespace; `None` where the tables cannot be read.
fn listening_inodes(port: u16) -> Option<Vec<u64>> {
    let mut inodes = Vec::new();
    let mut read = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        read = true;
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        for fields in text.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()) {
            let local_port = fields.get(1).and_then(|a| a.rsplit(':').next());
            if fields.get(3) == Some(&"0A")
                && local_port.and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
                && let Some(inode) = fields.get(9).and_then(|i| i.parse().ok())
            {
                inodes.push(inode);
            }
        }
    }
    read.then_some(inodes)
}

/// Whether process `pid`, or a child of it (`SKUFLOW_BROKER_BIN` may be a wrapper),
/// holds a socket listening on TCP `port`. Where the kernel's tables cannot be read
/// (no /proc), true: readiness then rests on the metadata answer alone.
fn listens(pid: u32, port: u16) -> bool {
    let Some(inodes) = listening_inodes(port) else { return true };
    if inodes.is_empty() {
        return false;
    }
    let children = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>());
    std::iter::once(pid).chain(children).any(|pid| {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
        fds.filter_map(Result::ok).filter_map(|fd| std::fs::read_link(fd.path()).ok()).any(|link| {
            let text = link.to_string_lossy();
            let inode = text.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']'));
            inode.and_then(|i| i.parse().ok()).is_some_and(|i: u64| inodes.contains(&i))
        })
    })
}

/// The address the front relays to: the broker's `port` on `host`.
fn socket_addr(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("no address for {host}")))
}

/// A port the OS just handed out on `host`; free again once the listener is dropped.
pub fn free_port(host: &str) -> std::io::Result<u16> {
    Ok(TcpListener::bind((host, 0))?.local_addr()?.port())
}

/// What a test expects the dev broker to have saved: a topic up to these high
/// watermarks (one per partition) and these committed offsets `(group, partition, offset)`
/// of that topic.
#[derive(Debug, Clone, Copy)]
pub struct Saved<'a> {
    pub topic: &'a str,
    pub high_watermarks: &'a [i64],
    pub offsets: &'a [(&'a str, i32, i64)],
}

impl DevBroker {
    /// Wait until the broker's on-disk snapshot holds everything in `saved`, or `timeout`
    /// passes; true when it does.
    ///
    /// noida-db acknowledges writes before it saves them, and saves topic data, group
    /// offsets and transaction markers as they come (BROKERS.md), so a kill -9 can lose
    /// any of them; tests that mean to exercise recovery of *saved* data wait here first.
    /// The probe reads the broker's own snapshot file, so it is an observation, not a sleep.
    pub fn wait_persisted(&self, saved: Saved<'_>, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if self.snapshot().is_some_and(|doc| snapshot_holds(&doc, saved)) {
                return true;
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
        false
    }

    fn snapshot(&self) -> Option<serde_json::Value> {
        let text = std::fs::read(self.data_dir().join("kafka.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// `{"topics": [[name, {"partitions": [[id, {"high_watermark": n}]]}]],
///   "committed_offsets": [[[group, topic, partition], offset]]}` (noida-db 0.2.3).
fn snapshot_holds(doc: &serde_json::Value, saved: Saved<'_>) -> bool {
    let watermarks = || -> Option<Vec<i64>> {
        let topics = doc.get("topics")?.as_array()?;
        let entry =
            topics.iter().find(|t| t.get(0).and_then(|n| n.as_str()) == Some(saved.topic))?;
        let mut partitions: Vec<(i64, i64)> = entry
            .get(1)?
            .get("partitions")?
            .as_array()?
            .iter()
            .filter_map(|p| Some((p.get(0)?.as_i64()?, p.get(1)?.get("high_watermark")?.as_i64()?)))
            .collect();
        partitions.sort_unstable();
        Some(partitions.into_iter().map(|(_, hw)| hw).collect())
    };
    let data_saved = watermarks().is_some_and(|hws| {
        hws.len() == saved.high_watermarks.len()
            && hws.iter().zip(saved.high_watermarks).all(|(s, w)| s >= w)
    });
    let committed = doc.get("committed_offsets").and_then(|c| c.as_array());
    let offset_saved = |(group, partition, offset): &(&str, i32, i64)| {
        committed.is_some_and(|all| {
            all.iter().any(|e| {
                e.get(0) == Some(&serde_json::json!([group, saved.topic, partition]))
                    && e.get(1).and_then(|o| o.as_i64()) == Some(*offset)
            })
        })
    };
    data_saved && saved.offsets.iter().all(offset_saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_found_and_attributed_to_its_process() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let inodes = listening_inodes(port).expect("this machine has /proc/net/tcp");
        assert_eq!(inodes.len(), 1, "{inodes:?}");
        assert!(listens(std::process::id(), port));
        let mut other = Command::new("sleep").arg("30").spawn().unwrap();
        assert!(!listens(other.id(), port), "a process without the socket");
        other.kill().unwrap();
        other.wait().unwrap();
        drop(listener);
        assert_eq!(listening_inodes(port), Some(vec![]));
        assert!(!listens(std::process::id(), port));
    }
}
