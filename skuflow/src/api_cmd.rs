//! `skuflow api`: the HTTP front door, configured by flags or `SKUFLOW_*` variables.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use api::{Api, ApiConfig, JwtConfig};
use topics::Topics;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub cluster: crate::cluster_args::ClusterArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// How the API runs, whoever starts it (`skuflow api`, `skuflow up`).
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Address to listen on.
    #[arg(long, env = "SKUFLOW_API_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// An API key as `tenant:role:sha256hex` (role client or admin); repeatable, or
    /// comma-separated in the variable. `skuflow api-key` makes one.
    #[arg(long = "api-key", env = "SKUFLOW_API_KEYS", value_delimiter = ',', value_parser = api::parse_key)]
    pub api_keys: Vec<api::ApiKey>,
    /// HS256 secret for JWT bearer tokens; without it, JWTs are refused.
    #[arg(long, env = "SKUFLOW_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// A JWKS file (RFC 7517) of the identity provider's public keys: JWTs signed RS256 or
    /// ES256 by them are accepted (the production option; instead of --jwt-secret).
    #[arg(long, env = "SKUFLOW_JWKS_FILE", conflicts_with_all = ["jwt_secret", "jwks_url"])]
    pub jwks_file: Option<std::path::PathBuf>,
    /// The identity provider's JWKS URL: fetched at start (the API does not start without
    /// it), again every --jwks-refresh-s, and when a token names an unknown kid (at most
    /// every 5 s). Instead of --jwt-secret.
    #[arg(long, env = "SKUFLOW_JWKS_URL", conflicts_with = "jwt_secret")]
    pub jwks_url: Option<String>,
    /// Seconds between fetches of --jwks-url; a failed fetch keeps the previous keys.
    #[arg(long, env = "SKUFLOW_JWKS_REFRESH_S", default_value_t = 300)]
    pub jwks_refresh_s: u64,
    /// Required `aud` of JWTs.
    #[arg(long, env = "SKUFLOW_JWT_AUDIENCE", default_value = "skuflow")]
    pub jwt_audience: String,
    /// Required `iss` of JWTs (not checked when not given).
    #[arg(long, env = "SKUFLOW_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Default wait for a command's reply, in milliseconds.
    #[arg(long, env = "SKUFLOW_WAIT_DEFAULT_MS", default_value_t = crate::processor_cmd::ms(defaults().wait_default))]
    pub wait_default_ms: u64,
    /// Largest `?wait=`, in milliseconds.
    #[arg(long, env = "SKUFLOW_WAIT_MAX_MS", default_value_t = crate::processor_cmd::ms(defaults().wait_max))]
    pub wait_max_ms: u64,
    /// Requests per second per credential.
    #[arg(long, env = "SKUFLOW_RATE", default_value_t = defaults().rate_per_sec)]
    pub rate: f64,
    /// Burst per credential.
    #[arg(long, env = "SKUFLOW_BURST", default_value_t = defaults().rate_burst)]
    pub burst: f64,
    /// Commands per credential waiting for replies at once.
    #[arg(long, env = "SKUFLOW_MAX_IN_FLIGHT", default_value_t = defaults().max_in_flight)]
    pub max_in_flight: usize,
    /// Replies kept in memory for polls by key (older ones need the poll URL's `at`).
    #[arg(long, env = "SKUFLOW_REPLY_CACHE", default_value_t = defaults().reply_cache)]
    pub reply_cache: usize,
    /// HTTP worker threads.
    #[arg(long, env = "SKUFLOW_API_WORKERS", default_value_t = defaults().workers)]
    pub workers: usize,
    /// Milliseconds an authenticated request's body may take to arrive whole (408 after).
    #[arg(long, env = "SKUFLOW_BODY_TIMEOUT_MS", default_value_t = crate::processor_cmd::ms(defaults().body_timeout))]
    pub body_timeout_ms: u64,
    /// Searches for old replies queued at once (polls older than the reply cache); beyond
    /// it such a poll gets 503 overloaded.
    #[arg(long, env = "SKUFLOW_LOOKUP_QUEUE", default_value_t = defaults().lookup_queue)]
    pub lookup_queue: usize,
    /// Open connections per HTTP worker; beyond it, new ones wait to be accepted.
    #[arg(long, env = "SKUFLOW_MAX_CONNECTIONS", default_value_t = defaults().max_connections)]
    pub max_connections: usize,
    /// Open connections per client IP address (0: no limit); a connection beyond it is
    /// answered 429 too-many-connections and closed. Behind a proxy that hides client
    /// addresses, raise it or set 0.
    #[arg(long, env = "SKUFLOW_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = defaults().max_connections_per_address)]
    pub max_connections_per_address: usize,
    /// Finished (released, purchased, expired) reservations kept readable by this
    /// instance's reservations view; the oldest are forgotten first.
    #[arg(long, env = "SKUFLOW_KEEP_FINISHED", default_value_t = defaults().keep_finished)]
    pub keep_finished: usize,
}

