//! `skuflow chaos run SCENARIO`: run a chaos scenario (workload, faults, independent
//! checker, auditor) and write its report. Exits 0 when it passes, 1 when it does not.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ChaosCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ChaosCommand {
    /// Run one scenario file (see chaos/scenarios/).
    Run {
        /// The scenario (TOML).
        scenario: PathBuf,
        /// Where the report, the history and a local cluster's data and logs go
        /// (default: chaos-runs/<scenario name>-<unix time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Override the scenario's duration, in seconds.
        #[arg(long)]
        duration_s: Option<f64>,
    },
    /// Write the Chaos Mesh manifests a `kubernetes` scenario would apply (one JSON file
    /// per fault, for review or by-hand use) without touching a cluster.
    Manifests {
        scenario: PathBuf,
        /// Directory to write them to.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (scenario, out, seed, duration_s) = match args.command {
        ChaosCommand::Run { scenario, out, seed, duration_s } => (scenario, out, seed, duration_s),
        ChaosCommand::Manifests { scenario, out } => return manifests(&scenario, &out),
    };
    let mut s = chaos::scenario::Scenario::load(&scenario)?;
    if let Some(seed) = seed {
        s.seed = seed;
    }
    if let Some(d) = duration_s {
        s.duration_s = d;
        s.validate().map_err(anyhow::Error::msg)?;
    }
    let out = out.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        PathBuf::from("chaos-runs").join(format!("{}-{now}", s.name))
    });
    let options = chaos::run::RunOptions {
        binary: std::env::current_exe()?,
        out_dir: out.clone(),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    tracing::info!(scenario = %s.name, out = %out.display(), "chaos run starting");
    let report = chaos::run::run(&s, &options)?;
    print!("{}", chaos::report::summary(&report));
    println!("report: {}", out.join("report.html").display());
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn manifests(scenario: &std::path::Path, out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let s = chaos::scenario::Scenario::load(scenario)?;
    let chaos::scenario::Target::Kubernetes { cluster, .. } = &s.target else {
        anyhow::bail!("{}: manifests are for a kubernetes target", scenario.display());
    };
    std::fs::create_dir_all(out)?;
    let plan = s.plan(cluster.replicas as usize, 1);
    let mut written = 0;
    for manifest in chaos::k8s::manifests(cluster, &plan) {
        match manifest {
            Ok(m) => {
                let name = m["metadata"]["name"].as_str().unwrap_or("manifest").to_owned();
                std::fs::write(out.join(format!("{name}.json")), serde_json::to_vec_pretty(&m)?)?;
                written += 1;
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }
    println!("{written} manifests in {}", out.display());
    Ok(ExitCode::SUCCESS)
}
