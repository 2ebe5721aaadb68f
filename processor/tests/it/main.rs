//! The processor's integration tests, one binary (each links RocksDB and librdkafka):
//! the Kafka-free batch step, restore and the service loop on the real dev broker, and
//! faults injected through librdkafka's mock cluster.

mod batch;
mod group;
mod history;
mod mock_faults;
mod restore;
mod service;
mod view;

/// Send the processor's logs to the test's captured output (shown when a test fails).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKUFLOW_LOG")
                .unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .try_init();
}
