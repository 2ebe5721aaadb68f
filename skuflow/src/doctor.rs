//! `skuflow doctor`: the broker conformance suite with a pass/fail table.

use std::process::ExitCode;
use std::time::Duration;

use broker::DevBroker;
use broker::conformance::{self, Check, Options, Target};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: crate::cluster_args::OptionalBrokers,
    /// Run only these checks (repeatable), by name.
    #[arg(long = "check", value_parser = parse_check)]
    checks: Vec<Check>,
    /// Size of the backlog the large_backlog check reads from offset 0, in MiB.
    #[arg(long, default_value_t = 128)]
    backlog_mib: usize,
    /// Upper bound for any single wait inside a check, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// With --brokers: also check the configuration of this deployment's topics (the
    /// commands topic must be stamped with LogAppendTime).
    #[arg(long, env = "SKUFLOW_TOPIC_PREFIX", default_value = "skuflow")]
    topic_prefix: String,
}

fn parse_check(name: &str) -> Result<Check, String> {
    Check::from_name(name).ok_or_else(|| {
        let known: Vec<String> =
            Check::ALL.iter().map(|c| format!("  {}: {}", c.name(), c.describe())).collect();
        format!("unknown check {name:?}; the checks are:\n{}", known.join("\n"))
    })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = Options {
        backlog_bytes: args.backlog_mib << 20,
        timeout: Duration::from_secs(args.timeout_secs),
        ..Options::default()
    };
    let checks = if args.checks.is_empty() { Check::ALL.to_vec() } else { args.checks };
    let mut owned;
    let mut target = match args.cluster.brokers {
        Some(addr) => Target::External(addr),
        None => {
            owned = DevBroker::start()?;
            tracing::info!(bootstrap = %owned.bootstrap(), "started the dev broker for the checks");
            Target::Owned(&mut owned)
        }
    };
    let bootstrap = match &target {
        Target::External(a) => a.clone(),
        Target::Owned(b) => b.bootstrap(),
    };
    let mut results = Vec::new();
    for check in checks {
        tracing::info!(check = check.name(), "running");
        if check == Check::ZombieFenced {
            tracing::info!(
                "this check fences a producer on purpose: librdkafka logs the fencing as errors"
            );
        }
        results.push(conformance::run(check, &mut target, &opts));
    }
    print!("{}", conformance::render_table(&bootstrap, &results));
    let mut failed = results.iter().any(|r| matches!(r.verdict, conformance::Verdict::Fail(_)));
    if let Target::External(_) = target {
        let topics = topics::Topics { prefix: args.topic_prefix };
        let commands = topics.name(topics::Topic::Commands);
        match broker::admin::check_log_append_time(&bootstrap, &commands) {
            Ok(()) => println!("deployment: {commands} is stamped with LogAppendTime: ok"),
            Err(why) => {
                println!("deployment: FAIL {why}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
