//! Open-loop HTTP load at a fixed arrival rate. Request n is due at `start + n / rate`;
//! it is sent then whatever happened to the ones before, and its latency counts from
//! that due time. A server that falls behind therefore shows its queue in the latency
//! instead of slowing the arrivals (the coordinated omission of closed-loop tools).
//! Requests beyond `--max-in-flight` are not sent and counted as `dropped` (the
//! generator's own limit, reported so a run that hit it is not mistaken for a good one).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Mutex;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    /// `POST /v1/reservations` of one unit, a fresh Idempotency-Key each.
    Reserve,
    /// `GET /v1/availability/{sku}`.
    Read,
    /// `GET --trivial-path`: the server's cheapest handler (the baseline server's
    /// `/trivial`, skuflow's `/healthz`), the ceiling of its HTTP layer.
    Trivial,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base URL of the server.
    #[arg(long)]
    url: String,
    #[arg(long, value_enum, default_value = "reserve")]
    kind: Kind,
    /// Requests per second.
    #[arg(long)]
    rate: f64,
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Spread over `sku-0` .. `sku-{N-1}` (1: one hot SKU).
    #[arg(long, default_value_t = 1000)]
    skus: usize,
    /// Sent as X-Api-Key.
    #[arg(long, env = "BENCH_API_KEY")]
    api_key: String,
    /// Prefix of the Idempotency-Keys (unique per run).
    #[arg(long, default_value = "load")]
    run: String,
    #[arg(long, default_value_t = 20_000)]
    max_in_flight: usize,
    /// Client worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The path `--kind trivial` requests.
    #[arg(long, default_value = "/trivial")]
    trivial_path: String,
    /// Also write every request to this file as CSV, `due_unix_ms,latency_ms,status`, its
    /// due time as wall-clock milliseconds since the Unix epoch: to line latency up with
    /// what the server's processes did at that moment.
    #[arg(long)]
    timeline: Option<std::path::PathBuf>,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    kind: String,
    offered_rate: f64,
    duration_s: f64,
    skus: usize,
    sent: usize,
    dropped: usize,
    completed: usize,
    /// 2xx answers.
    ok: usize,
    /// 409 (a business rejection such as insufficient stock).
    rejected: usize,
    /// Other statuses, timeouts and connection errors.
    errors: usize,
    /// Answers of any kind per second over the run (sending time + the tail).
    achieved_rate: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let summary = rt.block_on(drive(&args))?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

async fn drive(args: &Args) -> anyhow::Result<Summary> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let total = (args.rate * args.duration_s).round() as usize;
    let latencies = Arc::new(Mutex::new(Vec::<(u16, Duration, Duration)>::with_capacity(total)));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut dropped = 0;
    let start = Instant::now() + Duration::from_millis(100);
    // The same moment on the wall clock, for --timeline.
    let start_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
            + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(total);
    for n in 0..total {
        let due = start + Duration::from_secs_f64(n as f64 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        if in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
            dropped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let sku = format!("sku-{}", n % args.skus.max(1));
        let request = match args.kind {
            Kind::Reserve => client
                .post(format!("{}/v1/reservations?wait=10000", args.url))
                .header("Idempotency-Key", format!("{}-{n}", args.run))
                .json(&serde_json::json!({ "sku": sku, "quantity": 1 })),
            Kind::Read => client.get(format!("{}/v1/availability/{sku}", args.url)),
            Kind::Trivial => client.get(format!("{}{}", args.url, args.trivial_path)),
        }
        .header("X-Api-Key", &args.api_key);
        let (latencies, in_flight) = (latencies.clone(), in_flight.clone());
        tasks.push(tokio::spawn(async move {
            let status = match request.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let _ = r.bytes().await;
                    status
                }
                Err(_) => 0,
            };
            let took = due.elapsed();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            latencies.lock().await.push((status, took, due - start));
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = std::mem::take(&mut *latencies.lock().await);
    if let Some(path) = &args.timeline {
        all.sort_by_key(|(_, _, due)| *due);
        let mut text = String::from("due_unix_ms,latency_ms,status\n");
        for (status, took, due) in &all {
            let (due, took) = ((start_unix + *due).as_secs_f64() * 1e3, took.as_secs_f64() * 1e3);
            text.push_str(&format!("{due:.3},{took:.3},{status}\n"));
        }
        std::fs::write(path, text)?;
    }
    all.sort_by_key(|(_, d, _)| *d);
    let at = |q: f64| {
        all.get(((all.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |(_, d, _)| d.as_secs_f64() * 1000.0)
    };
    let count = |f: &dyn Fn(u16) -> bool| all.iter().filter(|(s, _, _)| f(*s)).count();
    Ok(Summary {
        kind: format!("{:?}", args.kind).to_lowercase(),
        offered_rate: args.rate,
        duration_s: args.duration_s,
        skus: args.skus,
        sent: total - dropped,
        dropped,
        completed: all.len(),
        ok: count(&|s| (200..300).contains(&s)),
        rejected: count(&|s| s == 409),
        errors: count(&|s| !(200..300).contains(&s) && s != 409),
        achieved_rate: all.len() as f64 / elapsed,
        p50_ms: at(0.5),
        p90_ms: at(0.9),
        p99_ms: at(0.99),
        p999_ms: at(0.999),
        max_ms: all.last().map_or(0.0, |(_, d, _)| d.as_secs_f64() * 1000.0),
    })
}
