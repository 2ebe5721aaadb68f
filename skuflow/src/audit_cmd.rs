//! `skuflow audit`: read every topic of a deployment and check invariants I1-I7.
//! Exits 1 when any is violated.

use std::process::ExitCode;
use std::time::Duration;

use state::MachineConfig;
use topics::Topics;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bootstrap servers of the Kafka cluster.
    #[arg(long, env = "SKUFLOW_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Prefix of skuflow's topic names.
    #[arg(long, env = "SKUFLOW_TOPIC_PREFIX", default_value = "skuflow")]
    topic_prefix: String,
    /// Upper bound for reading each topic, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let topics = Topics { prefix: args.topic_prefix };
    let log = chaos::Log::read(&args.brokers, &topics, Duration::from_secs(args.timeout_secs))?;
    let report = chaos::audit(&log, MachineConfig::default());
    print!("{report}");
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
