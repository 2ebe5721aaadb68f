//! Idempotent topic creation against the dev broker.

use broker::DevBroker;
use broker::admin::{AdminError, Ensured, TopicSpec, ensure_topics};

fn spec(name: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: name.into(),
        partitions,
        replication: 1,
        configs: vec![("cleanup.policy".into(), "compact".into())],
    }
}

#[test]
fn creates_what_is_missing_and_accepts_what_exists() {
    let broker = DevBroker::start().expect("dev broker starts");
    let b = broker.bootstrap();
    let first = ensure_topics(&b, &[spec("a", 3)]).unwrap();
    assert_eq!(first, [("a".to_owned(), Ensured::Created)]);
    let second = ensure_topics(&b, &[spec("a", 3), spec("b", 2)]).unwrap();
    assert_eq!(second, [("a".to_owned(), Ensured::Existed), ("b".to_owned(), Ensured::Created)]);
}

#[test]
fn refuses_an_existing_topic_with_another_partition_count() {
    let broker = DevBroker::start().expect("dev broker starts");
    let b = broker.bootstrap();
    ensure_topics(&b, &[spec("a", 3)]).unwrap();
    match ensure_topics(&b, &[spec("a", 4)]) {
        Err(AdminError::PartitionMismatch { topic, want: 4, have: 3 }) => assert_eq!(topic, "a"),
        other => panic!("expected a partition mismatch, got {other:?}"),
    }
}
