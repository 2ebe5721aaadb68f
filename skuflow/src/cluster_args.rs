//! The flags every subcommand that talks to a running deployment shares.

use topics::Topics;

#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Bootstrap servers of the Kafka cluster.
    #[arg(long, env = "SKUFLOW_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Prefix of skuflow's topic names.
    #[arg(long, env = "SKUFLOW_TOPIC_PREFIX", default_value = "skuflow")]
    pub topic_prefix: String,
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
