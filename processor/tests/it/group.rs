//! The consumer-group member on the real dev broker: a partition paused when it is
//! revoked (the processor pauses partitions it restores or halts) is fetched again when
//! it comes back. librdkafka keeps a pause across revocation and re-assignment; before
//! the group context lifted it, a partition revoked mid-restore and assigned back was
//! never fetched again, and its commands were never answered.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use broker::DevBroker;
use broker::admin::ensure_topics;
use processor::group::{GroupContext, join};
use processor::{ProcessorConfig, topic_specs};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use topics::Topic;

const WITHIN: Duration = Duration::from_secs(90);

fn assigned(consumer: &BaseConsumer<GroupContext>) -> BTreeSet<i32> {
    consumer.assignment().unwrap().elements().iter().map(|e| e.partition()).collect()
}

/// Poll `members` until `done` holds of their assignments; panics after [`WITHIN`].
fn poll_until(
    members: &[&BaseConsumer<GroupContext>],
    what: &str,
    done: impl Fn(&[BTreeSet<i32>]) -> bool,
) {
    let deadline = Instant::now() + WITHIN;
    loop {
        for m in members {
            if let Some(Ok(msg)) = m.poll(Duration::from_millis(50)) {
                panic!("nothing was produced yet, got offset {}", msg.offset());
            }
        }
        let now: Vec<BTreeSet<i32>> = members.iter().map(|m| assigned(m)).collect();
        if done(&now) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: assignments still {now:?}");
    }
}

#[test]
fn a_partition_paused_when_revoked_is_fetched_when_it_comes_back() {
    super::logs();
    let broker = DevBroker::start().expect("dev broker starts");
    let b = broker.bootstrap();
    let topics = topics::Topics::default();
    ensure_topics(&b, &topic_specs(&topics, 2, 1)).unwrap();
    let commands = topics.name(Topic::Commands);
    let dir = tempfile::tempdir().unwrap();
    let config = |instance: &str| {
        let mut c = ProcessorConfig::new(&b, instance, dir.path());
        c.group_id = "paused-group".into();
        c.session_timeout = Duration::from_secs(6);
        c
    };

    // A owns both partitions and pauses them, as it does while restoring them.
    let a = join(&config("a"), &commands).unwrap();
    poll_until(&[&a], "a owns both", |now| now[0].len() == 2);
    a.pause(&a.assignment().unwrap()).unwrap();
    a.context().take_revoked();

    // B joins and takes one; B leaves and the partition comes back to A. (B is a
    // dynamic member, which says it leaves; the dev broker does not expire a closed
    // static member's session.)
    let b_member: BaseConsumer<GroupContext> = broker::client::consumer_config(&b, "paused-group")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create_with_context(GroupContext::new(commands.clone(), "test".into()))
        .unwrap();
    b_member.subscribe(&[&commands]).unwrap();
    poll_until(&[&a, &b_member], "b takes one", |now| now[0].len() == 1 && now[1].len() == 1);
    let moved: Vec<i32> = a.context().take_revoked().into_iter().collect();
    assert_eq!(moved.len(), 1, "one partition moved to b");
    drop(b_member);
    poll_until(&[&a], "the partition comes back to a", |now| now[0].len() == 2);

    // A record on each partition: the one that came back is delivered, the one that
    // stayed (still paused by A) is not.
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker::client::producer_config(&b).create().unwrap();
    for p in 0..2 {
        producer
            .send(BaseRecord::to(&commands).partition(p).key("k").payload("v"))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let deadline = Instant::now() + WITHIN;
    let got = loop {
        if let Some(msg) = a.poll(Duration::from_millis(100)) {
            break msg.unwrap().partition();
        }
        assert!(Instant::now() < deadline, "partition {moved:?} came back to a, still paused");
    };
    assert_eq!(got, moved[0], "only the partition that came back is fetched");
}

/// The coordinator's description of a settled two-member group (`membership`) lists
/// each member under its own client id with the partitions it holds: nothing to find;
/// and a member that held other partitions than it was given would be found.
#[test]
fn the_coordinator_describes_a_settled_group_as_its_members_hold_it() {
    use processor::membership::{Finding, describe, judge};
    super::logs();
    let broker = DevBroker::start().expect("dev broker starts");
    let b = broker.bootstrap();
    let topics = topics::Topics::default();
    ensure_topics(&b, &topic_specs(&topics, 4, 1)).unwrap();
    let commands = topics.name(Topic::Commands);
    let dir = tempfile::tempdir().unwrap();
    let config = |instance: &str| {
        let mut c = ProcessorConfig::new(&b, instance, dir.path());
        c.group_id = "described-group".into();
        c
    };
    let a = join(&config("a"), &commands).unwrap();
    let b_member = join(&config("b"), &commands).unwrap();
    poll_until(&[&a, &b_member], "two members split four partitions", |now| {
        now[0].len() == 2 && now[1].len() == 2
    });
    let described = || describe(&a, "described-group", &commands, Duration::from_secs(5)).unwrap();
    poll_until(&[&a, &b_member], "the description matches what each member holds", |holds| {
        described().is_some_and(|view| {
            [&a, &b_member]
                .iter()
                .zip(holds)
                .all(|(m, h)| judge(&view, m.context().client_id(), h, 4).is_none())
        })
    });
    // Settled: read once more for what the description says.
    let holds = [assigned(&a), assigned(&b_member)];
    let view = described().expect("described");
    assert_eq!(view.state, "Stable");
    assert_eq!(view.members.len(), 2, "{view:?}");
    // The description carries the assignments: a holds what the coordinator gave b.
    assert_eq!(
        judge(&view, a.context().client_id(), &holds[1], 4),
        Some(Finding::Mine { holds: holds[1].clone(), given: holds[0].clone() })
    );
}
