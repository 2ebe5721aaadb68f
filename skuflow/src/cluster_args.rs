//! The flags every subcommand that talks to a running deployment shares.

use topics::Topics;
use topics::avro::{AvroFormat, RegistryConfig};
use topics::codec::Format;

#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Bootstrap servers of the Kafka cluster.
    #[arg(long, env = "SKUFLOW_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Prefix of skuflow's topic names.
    #[arg(long, env = "SKUFLOW_TOPIC_PREFIX", default_value = "skuflow")]
    pub topic_prefix: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// The envelope format: JSON, or Avro through a schema registry.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Encode every record as Avro (Confluent wire format) through this schema registry,
    /// registering skuflow's schemas at startup with BACKWARD compatibility. Without it,
    /// JSON. Every service of a deployment must use the same format.
    #[arg(long, env = "SKUFLOW_SCHEMA_REGISTRY")]
    pub schema_registry: Option<String>,
    /// `user:password` for the schema registry (HTTP basic authentication).
    #[arg(long, env = "SKUFLOW_SCHEMA_REGISTRY_AUTH", hide_env_values = true)]
    pub schema_registry_auth: Option<String>,
}

impl RegistryArgs {
    /// The format, after registering the schemas if a registry is given (blocking: call
    /// it before starting any async runtime).
    pub fn format(&self, topics: &Topics) -> anyhow::Result<Format> {
        let Some(url) = &self.schema_registry else { return Ok(Format::Json) };
        let mut config = RegistryConfig::new(url.clone());
        config.basic_auth = self.schema_registry_auth.clone();
        let avro = AvroFormat::register(&config, topics)?;
        tracing::info!(registry = %url, schemas = ?avro, "records are Avro through the schema registry");
        Ok(Format::Avro(std::sync::Arc::new(avro)))
    }
}

/// A Kafka cluster to use, or none: the subcommand starts the dev broker.
#[derive(Debug, Clone, clap::Args)]
pub struct OptionalBrokers {
    /// Use this Kafka cluster (bootstrap servers) instead of starting the dev broker.
    #[arg(long, env = "SKUFLOW_BROKERS")]
    pub brokers: Option<String>,
}

impl ClusterArgs {
    pub fn topics(&self) -> Topics {
        Topics { prefix: self.topic_prefix.clone() }
    }
}
