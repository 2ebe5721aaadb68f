//! `skuflow up`: the embedded default. It runs the dev broker on a fixed port with data
//! kept between runs (unless `--brokers` is given), creates skuflow's topics and runs a
//! processor with its metrics endpoint; the HTTP API joins it with issue 6.

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
    /// Use this Kafka cluster instead of starting the dev broker.
    #[arg(long, env = "SKUFLOW_BROKERS")]
    brokers: Option<String>,
    /// Port of the dev broker.
    #[arg(long, default_value_t = 9092)]
    broker_port: u16,
    /// Where the dev broker keeps its data between runs [default: $SKUFLOW_HOME/data/broker].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Partitions of the commands topic (and of every other skuflow topic).
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Prefix of skuflow's topic names.
    #[arg(long, default_value = "skuflow")]
    topic_prefix: String,
    #[command(flatten)]
    processor: crate::processor_cmd::ProcessorArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (mut broker, bootstrap) = match args.brokers {
        Some(addr) => {
            tracing::info!(bootstrap = %addr, "using the given brokers");
            (None, addr)
        }
        None => {
            let data_dir =
                args.data_dir.unwrap_or_else(|| broker::dev::install_root().join("data/broker"));
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

    let processor = args.processor;
    let registry = prometheus::Registry::new();
    let metrics = MetricsServer::start(processor.metrics_addr, registry.clone())?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let config = processor.config(&bootstrap, Topics { prefix: args.topic_prefix });
    let worker = crate::processor_cmd::spawn(config, registry, shutdown.clone())?;
    tracing::info!(
        "processor running; metrics at http://{}/metrics; the HTTP API is not part of `up` yet; Ctrl-C stops everything",
        metrics.addr()
    );
    crate::wait_for_shutdown("a component", || {
        broker.as_mut().is_none_or(DevBroker::is_running) && !worker.is_finished()
    })?;
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

fn create_topics(bootstrap: &str, topics: &Topics, partitions: i32) -> anyhow::Result<()> {
    for (topic, ensured) in
        ensure_topics(bootstrap, &processor::topic_specs(topics, partitions, 1))?
    {
        tracing::info!(%topic, partitions, ?ensured, "topic ready");
    }
    Ok(())
}
