//! `skuflow up`: the embedded default. Today it runs the dev broker on a fixed port with
//! data kept between runs; the processor and the API join it as they land (issues 5, 6).

use std::path::PathBuf;
use std::process::ExitCode;

use broker::{DevBroker, DevBrokerConfig};

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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut broker = match args.brokers {
        Some(addr) => {
            tracing::info!(bootstrap = %addr, "using the given brokers");
            None
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
            Some(b)
        }
    };
    tracing::info!("processor and HTTP API are not part of `up` yet; Ctrl-C stops the broker");
    crate::wait_for_shutdown(|| broker.as_mut().is_none_or(DevBroker::is_running))?;
    if let Some(b) = broker.as_mut() {
        b.stop()?;
    }
    Ok(ExitCode::SUCCESS)
}
