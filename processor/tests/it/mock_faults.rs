//! Faults the real dev broker cannot produce on demand, injected with librdkafka's mock
//! cluster (`rdkafka::mocking::MockCluster`, in process): request errors on EndTxn,
//! AddPartitionsToTxn and Produce, and a broker going down and coming back. The mock is
//! not a model of transactions (BROKERS.md), so these tests check what must hold on
//! any broker: the processor recovers by itself, every command is answered, and every
//! reply for an id is identical (duplicates, if the mock shows aborted records, share
//! their record id).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use broker::read::read_all;
use processor::{Processor, ProcessorConfig, ProcessorError};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use topics::codec::{from_json, to_json};
use topics::*;

const PARTITIONS: i32 = 2;
const COMMANDS: usize = 200;

struct Running {
    bootstrap: String,
    registry: prometheus::Registry,
    shutdown: Arc<AtomicBool>,
    worker: Option<JoinHandle<Result<(), ProcessorError>>>,
    _data: tempfile::TempDir,
}

impl Running {
    fn start(cluster: &MockCluster<'_, DefaultProducerContext>) -> Self {
        crate::logs();
        let bootstrap = cluster.bootstrap_servers();
        for topic in Topic::ALL {
            cluster.create_topic(&Topics::default().name(topic), PARTITIONS, 1).unwrap();
        }
        let data = tempfile::tempdir().unwrap();
        let mut config = ProcessorConfig::new(&bootstrap, "mock-0", data.path());
        config.tick_interval = None;
        config.batch_max = 20;
        config.timeout = Duration::from_secs(10);
        // The mock cluster's topics carry no configuration to check.
        config.require_log_append_time = false;
        let registry = prometheus::Registry::new();
        let shutdown = Arc::new(AtomicBool::new(false));
        let (stop, reg) = (shutdown.clone(), registry.clone());
        let worker = std::thread::spawn(move || Processor::new(config, &reg)?.run(&stop));
        Self { bootstrap, registry, shutdown, worker: Some(worker), _data: data }
    }

    fn produce(&self, from: usize, to: usize) {
        produce(&self.bootstrap, from, to);
    }

    /// Replies by command id once every one of the first `n` commands has one.
    fn wait_answered(&self, n: usize) -> BTreeMap<String, Vec<Reply>> {
        let started = Instant::now();
        loop {
            let mut by_id: BTreeMap<String, Vec<Reply>> = BTreeMap::new();
            let topic = Topics::default().name(Topic::Replies);
            for r in read_all(&self.bootstrap, &topic, Duration::from_secs(30)).unwrap() {
                let reply = from_json::<Reply>(r.payload.as_deref()).unwrap().body;
                by_id.entry(reply.command_id.to_string()).or_default().push(reply);
            }
            if by_id.len() >= n {
                return by_id;
            }
            let finished = self.worker.as_ref().is_some_and(JoinHandle::is_finished);
            assert!(!finished, "the processor stopped");
            assert!(started.elapsed() < Duration::from_secs(90), "{} of {n} answered", by_id.len());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn failures(&self, recovery: &str) -> u64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == "skuflow_processor_transaction_failures_total")
            .flat_map(|f| f.get_metric())
            .filter(|m| m.get_label().iter().any(|l| l.value() == recovery))
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    fn stop(mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        let worker = self.worker.take().unwrap();
        worker.join().unwrap().unwrap();
    }
}

impl Drop for Running {
    /// A failed test still stops the processor before the mock cluster goes away.
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Commands `from..to`: four restocks, then reservations of one unit.
fn produce(bootstrap: &str, from: usize, to: usize) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(bootstrap).create().unwrap();
    let topic = Topics::default().name(Topic::Commands);
    for i in from..to {
        let sku = format!("sku-{}", i % 4);
        let command = if i < 4 {
            Command::Restock(Restock {
                sku: Sku::new(&sku).unwrap(),
                warehouse: WarehouseId::new("w").unwrap(),
                quantity: Quantity::new(1000).unwrap(),
            })
        } else {
            Command::Reserve(Reserve {
                sku: Sku::new(&sku).unwrap(),
                quantity: Quantity::new(1).unwrap(),
                warehouse: None,
                strategy: None,
                allow_partial: false,
                ttl_ms: None,
            })
        };
        let request = Request {
            tenant: TenantId::new("t").unwrap(),
            command_id: CommandId::new(format!("c-{i}")).unwrap(),
            command,
        };
        let payload = to_json(&Envelope::command(LogCommand::Request(request))).unwrap();
        broker::client::send_waiting(&producer, BaseRecord::to(&topic).key(&sku).payload(&payload))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn assert_identical(by_id: &BTreeMap<String, Vec<Reply>>) {
    assert_eq!(by_id.len(), COMMANDS);
    for (id, replies) in by_id {
        assert!(replies.windows(2).all(|w| w[0] == w[1]), "{id}: replies differ: {replies:?}");
    }
}

/// Fail the first `api` requests after the backlog is written with `errors`: the
/// processor is still joining the group then, so the first such requests are its own.
fn recovers_from(api: RDKafkaApiKey, errors: &[RDKafkaRespErr], recovery: &str) {
    let cluster = MockCluster::new(1).unwrap();
    let run = Running::start(&cluster);
    run.produce(0, COMMANDS);
    cluster.request_errors(api, errors);
    let by_id = run.wait_answered(COMMANDS);
    assert!(run.failures(recovery) >= 1, "no failed batch recovered by {recovery}");
    assert_identical(&by_id);
    run.stop();
}

#[test]
fn mock_cluster_end_txn_error_recreates_the_producer() {
    recovers_from(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE],
        "recreate",
    );
}

#[test]
fn mock_cluster_add_partitions_to_txn_error_aborts_and_retries() {
    recovers_from(
        RDKafkaApiKey::AddPartitionsToTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
        "abort",
    );
}

#[test]
fn mock_cluster_produce_error_aborts_and_retries() {
    recovers_from(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
        "abort",
    );
}

#[test]
fn mock_cluster_broker_down_and_up() {
    let cluster = MockCluster::new(1).unwrap();
    let run = Running::start(&cluster);
    run.produce(0, COMMANDS / 2);
    run.wait_answered(COMMANDS / 2);
    cluster.broker_down(1).unwrap();
    // The second half is queued while the broker is away; the producer delivers it when
    // the broker is back. The outage lasts three seconds: the fault's length, not a wait
    // for anything.
    let producing = {
        let bootstrap = run.bootstrap.clone();
        std::thread::spawn(move || produce(&bootstrap, COMMANDS / 2, COMMANDS))
    };
    std::thread::sleep(Duration::from_secs(3));
    cluster.broker_up(1).unwrap();
    producing.join().unwrap();
    assert_identical(&run.wait_answered(COMMANDS));
    run.stop();
}
