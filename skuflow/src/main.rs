//! `skuflow`: the one binary. Each subcommand is a thin edge over a library crate;
//! `anyhow` lives here and nowhere else.

mod api_cmd;
mod audit_cmd;
mod bench_cmd;
mod broker_cmd;
mod chaos_cmd;
mod cluster_args;
mod config_file;
mod doctor;
mod ingest_cmd;
mod metrics_server;
mod processor_cmd;
mod registry_cmd;
mod telemetry;
mod up;

use clap::{Parser, Subcommand};

// The state machine allocates per command. mimalloc together with boxed idempotency
// records took its apply benchmark from 539 k to 834 k commands/s (BENCHMARKS.md); the
// share of each was not measured.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "skuflow",
    version,
    about = "Inventory reservation for flash-sale checkout on Kafka"
)]
struct Cli {
    /// A TOML file of flag values (`batch-max = 500`); flags and SKUFLOW_* variables win.
    #[arg(long, global = true, env = "SKUFLOW_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

// `Up` carries every flag of the processor and the API; the enum is built once at start.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local development broker in the foreground.
    Broker(broker_cmd::Args),
    /// Run a development schema registry (in memory) in the foreground, for trying
    /// `--schema-registry` without a JVM.
    SchemaRegistry(registry_cmd::Args),
    /// Check that a broker does what skuflow relies on (transactions, fencing, groups, ...).
    Doctor(doctor::Args),
    /// Run one processor: the single writer of the command partitions it is assigned.
    Processor(processor_cmd::Args),
    /// Run the HTTP API.
    Api(api_cmd::Args),
    /// Make an API key and the line that configures it.
    ApiKey(api_cmd::KeyArgs),
    /// Load stock from a CSV or NDJSON file straight into the commands topic.
    Ingest(ingest_cmd::Args),
    /// Benchmarks through a broker (BENCHMARKS.md).
    Bench(bench_cmd::Args),
    /// Read everything a deployment wrote and check invariants I1-I7.
    Audit(audit_cmd::Args),
    /// Chaos scenarios: workload, faults, an independent checker and a report.
    Chaos(chaos_cmd::Args),
    /// Run skuflow locally: the dev broker (unless --brokers is given) and the services.
    Up(up::Args),
}

fn main() -> std::process::ExitCode {
    init_logs();
    let args = match config_file::expand::<Cli>(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            tracing::error!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Broker(args) => broker_cmd::run(args),
        Command::SchemaRegistry(args) => registry_cmd::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Up(args) => up::run(args),
        Command::Processor(args) => processor_cmd::run(args),
        Command::Audit(args) => audit_cmd::run(args),
        Command::Chaos(args) => chaos_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Api(args) => api_cmd::run(args),
        Command::Ingest(args) => ingest_cmd::run(args),
        Command::ApiKey(args) => api_cmd::make_key(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Block until Ctrl-C or SIGTERM (returns true), or until `alive` reports `what` gone
/// (returns false).
fn wait_for_shutdown(what: &str, mut alive: impl FnMut() -> bool) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(true),
                _ = term.recv() => return Ok(true),
                _ = tick.tick() => if !alive() {
                    tracing::warn!("{what} stopped");
                    return Ok(false);
                },
            }
        }
    })
}

/// Logs to stderr, filtered by `SKUFLOW_LOG`; and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is
/// set, trace spans to that collector (`telemetry.rs`).
fn init_logs() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKUFLOW_LOG")
        .unwrap_or_else(|_| "info,rdkafka=warn".into());
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    let subcommand = std::env::args().nth(1).unwrap_or_default();
    let traces = telemetry::layer(&subcommand).map(|layer| {
        layer.with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.is_span() && m.name().starts_with("skuflow.")
        }))
    });
    tracing_subscriber::registry().with(logs).with(traces).init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Flags of flattened argument groups must not collide (clap checks at parse time).
    #[test]
    fn every_subcommand_parses() {
        super::Cli::command().debug_assert();
    }
}
