//! `skuflow bench processor`: processor throughput through a broker, exactly-once and
//! at-least-once measured in the same run on the same backlog.
//!
//! For each mode: fresh topics, a backlog of `--commands` commands (restocks, then
//! reservations spread over `--skus` SKUs, or all on one with `--skus 1`) produced before
//! the processor starts, then one in-process processor drains it. The rate is counted
//! from its first applied batch to the last (group join and start-up excluded); commit
//! latency percentiles come from the processor's own histogram (buckets 25% apart).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use broker::DevBroker;
use broker::admin::ensure_topics;
use processor::Delivery;
use prometheus::Registry;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use topics::codec::to_json;
use topics::*;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Drain a backlog through one processor, exactly-once and at-least-once.
    Processor(ProcessorBench),
}

#[derive(Debug, clap::Args)]
struct ProcessorBench {
    #[command(flatten)]
    cluster: crate::cluster_args::OptionalBrokers,
    /// Commands in the backlog.
    #[arg(long, default_value_t = 200_000)]
    commands: usize,
    /// SKUs the reservations spread over (1: one hot SKU).
    #[arg(long, default_value_t = 10_000)]
    skus: usize,
    /// Partitions of the commands topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Most commands per transaction.
    #[arg(long, default_value_t = 1000)]
    batch_max: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let What::Processor(bench) = args.what;
    let (_broker, bootstrap) = match &bench.cluster.brokers {
        Some(b) => (None, b.clone()),
        None => {
            let b = DevBroker::start()?;
            let addr = b.bootstrap();
            (Some(b), addr)
        }
    };
    println!(
        "processor drain: {} commands, {} SKUs, {} partitions, batches of up to {}",
        bench.commands, bench.skus, bench.partitions, bench.batch_max
    );
    println!(
        "| mode | commands/s | commands per transaction | commit p50 | commit p99 | RSS at start → after the drain |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, delivery) in
        [("exactly-once", Delivery::ExactlyOnce), ("at-least-once", Delivery::AtLeastOnce)]
    {
        let r = drain(&bootstrap, &bench, name, delivery)?;
        println!(
            "| {name} | {:.0} | {:.0} | {:.1} ms | {:.1} ms | {} → {} MiB |",
            r.rate,
            r.per_batch,
            r.p50 * 1e3,
            r.p99 * 1e3,
            r.rss.0,
            r.rss.1
        );
    }
    Ok(ExitCode::SUCCESS)
}

struct Result {
    rate: f64,
    per_batch: f64,
    p50: f64,
    p99: f64,
    /// Resident memory of this process (MiB) when the processor started, and when it had
    /// applied the backlog.
    rss: (u64, u64),
}

/// `VmRSS` of this process, in MiB.
fn rss_mib() -> u64 {
    state::store::process_memory().rss_mib
}

fn drain(
    bootstrap: &str,
    bench: &ProcessorBench,
    name: &str,
    delivery: Delivery,
) -> anyhow::Result<Result> {
    let topics = Topics { prefix: format!("bench-{name}-{}", std::process::id()) };
    ensure_topics(bootstrap, &processor::topic_specs(&topics, bench.partitions, 1))?;
    backlog(bootstrap, &topics, bench)?;
    let data = tempfile::tempdir()?;
    let mut config =
        processor::ProcessorConfig::new(bootstrap, format!("bench-{name}"), data.path());
    config.topics = topics;
    config.delivery = delivery;
    config.tick_interval = None;
    config.batch_max = bench.batch_max;
    let registry = Registry::new();
    let shutdown = Arc::new(AtomicBool::new(false));
    let rss_before = rss_mib();
    let worker = crate::processor_cmd::spawn(
        config,
        registry.clone(),
        processor::Health::new(),
        shutdown.clone(),
    )?;
    let total = bench.commands as u64;
    let (mut first, started) = (None, Instant::now());
    let end = loop {
        let applied = counter(&registry, "skuflow_processor_applied_total");
        if first.is_none() && applied > 0 {
            first = Some((Instant::now(), applied));
        }
        if applied >= total {
            break Instant::now();
        }
        anyhow::ensure!(!worker.is_finished(), "the processor stopped");
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "drain took over 30 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let rss_after = rss_mib();
    shutdown.store(true, Ordering::Relaxed);
    worker.join().map_err(|_| anyhow::anyhow!("processor panicked"))??;
    let (t0, applied0) = first.unwrap_or((started, 0));
    let secs = end.duration_since(t0).as_secs_f64().max(1e-9);
    let (count, sum) = histogram_totals(&registry, "skuflow_processor_batch_commands");
    Ok(Result {
        rate: (total - applied0) as f64 / secs,
        per_batch: sum / count.max(1) as f64,
        p50: quantile(&registry, "skuflow_processor_commit_seconds", 0.5),
        p99: quantile(&registry, "skuflow_processor_commit_seconds", 0.99),
        rss: (rss_before, rss_after),
    })
}

fn backlog(bootstrap: &str, topics: &Topics, bench: &ProcessorBench) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .set("batch.num.messages", "10000")
            .create()?;
    let topic = topics.name(Topic::Commands);
    let tenant = TenantId::new("bench")?;
    let skus = bench.skus.max(1);
    for i in 0..bench.commands {
        let sku = Sku::new(format!("sku-{}", i % skus))?;
        let command = if i < skus {
            Command::Restock(Restock {
                sku: sku.clone(),
                warehouse: WarehouseId::new("w")?,
                quantity: Quantity::new(u32::MAX).unwrap_or_else(|| unreachable!()),
            })
        } else {
            Command::Reserve(Reserve {
                sku: sku.clone(),
                quantity: Quantity::new(1).unwrap_or_else(|| unreachable!()),
                warehouse: None,
                strategy: None,
                allow_partial: false,
                ttl_ms: None,
            })
        };
        let request = Request {
            tenant: tenant.clone(),
            command_id: CommandId::new(format!("b-{i}"))?,
            command,
        };
        let payload = to_json(&Envelope::command(LogCommand::Request(request)))?;
        broker::client::send_waiting(
            &producer,
            BaseRecord::to(&topic).key(sku.as_str()).payload(&payload),
        )?;
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

fn counter(registry: &Registry, name: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

fn histogram_totals(registry: &Registry, name: &str) -> (u64, f64) {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| (m.get_histogram().get_sample_count(), m.get_histogram().get_sample_sum()))
        .fold((0, 0.0), |(c, s), (c2, s2)| (c + c2, s + s2))
}

/// The `q` quantile of a histogram, interpolated linearly inside its bucket.
fn quantile(registry: &Registry, name: &str, q: f64) -> f64 {
    let families = registry.gather();
    let Some(h) = families
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_histogram())
        .next()
    else {
        return f64::NAN;
    };
    let total = h.get_sample_count() as f64;
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for b in h.get_bucket() {
        let (upper, count) = (b.upper_bound(), b.cumulative_count() as f64);
        if count >= rank {
            let inside = (count - below).max(1.0);
            return lower + (upper - lower) * ((rank - below) / inside);
        }
        (lower, below) = (upper, count);
    }
    lower
}
