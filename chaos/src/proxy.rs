//! A TCP proxy between the processors and the broker that can be made slow, narrow,
//! silent or rude (a small toxiproxy): latency with jitter per chunk, a bandwidth cap,
//! a blackhole (bytes are held, connections stay open) and resets (every connection is
//! closed with a TCP RST, and new ones are refused the same way while it lasts).
//!
//! Kafka clients connect to the address the broker advertises, not to the one they were
//! given, so the proxy cannot simply be put in the bootstrap list. Instead the local
//! cluster runs its processors under a group id of their own ([`PROCESSOR_GID`]), and a
//! `nat OUTPUT` rule sends that group's connections to the broker's port to the proxy
//! (root and iptables needed; the harness says so when they are missing). The API and
//! the harness itself connect directly.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The group id processors run under when the cluster has a proxy.
pub const PROCESSOR_GID: u32 = 7357;

/// What the proxy does to the bytes passing through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Toxics {
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// 0: unlimited.
    pub bandwidth_kbps: u64,
    pub blackhole: bool,
    pub reset: bool,
}

struct Shared {
    toxics: RwLock<Toxics>,
    /// Bumped by a reset: connections of an older generation close with an RST.
    generation: AtomicU64,
    upstream: SocketAddr,
    seed: AtomicU64,
}

/// A running proxy and the NAT rule that routes the processors through it.
pub struct Proxy {
    pub listen: SocketAddr,
    shared: Arc<Shared>,
    rule: Vec<String>,
    _runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("listen", &self.listen)
            .field("toxics", &self.toxics())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("proxy: {0}")]
    Io(#[from] std::io::Error),
    #[error("network faults need root and iptables (apt-get install iptables): {0}")]
    Nat(String),
}

impl Proxy {
    /// Listen on a free port of 127.0.0.1, forward to `upstream`, and route the
    /// connections of group [`PROCESSOR_GID`] to `upstream` through it.
    pub fn start(upstream: SocketAddr) -> Result<Self, ProxyError> {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let listen = listener.local_addr()?;
        let shared = Arc::new(Shared {
            toxics: RwLock::new(Toxics::default()),
            generation: AtomicU64::new(0),
            upstream,
            seed: AtomicU64::new(0x9E37_79B9),
        });
        runtime.spawn(accept(listener, shared.clone()));
        let rule: Vec<String> = [
            "-t",
            "nat",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            &upstream.ip().to_string(),
            "--dport",
            &upstream.port().to_string(),
            "-m",
            "owner",
            "--gid-owner",
            &PROCESSOR_GID.to_string(),
            "-j",
            "DNAT",
            "--to-destination",
            &listen.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        iptables("-A", &rule)?;
        Ok(Self { listen, shared, rule, _runtime: runtime })
    }

    pub fn set(&self, toxics: Toxics) {
        *self.shared.toxics.write().unwrap_or_else(std::sync::PoisonError::into_inner) = toxics;
        if toxics.reset {
            self.shared.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn toxics(&self) -> Toxics {
        *self.shared.toxics.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = iptables("-D", &self.rule);
    }
}

/// `iptables -t nat <action> OUTPUT <rest>`.
fn iptables(action: &str, rule: &[String]) -> Result<(), ProxyError> {
    let mut args: Vec<&str> = rule.iter().map(String::as_str).collect();
    // rule = ["-t", "nat", "OUTPUT", ...]: the action goes before the chain.
    args.insert(2, action);
    let out = Command::new("iptables")
        .args(&args)
        .output()
        .map_err(|e| ProxyError::Nat(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ProxyError::Nat(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let toxics = *shared.toxics.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if toxics.reset {
                let _ = rst_on_close(&client);
                return;
            }
            let Ok(upstream) = TcpStream::connect(shared.upstream).await else {
                let _ = rst_on_close(&client);
                return;
            };
            let _ = client.set_nodelay(true);
            // Closing sends an RST, not a FIN: a reset is seen as "connection reset" (an
            // ordinary close is seen as a disconnect either way).
            let _ = rst_on_close(&client);
            let _ = upstream.set_nodelay(true);
            let generation = shared.generation.load(Ordering::SeqCst);
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            let a = tokio::spawn(pump(cr, uw, shared.clone(), generation));
            let b = tokio::spawn(pump(ur, cw, shared.clone(), generation));
            let _ = tokio::join!(a, b);
        });
    }
}

/// Copy `from` to `to` with the toxics applied, until either side closes or a reset.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Shared>,
    generation: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let reset = || shared.generation.load(Ordering::SeqCst) != generation;
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                if reset() { break } else { continue }
            }
        };
        loop {
            let t = *shared.toxics.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if reset() {
                break;
            }
            if !t.blackhole {
                let mut delay = t.latency_ms;
                if t.jitter_ms > 0 {
                    let r = shared.seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
                    delay =
                        delay.saturating_add(r % (2 * t.jitter_ms + 1)).saturating_sub(t.jitter_ms);
                }
                // A bandwidth cap: the time this chunk takes at that rate.
                delay += (n as u64 * 8).checked_div(t.bandwidth_kbps).unwrap_or(0);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if reset() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

/// SO_LINGER 0: closing sends an RST at once (the linger time is zero, so the close
/// never blocks, which is what tokio's deprecation warns about).
#[allow(deprecated)]
fn rst_on_close(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_linger(Some(Duration::ZERO))
}
