//! The ingest client against the real dev broker and a processor: a command's future
//! resolves with its reply, and a client started later (no cache, tail from the end)
//! still finds old replies in Kafka by binary search.

mod follow;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use broker::DevBroker;
use broker::admin::ensure_topics;
use ingest::{Ingest, IngestConfig};
use processor::{Processor, ProcessorConfig, topic_specs};
use topics::*;

fn request(id: &str, command: Command) -> Request {
    Request {
        tenant: TenantId::new("t").unwrap(),
        command_id: CommandId::new(id).unwrap(),
        command,
    }
}

fn restock(sku: &str, n: u32) -> Command {
    Command::Restock(Restock {
        sku: Sku::new(sku).unwrap(),
        warehouse: WarehouseId::new("w").unwrap(),
        quantity: Quantity::new(n).unwrap(),
    })
}

#[test]
fn replies_resolve_and_old_ones_are_found_after_a_restart() {
    let broker = DevBroker::start().unwrap();
    let b = broker.bootstrap();
    ensure_topics(&b, &topic_specs(&Topics::default(), 3, 1)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let shutdown = Arc::new(AtomicBool::new(false));
    let (stop, config) = (shutdown.clone(), ProcessorConfig::new(&b, "ingest-test", data.path()));
    let worker = std::thread::spawn(move || {
        Processor::new(config, &prometheus::Registry::new()).unwrap().run(&stop)
    });

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ingest = Ingest::new(IngestConfig::new(&b)).unwrap();
    let mut accepted = Vec::new();
    rt.block_on(async {
        for i in 0..60 {
            let r = request(&format!("c-{i}"), restock(&format!("sku-{}", i % 7), 1 + i as u32));
            let a = ingest.submit(&r).await.unwrap();
            let reply = ingest.reply(a.position, Duration::from_secs(30)).await.unwrap().unwrap();
            assert_eq!(reply.command_id, r.command_id, "the reply to this very command");
            accepted.push((a.position, reply));
        }
    });
    drop(ingest);

    // A new client: nothing cached, its tail starts at the end.
    let later = Ingest::new(IngestConfig::new(&b)).unwrap();
    rt.block_on(async {
        for (position, reply) in &accepted {
            let found = later.lookup(*position).await.unwrap();
            assert_eq!(found.as_deref(), Some(&**reply), "reply at {position:?} found in Kafka");
        }
        let nowhere = Position { partition: 0, offset: 1_000_000 };
        assert_eq!(later.lookup(nowhere).await.unwrap(), None);
    });
    shutdown.store(true, Ordering::Relaxed);
    worker.join().unwrap().unwrap();
}

#[test]
fn a_full_queue_is_backpressure_not_a_drop() {
    let mut broker = DevBroker::start().unwrap();
    let b = broker.bootstrap();
    ensure_topics(&b, &topic_specs(&Topics::default(), 1, 1)).unwrap();
    let mut config = IngestConfig::new(&b);
    config.queue_capacity = 1;
    let ingest = Ingest::new(config).unwrap();
    // With the broker gone, the first command stays in the one-slot queue.
    broker.kill9().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let first = ingest.clone();
        let pending =
            tokio::spawn(async move { first.submit(&request("q-1", restock("s", 1))).await });
        tokio::task::yield_now().await;
        let second = ingest.submit(&request("q-2", restock("s", 1))).await;
        assert!(matches!(second, Err(ingest::IngestError::Backpressure)), "{second:?}");
        pending.abort();
    });
}
