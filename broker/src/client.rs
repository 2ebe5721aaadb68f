//! Baseline rdkafka client settings every skuflow component starts from.
//!
//! One place, because some of them work around measured broker behaviour (BROKERS.md):
//! the dev broker ignores fetch size limits and may answer a catch-up fetch with one
//! response of hundreds of megabytes, which librdkafka rejects unless
//! `receive.message.max.bytes` allows it. The conformance check `large_backlog` proves
//! that these settings read such a backlog.

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Largest response librdkafka accepts (its own upper bound for the setting).
pub const RECEIVE_MESSAGE_MAX_BYTES: &str = "2147483647";

pub fn base_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("receive.message.max.bytes", RECEIVE_MESSAGE_MAX_BYTES)
        .set("socket.timeout.ms", "10000");
    cfg
}

/// A producer. Keys go to partitions the way the Java client puts them (murmur2), so a
/// SKU lands on the same commands partition whichever client, in whichever language,
/// enqueued it: one partition, one writer per SKU.
pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = base_config(bootstrap);
    cfg.set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("partitioner", "murmur2_random");
    cfg
}

/// A consumer that commits only what it is told to and never skips committed data.
pub fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut cfg = base_config(bootstrap);
    cfg.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    cfg
}

/// A consumer that reads a bounded range (a lookup, a restore, an audit) and wants to
/// learn promptly that it reached the end. A broker holds a fetch that finds nothing for
/// `fetch.wait.max.ms` (librdkafka's default 500 ms), and requests queued behind it on
/// the same connection (a seek's next fetch, a watermarks query) wait too: for such a
/// reader 10 ms, where a consumer that follows a log keeps the default.
pub fn reader_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut cfg = consumer_config(bootstrap, group);
    cfg.set("fetch.wait.max.ms", "10");
    cfg
}

/// The longest [`send_waiting`] waits for room in the queue. Queued records leave it
/// within `message.timeout.ms` (delivered or failed), so a queue full for longer means
/// the producer is not being served: an error, not a wait without end.
pub const SEND_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(120);

/// Send `record`, waiting while librdkafka's local queue is full (the record is handed
/// back and retried once the queue drains) instead of failing or dropping it; at most
/// [`SEND_WAIT_MAX`].
pub fn send_waiting<C, K, P>(
    producer: &rdkafka::producer::ThreadedProducer<C>,
    record: rdkafka::producer::BaseRecord<'_, K, P, C::DeliveryOpaque>,
) -> Result<(), rdkafka::error::KafkaError>
where
    C: rdkafka::producer::ProducerContext + 'static,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    send_waiting_until(producer, record, std::time::Instant::now() + SEND_WAIT_MAX)
}

/// [`send_waiting`] that gives up at `deadline` (a transaction's own deadline).
pub fn send_waiting_until<C, K, P>(
    producer: &rdkafka::producer::ThreadedProducer<C>,
    mut record: rdkafka::producer::BaseRecord<'_, K, P, C::DeliveryOpaque>,
    deadline: std::time::Instant,
) -> Result<(), rdkafka::error::KafkaError>
where
    C: rdkafka::producer::ProducerContext + 'static,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e @ KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                if std::time::Instant::now() >= deadline =>
            {
                return Err(e);
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(std::time::Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Wait until every record `producer` holds is delivered (or failed), or `timeout`.
///
/// rdkafka's own `flush` (also called by `commit_transaction`) polls in slices of 100 ms
/// that do not end when the last delivery report arrives, so every flush with anything in
/// flight took at least 100 ms: measured as a 100 ms floor per transaction. This checks
/// every 100 µs instead; the producer's own thread serves the delivery reports.
pub fn flush_quickly<C>(
    producer: &rdkafka::producer::ThreadedProducer<C>,
    timeout: std::time::Duration,
) -> Result<(), rdkafka::error::KafkaError>
where
    C: rdkafka::producer::ProducerContext + 'static,
{
    use rdkafka::producer::Producer;
    let deadline = std::time::Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if std::time::Instant::now() >= deadline {
            return Err(rdkafka::error::KafkaError::Flush(
                rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    Ok(())
}

/// Log an error librdkafka reports for the client as a whole, except a partition's end:
/// a consumer with `enable.partition.eof` (a reader that must know when it has read
/// everything) gets that as an error too, and it is how such a reader knows it is done,
/// not something an operator should see at ERROR level.
pub fn log_client_error(error: &KafkaError, reason: &str) {
    let end = matches!(error, KafkaError::PartitionEOF(_))
        || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
    if !end {
        // librdkafka's own target, as its default context logs: `rdkafka=...` filters apply.
        tracing::error!(target: "rdkafka::client", %error, reason, "kafka client error");
    }
}

/// The client context of readers that ask for partition ends: librdkafka's default
/// context, but quiet about those ends ([`log_client_error`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&error, reason);
    }
}

impl ConsumerContext for QuietEof {}
