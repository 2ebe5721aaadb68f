//! One follower, several topics: each record reaches its own topic's view, and a
//! partition whose log ends with an aborted transaction is caught up, its progress at
//! the partition's end (past the aborted records and the markers).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::DevBroker;
use broker::admin::{TopicSpec, ensure_topics};
use ingest::follow::{Follow, Follower, View};
use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Records seen by a view: (partition, payload).
#[derive(Default)]
struct Seen(Mutex<Vec<(i32, String)>>);

impl View for Seen {
    fn apply(
        &self,
        partition: i32,
        payload: Option<&[u8]>,
    ) -> Result<(), topics::codec::DecodeError> {
        let text = String::from_utf8_lossy(payload.unwrap_or_default()).into_owned();
        self.0.lock().unwrap().push((partition, text));
        Ok(())
    }
}

fn send(producer: &BaseProducer, topic: &str, partition: i32, payload: &str) {
    producer.send(BaseRecord::<(), str>::to(topic).partition(partition).payload(payload)).unwrap();
}

#[test]
fn one_follower_feeds_each_topic_its_own_view_and_gets_past_an_aborted_tail() {
    let broker = DevBroker::start().unwrap();
    let b = broker.bootstrap();
    let spec = |name: &str| TopicSpec {
        name: name.to_owned(),
        partitions: 2,
        replication: 1,
        configs: Vec::new(),
    };
    ensure_topics(&b, &[spec("first"), spec("second")]).unwrap();
    let producer: BaseProducer = broker::client::producer_config(&b)
        .set("transactional.id", "follow-test")
        .create()
        .unwrap();
    let wait = Duration::from_secs(30);
    producer.init_transactions(wait).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, "first", 0, "a0");
    send(&producer, "first", 1, "a1");
    send(&producer, "second", 0, "b0");
    producer.commit_transaction(wait).unwrap();
    // The last transaction on second/0 is aborted: nothing of it may be seen, and the
    // partition must still count as caught up.
    producer.begin_transaction().unwrap();
    send(&producer, "second", 0, "never");
    producer.flush(wait).unwrap();
    producer.abort_transaction(wait).unwrap();

    let probe: BaseConsumer = broker::client::consumer_config(&b, "probe").create().unwrap();
    let end = |topic: &str, p: i32| probe.fetch_watermarks(topic, p, wait).unwrap().1;
    let (first, second) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
    let follow = |topic: &str, view: Arc<Seen>| Follow {
        topic: topic.to_owned(),
        from: Offset::Beginning,
        view,
        on_undecodable: Box::new(|| {}),
    };
    let [f1, f2] = Follower::start(
        &b,
        "follow-test",
        [follow("first", first.clone()), follow("second", second.clone())],
    )
    .unwrap();
    // Progress: every partition at its end, the aborted tail included, and then each
    // counts as caught up.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for (f, topic) in [(&f1, "first"), (&f2, "second")] {
        let want = vec![end(topic, 0), end(topic, 1)];
        let mut progress = f.progress();
        rt.block_on(async {
            let reached =
                tokio::time::timeout(wait, progress.wait_for(|p| *p == want)).await.is_ok();
            assert!(reached, "{topic} at {:?}, its ends {want:?}", *progress.borrow());
        });
        assert_eq!(f.behind(), Vec::<i32>::new(), "{topic}");
    }
    assert!(end("second", 0) > 2, "the aborted record and the markers are in the log");
    let mut seen = first.0.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, [(0, "a0".to_owned()), (1, "a1".to_owned())]);
    assert_eq!(*second.0.lock().unwrap(), [(0, "b0".to_owned())]);
}
