//! `skuflow up`: the embedded default. Today it runs the dev broker on a fixed port with
//! data kept between runs and creates skuflow's topics; the processor and the API join
//! it as they land (issues 5, 6).

use std::path::PathBuf;
use std::process::ExitCode;

use broker::admin::ensure_topics;
use broker::{DevBroker, DevBrokerConfig};
use topics::Topics;

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
    create_topics(&bootstrap, &Topics { prefix: args.topic_prefix }, args.partitions)?;
    tracing::info!("processor and HTTP API are not part of `up` yet; Ctrl-C stops the broker");
    crate::wait_for_shutdown(|| broker.as_mut().is_none_or(DevBroker::is_running))?;
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
