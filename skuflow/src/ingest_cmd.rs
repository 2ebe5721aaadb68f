//! `skuflow ingest`: bulk stock loads from CSV or NDJSON straight to the commands topic,
//! with a progress bar and a summary of accepted, refused and answered lines.
//! Line formats: `ingest::bulk`. Loading the same file twice is idempotent.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use ingest::bulk::{Format, parse_line};
use ingest::{Ingest, IngestConfig};
use topics::{Outcome, TenantId};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to load (`-`: standard input).
    file: PathBuf,
    /// Tenant the commands act for.
    #[arg(long, env = "SKUFLOW_TENANT")]
    tenant: String,
    /// csv or ndjson; default: from the file's extension (csv unless .ndjson/.jsonl).
    #[arg(long)]
    format: Option<String>,
    #[command(flatten)]
    cluster: crate::cluster_args::ClusterArgs,
    /// Commands waiting for the broker's acknowledgement at once.
    #[arg(long, default_value_t = 1000)]
    concurrency: usize,
    /// How long to wait for each reply after the load; 0: do not wait.
    #[arg(long, default_value_t = 30)]
    wait_replies_secs: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let format = match args.format.as_deref() {
        Some("csv") => Format::Csv,
        Some("ndjson") => Format::Ndjson,
        Some(other) => anyhow::bail!("unknown format {other:?} (csv, ndjson)"),
        None if matches!(
            args.file.extension().and_then(|e| e.to_str()),
            Some("ndjson" | "jsonl")
        ) =>
        {
            Format::Ndjson
        }
        None => Format::Csv,
    };
    let tenant = TenantId::new(&args.tenant)?;
    let source = args.file.file_name().and_then(|n| n.to_str()).unwrap_or("stdin").to_owned();
    let lines: Vec<String> = if args.file.as_os_str() == "-" {
        std::io::stdin().lock().lines().collect::<Result<_, _>>()?
    } else {
        std::io::BufReader::new(std::fs::File::open(&args.file)?)
            .lines()
            .collect::<Result<_, _>>()?
    };
    let mut requests = Vec::new();
    let mut refused: Vec<(usize, String)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match parse_line(format, &tenant, &source, i + 1, line) {
            Ok(Some(r)) => requests.push((i + 1, r)),
            Ok(None) => {}
            Err(reason) => refused.push((i + 1, reason)),
        }
    }
    let mut config = IngestConfig::new(&args.cluster.brokers);
    config.topics = args.cluster.topics();
    config.format = args.cluster.registry.format(&config.topics)?;
    let ingest = Ingest::new(config)?;
    let bar = indicatif::ProgressBar::new(requests.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} lines enqueued ({per_sec}, eta {eta})",
        )?,
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let wait = Duration::from_secs(args.wait_replies_secs);
    let results: Vec<(usize, Result<Option<Outcome>, String>)> = rt.block_on(async {
        futures::stream::iter(requests)
            .map(|(n, request)| {
                let (ingest, bar) = (ingest.clone(), bar.clone());
                async move {
                    let accepted = match ingest.submit(&request).await {
                        Ok(a) => a,
                        Err(e) => return (n, Err(e.to_string())),
                    };
                    bar.inc(1);
                    if wait.is_zero() {
                        return (n, Ok(None));
                    }
                    match ingest.reply(accepted.position, wait).await {
                        Ok(reply) => (n, Ok(reply.map(|r| r.outcome.clone()))),
                        Err(e) => (n, Err(e.to_string())),
                    }
                }
            })
            .buffer_unordered(args.concurrency.max(1))
            .collect()
            .await
    });
    bar.finish();
    summarize(&refused, &results, wait.is_zero());
    let failed = !refused.is_empty() || results.iter().any(|(_, r)| r.is_err());
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn summarize(
    refused: &[(usize, String)],
    results: &[(usize, Result<Option<Outcome>, String>)],
    no_wait: bool,
) {
    let accepted = results.iter().filter(|(_, r)| r.is_ok()).count();
    println!("accepted: {accepted}");
    println!("refused:  {} (bad lines, not sent)", refused.len());
    for (n, reason) in refused.iter().take(10) {
        println!("  line {n}: {reason}");
    }
    let failed: Vec<_> =
        results.iter().filter_map(|(n, r)| r.as_ref().err().map(|e| (n, e))).collect();
    if !failed.is_empty() {
        println!("failed to enqueue or to hear back: {}", failed.len());
        for (n, e) in failed.iter().take(10) {
            println!("  line {n}: {e}");
        }
    }
    if no_wait {
        return;
    }
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unanswered = 0;
    for (_, r) in results {
        match r {
            Ok(Some(Outcome::Rejected(rejection))) => {
                *outcomes.entry(rejection.reason()).or_default() += 1
            }
            Ok(Some(_)) => *outcomes.entry("applied").or_default() += 1,
            Ok(None) => unanswered += 1,
            Err(_) => {}
        }
    }
    for (what, n) in outcomes {
        println!("{what}: {n}");
    }
    if unanswered > 0 {
        println!("no reply yet: {unanswered} (is a processor running?)");
    }
}
