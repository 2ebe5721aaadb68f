//! `skuflow up`: the embedded default. Today it runs the dev broker; the processor and
//! the API join it as they land (issues 5 and 6).

use std::process::ExitCode;

use broker::DevBroker;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Use this Kafka cluster instead of starting the dev broker.
    #[arg(long, env = "SKUFLOW_BROKERS")]
    brokers: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut broker = match args.brokers {
        Some(addr) => {
            tracing::info!(bootstrap = %addr, "using the given brokers");
            None
        }
        None => Some(DevBroker::start()?),
    };
    if let Some(b) = &broker {
        tracing::info!(bootstrap = %b.bootstrap(), "dev broker ready");
    }
    tracing::info!("processor and HTTP API are not part of `up` yet; Ctrl-C stops the broker");
    crate::wait_for_shutdown(|| broker.as_mut().is_none_or(DevBroker::is_running))?;
    if let Some(b) = broker.as_mut() {
        b.stop()?;
    }
    Ok(ExitCode::SUCCESS)
}
