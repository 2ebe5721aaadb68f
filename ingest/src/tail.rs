//! Follows the replies topic from its end (read_committed) on a thread of its own and
//! feeds [`Replies`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::cache::Replies;

pub struct Tail {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Tail {
    pub fn start(
        bootstrap: &str,
        topic: &str,
        replies: Arc<Replies>,
    ) -> Result<Self, crate::IngestError> {
        let consumer: BaseConsumer =
            broker::client::consumer_config(bootstrap, "skuflow-replies-tail").create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len() as i32);
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::End)?;
        }
        consumer.assign(&tpl)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("replies-tail".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        if let Some((at, reply)) = crate::reply_at(m.payload()) {
                            replies.insert_from_tail(at, Arc::new(reply));
                        }
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "replies tail"),
                    None => {}
                }
            }
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