/// The API's defaults, written once in its config.
fn defaults() -> ApiConfig {
    ApiConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), "")
}

impl ApiArgs {
    /// The API's configuration; a JWT secret shorter than 32 bytes (or empty) is refused.
    pub fn config(&self, brokers: &str, topics: Topics) -> anyhow::Result<ApiConfig> {
        let mut c = ApiConfig::new(self.bind, brokers);
        c.topics = topics;
        c.keys = self.api_keys.clone();
        let audience = self.jwt_audience.clone();
        c.jwt = match (&self.jwt_secret, &self.jwks_file, &self.jwks_url) {
            (None, None, Some(url)) => Some(
                JwtConfig::jwks_url(url, Duration::from_secs(self.jwks_refresh_s.max(1)), audience)
                    .map_err(|e| anyhow::anyhow!("--jwks-url: {e}"))?,
            ),
            (Some(s), _, _) => Some(
                JwtConfig::new(s.as_bytes(), audience)
                    .map_err(|e| anyhow::anyhow!("--jwt-secret / SKUFLOW_JWT_SECRET: {e}"))?,
            ),
            (None, Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("--jwks-file {}: {e}", path.display()))?;
                Some(
                    JwtConfig::jwks(&text, audience)
                        .map_err(|e| anyhow::anyhow!("--jwks-file {}: {e}", path.display()))?,
                )
            }
            (None, None, None) => None,
        }
        .map(|j| j.with_issuer(self.jwt_issuer.clone()));
        c.wait_default = Duration::from_millis(self.wait_default_ms);
        c.wait_max = Duration::from_millis(self.wait_max_ms);
        c.rate_per_sec = self.rate;
        c.rate_burst = self.burst;
        c.max_in_flight = self.max_in_flight;
        c.workers = self.workers.max(1);
        c.reply_cache = self.reply_cache.max(1);
        c.body_timeout = Duration::from_millis(self.body_timeout_ms.max(1));
        c.max_connections = self.max_connections.max(1);
        c.max_connections_per_address = self.max_connections_per_address;
        c.lookup_queue = self.lookup_queue.max(1);
        c.keep_finished = self.keep_finished;
        c.start_traces = crate::telemetry::endpoint().is_some();
        Ok(c)
    }
}

/// A running API server on its own thread.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn start(config: ApiConfig, registry: prometheus::Registry) -> anyhow::Result<Self> {
        if config.keys.is_empty() && config.jwt.is_none() {
            tracing::warn!("no API keys and no JWT secret: every request will be refused (401)");
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("api".into()).spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let started = Api::new(config, registry).and_then(Api::serve);
                match started {
                    Ok((server, addr)) => {
                        let _ = tx.send(Ok((server.handle(), addr)));
                        server.await
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        Ok(())
                    }
                }
            })
        })?;
        let (handle, addr) = rx.recv()??;
        Ok(Self { addr, handle, thread })
    }

    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }

    pub fn stop(self) {
        actix_web::rt::System::new().block_on(self.handle.stop(true));
        let _ = self.thread.join();
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let registry = prometheus::Registry::new();
    let mut config = args.api.config(&args.cluster.brokers, args.cluster.topics())?;
    config.format = args.cluster.registry.format(&config.topics)?;
    if config.keys.is_empty() && config.jwt.is_none() {
        anyhow::bail!(
            "no credentials configured: give --api-key (skuflow api-key makes one) or --jwt-secret"
        );
    }
    let api = Running::start(config, registry)?;
    tracing::info!(addr = %api.addr, "api listening on http://{}", api.addr);
    crate::wait_for_shutdown("the api", || api.is_running())?;
    api.stop();
    Ok(ExitCode::SUCCESS)
}

/// `skuflow api-key`: make a random API key and print it with its config line.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// Tenant the key acts for.
    #[arg(long)]
    pub tenant: String,
    /// client (a tenant's checkout) or admin (the deployment's catalog operator: stock of
    /// every SKU, for every tenant).
    #[arg(long, default_value = "client", value_parser = ["client", "admin"])]
    pub role: String,
}

pub fn make_key(args: KeyArgs) -> anyhow::Result<ExitCode> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))?;
    let key = format!("sk_{}", hex::encode(bytes));
    let line = format!("{}:{}:{}", args.tenant, args.role, hex::encode(api::hash_key(&key)));
    api::parse_key(&line).map_err(anyhow::Error::msg)?;
    println!("key (give it to the client, it is not stored): {key}");
    println!("config (SKUFLOW_API_KEYS or --api-key):        {line}");
    Ok(ExitCode::SUCCESS)
}
