//! `skuflow-baseline`: what users would build instead of skuflow, for benchmarking only,
//! and the open-loop load generator that measures both.
//!
//! - `serve --backend redis|postgres`: skuflow's reserve endpoint (`POST
//!   /v1/reservations`, the same request body, `Idempotency-Key`, API keys and reply
//!   shapes: the handlers use the `api` crate's DTOs, authentication, problem+json and
//!   reply rendering) backed by Redis with a Lua script or PostgreSQL with a conditional
//!   UPDATE and an idempotency-key table; `GET /v1/availability/{sku}` reads the stock;
//!   `GET /trivial` answers `{}` (the HTTP layer's own ceiling).
//! - `load`: open-loop load at a fixed arrival rate; latency is measured from when each
//!   request was due, not when it was sent, so a slow server cannot slow the generator
//!   down and hide its own queue (no coordinated omission).
//!
//! What the baselines do not do, and skuflow does: holds that expire, release, purchase,
//! extend, warehouses and allocation strategies, replies through a log, events, a
//! changelog, exactly-once across crashes. They are the minimum a team would write for
//! "never oversell one counter, answer a retried key the same".

mod backend;
mod load;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "skuflow-baseline", about = "Baselines and load for skuflow's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the reserve endpoint on Redis or PostgreSQL.
    Serve(serve::Args),
    /// Send open-loop load at a fixed rate and print what came back (JSON).
    Load(load::Args),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve::run(args),
        Command::Load(args) => load::run(args),
    }
}
