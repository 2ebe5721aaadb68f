//! `skuflow`: the one binary. Each subcommand is a thin edge over a library crate;
//! `anyhow` lives here and nowhere else.

mod broker_cmd;
mod doctor;
mod up;

use clap::{Parser, Subcommand};

// The state machine allocates per command; mimalloc measured 1.55x glibc's malloc on its
// apply benchmark (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "skuflow",
    version,
    about = "Inventory reservation for flash-sale checkout on Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local development broker in the foreground.
    Broker(broker_cmd::Args),
    /// Check that a broker does what skuflow relies on (transactions, fencing, groups, ...).
    Doctor(doctor::Args),
    /// Run skuflow locally: the dev broker (unless --brokers is given) and the services.
    Up(up::Args),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKUFLOW_LOG")
                .unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Broker(args) => broker_cmd::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Up(args) => up::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Block until Ctrl-C or SIGTERM, or until `alive` reports the watched process gone.
fn wait_for_shutdown(mut alive: impl FnMut() -> bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = term.recv() => return Ok(()),
                _ = tick.tick() => if !alive() { anyhow::bail!("the dev broker exited") },
            }
        }
    })
}
