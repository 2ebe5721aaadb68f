//! `skuflow broker`: the dev broker by hand, with the same start-up the tests use.

use std::path::PathBuf;
use std::process::ExitCode;

use broker::{DevBroker, DevBrokerConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port to listen on (loopback).
    #[arg(long, default_value_t = 9092)]
    port: u16,
    /// Where the broker keeps its data; default: a fresh temporary directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config =
        DevBrokerConfig { port: Some(args.port), data_dir: args.data_dir, ..Default::default() };
    let mut broker = DevBroker::start_with(config)?;
    tracing::info!(bootstrap = %broker.bootstrap(), data_dir = %broker.data_dir().display(), "dev broker ready; Ctrl-C stops it");
    if !crate::wait_for_shutdown("the dev broker", || broker.is_running())? {
        anyhow::bail!("the dev broker exited");
    }
    broker.stop()?;
    tracing::info!("dev broker stopped");
    Ok(ExitCode::SUCCESS)
}
