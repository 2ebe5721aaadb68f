//! `skuflow audit`: read every topic of a deployment and check invariants I1-I7.
//! Exits 1 when any is violated.

use std::process::ExitCode;
use std::time::Duration;

use state::MachineConfig;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub cluster: crate::cluster_args::ClusterArgs,
    /// Upper bound for reading each topic, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let topics = args.cluster.topics();
    let format = args.cluster.registry.format(&topics)?;
    let log =
        chaos::Log::read(&args.cluster.brokers, &topics, Duration::from_secs(args.timeout_secs))?
            .in_format(format);
    let report = chaos::audit(&log, MachineConfig::default());
    print!("{report}");
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
