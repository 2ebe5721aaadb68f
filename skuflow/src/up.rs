//! `skuflow up`: the embedded default. It runs the dev broker on a fixed port with data
//! kept between runs (unless `--brokers` is given), creates skuflow's topics, and runs a
//! processor (with its metrics endpoint) and the HTTP API; Ctrl-C stops them all.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use broker::admin::ensure_topics;
use broker::{DevBroker, DevBrokerConfig};
use topics::Topics;

use crate::metrics_server::MetricsServer;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: crate::cluster_args::OptionalBrokers,
    /// Port of the dev broker.
    #[arg(long, default_value_t = 9092)]
    broker_port: u16,
    /// Where the dev broker keeps its data between runs [default: $SKUFLOW_HOME/data/broker].
    #[arg(long)]
    broker_data_dir: Option<PathBuf>,
    /// Partitions of the commands topic (and of every other skuflow topic).
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Prefix of skuflow's topic names.
    #[arg(long, env = "SKUFLOW_TOPIC_PREFIX", default_value = "skuflow")]
    topic_prefix: String,
    /// Configure the published development key `dev-admin-key` (tenant demo, admin) even
    /// with --brokers. Without credentials it is configured on its own only with the
    /// embedded dev broker; never on a bind address other than loopback.
    #[arg(long, env = "SKUFLOW_DEV_KEY")]
    dev_key: bool,
    #[command(flatten)]
    registry: crate::cluster_args::RegistryArgs,
    #[command(flatten)]
    processor: crate::processor_cmd::ProcessorArgs,
    #[command(flatten)]
    api: crate::api_cmd::ApiArgs,
}

/// The key `up` configures when none is given: development only, and said so loudly.
const DEV_KEY: &str = "dev-admin-key";
const DEV_TENANT: &str = "demo";

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let own_broker = args.cluster.brokers.is_none();
    let (mut broker, bootstrap) = match args.cluster.brokers {
        Some(addr) => {
            tracing::info!(bootstrap = %addr, "using the given brokers");
            (None, addr)
        }
        None => {
            let data_dir = args
                .broker_data_dir
                .unwrap_or_else(|| broker::dev::install_root().join("data/broker"));
            let config = DevBrokerConfig {
                port: Some(args.broker_port),
                data_dir: Some(data_dir),
                ..Default::default()
            };
            let b = DevBroker::start_with(config)?;
            tracing::info!(bootstrap = %b.bootstrap(), data_dir = %b.data_dir().display(), "dev broker ready");
            let addr = b.bootstrap();
            (Some(b), addr)
        }
    };
    create_topics(&bootstrap, &Topics { prefix: args.topic_prefix.clone() }, args.partitions)?;

    let topics = Topics { prefix: args.topic_prefix };
    let registry = prometheus::Registry::new();
    let health = processor::Health::new();
    let metrics =
        MetricsServer::start(args.processor.metrics_addr, registry.clone(), health.clone())?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let format = args.registry.format(&topics)?;
    let mut config = args.processor.config(&bootstrap, topics.clone());
    config.format = format.clone();
    let worker = crate::processor_cmd::spawn(config, registry, health, shutdown.clone())?;

    let mut api_config = args.api.config(&bootstrap, topics)?;
    api_config.format = format;
    let dev_key = dev_key_wanted(&api_config, args.dev_key, own_broker)?;
    if dev_key {
        let line = format!("{DEV_TENANT}:admin:{}", hex::encode(api::hash_key(DEV_KEY)));
        api_config.keys.push(api::parse_key(&line).map_err(anyhow::Error::msg)?);
    }
    let api = crate::api_cmd::Running::start(api_config, prometheus::Registry::new())?;
    tracing::info!(
        "skuflow is up: API http://{} (OpenAPI at /openapi.json), processor metrics http://{}/metrics; Ctrl-C stops everything",
        api.addr,
        metrics.addr()
    );
    if dev_key {
        tracing::warn!(
            "no API key configured: using the development key {DEV_KEY:?} (tenant {DEV_TENANT:?}, admin); never do this in production"
        );
        println!(
            "try:\n  curl -s -X POST http://{}/v1/admin/stock/sku-1/main/restock -H 'X-Api-Key: {DEV_KEY}' -H 'Idempotency-Key: stock-1' -H 'Content-Type: application/json' -d '{{\"quantity\": 10}}'\n  curl -s -X POST http://{}/v1/reservations -H 'X-Api-Key: {DEV_KEY}' -H 'Idempotency-Key: hold-1' -H 'Content-Type: application/json' -d '{{\"sku\": \"sku-1\", \"quantity\": 2}}'\n  curl -s http://{}/v1/availability/sku-1 -H 'X-Api-Key: {DEV_KEY}'",
            api.addr, api.addr, api.addr
        );
    }
    crate::wait_for_shutdown("a component", || {
        broker.as_mut().is_none_or(DevBroker::is_running)
            && !worker.is_finished()
            && api.is_running()
    })?;
    api.stop();
    shutdown.store(true, Ordering::Relaxed);
    match worker.join() {
        Ok(Ok(())) => tracing::info!("processor stopped"),
        Ok(Err(e)) => tracing::error!("processor failed: {e}"),
        Err(_) => tracing::error!("processor panicked"),
    }
    metrics.stop();
    if let Some(b) = broker.as_mut() {
        b.stop()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether to configure the published development key: asked for, or no credentials at
/// all with the embedded broker; and never on an address reachable from elsewhere.
fn dev_key_wanted(config: &api::ApiConfig, asked: bool, own_broker: bool) -> anyhow::Result<bool> {
    let no_credentials = config.keys.is_empty() && config.jwt.is_none();
    let wanted = asked || (no_credentials && own_broker);
    if wanted && !config.bind.ip().is_loopback() {
        anyhow::bail!(
            "the development key is published: it is never served on {} (not loopback); give --api-key or --jwt-secret",
            config.bind
        );
    }
    if !wanted && no_credentials {
        anyhow::bail!(
            "no credentials configured for a cluster given with --brokers: give --api-key (skuflow api-key makes one) or --jwt-secret, or --dev-key for a local trial"
        );
    }
    Ok(wanted)
}

fn create_topics(bootstrap: &str, topics: &Topics, partitions: i32) -> anyhow::Result<()> {
    for (topic, ensured) in
        ensure_topics(bootstrap, &processor::topic_specs(topics, partitions, 1))?
    {
        tracing::info!(%topic, partitions, ?ensured, "topic ready");
    }
    Ok(())
}
