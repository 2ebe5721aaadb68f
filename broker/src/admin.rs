//! Creating topics idempotently: create what is missing, accept what exists with the
//! same partition count, refuse what exists with another (repartitioning would move
//! keys between partitions and break the one-writer-per-SKU rule).

use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::kafka;

/// A topic to ensure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    pub configs: Vec<(String, String)>,
}

/// What `ensure_topics` found for one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Created,
    Existed,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("could not create topic {topic}: {code}")]
    Create { topic: String, code: RDKafkaErrorCode },
    #[error("topic {topic} exists with {have} partitions, skuflow is configured for {want}")]
    PartitionMismatch { topic: String, want: i32, have: usize },
}

pub fn ensure_topics(
    bootstrap: &str,
    specs: &[TopicSpec],
) -> Result<Vec<(String, Ensured)>, AdminError> {
    let admin = kafka::admin(bootstrap)?;
    let new: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            let topic =
                NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(s.replication));
            s.configs.iter().fold(topic, |t, (k, v)| t.set(k, v))
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics(&new, &opts))?;
    let mut out = Vec::with_capacity(specs.len());
    for (spec, result) in specs.iter().zip(results) {
        let ensured = match result {
            Ok(_) => Ensured::Created,
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let have = kafka::partition_count(bootstrap, &spec.name)?;
                if have != spec.partitions as usize {
                    return Err(AdminError::PartitionMismatch {
                        topic: spec.name.clone(),
                        want: spec.partitions,
                        have,
                    });
                }
                Ensured::Existed
            }
            Err((_, code)) => return Err(AdminError::Create { topic: spec.name.clone(), code }),
        };
        out.push((spec.name.clone(), ensured));
    }
    Ok(out)
}

/// Partitions of `topic` (0: it does not exist).
pub fn partition_count(bootstrap: &str, topic: &str) -> Result<usize, KafkaError> {
    kafka::partition_count(bootstrap, topic)
}

/// The value of one topic-level config as the broker describes it (`None`: not reported).
pub fn topic_config(bootstrap: &str, topic: &str, key: &str) -> Result<Option<String>, KafkaError> {
    kafka::topic_config(bootstrap, topic, key)
}

/// Why the commands topic `topic` cannot be used as skuflow's clock, if it cannot: its
/// records must be stamped by the broker (`message.timestamp.type=LogAppendTime`), or a
/// producer's clock (CreateTime) would be the state machine's, and a record stamped two
/// days ahead would expire every hold on its partition.
pub fn check_log_append_time(bootstrap: &str, topic: &str) -> Result<(), String> {
    // The broker may be slow to answer while it starts or is loaded: a failed read is
    // tried again a few times before it counts.
    let mut read = topic_config(bootstrap, topic, "message.timestamp.type");
    for _ in 0..4 {
        if read.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        read = topic_config(bootstrap, topic, "message.timestamp.type");
    }
    match read {
        Ok(Some(t)) if t == "LogAppendTime" => Ok(()),
        Ok(found) => Err(format!(
            "topic {topic} has message.timestamp.type={}; skuflow needs LogAppendTime (the broker's \
             append time is the state machine's clock; with CreateTime any producer could move it). \
             Set it with: kafka-configs --alter --entity-type topics --entity-name {topic} \
             --add-config message.timestamp.type=LogAppendTime",
            found.as_deref().unwrap_or("(not reported)")
        )),
        Err(e) => Err(format!("could not read the configuration of topic {topic}: {e}")),
    }
}
