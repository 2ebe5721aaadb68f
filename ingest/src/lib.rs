//! The producer side of the pipeline: the one library that puts commands on the commands
//! topic and correlates their replies. The API uses it; checkout producers that talk to
//! Kafka directly embed it; `skuflow ingest` uses it for bulk stock loads.
//!
//! - [`Ingest::submit`] enqueues a request with an idempotent producer (key = SKU, the
//!   Java-compatible murmur2 partitioner every skuflow producer uses) and resolves once
//!   the broker has it, with the record's position. A full local queue is
//!   [`IngestError::Backpressure`], never a silent drop.
//! - [`Ingest::reply`] resolves with the reply to the record at a position: the reply's
//!   envelope id is that position (a retry's reply is the original's body under the
//!   retry's own id). A tail of the replies topic feeds waiters and a bounded cache;
//!   [`Ingest::lookup`] finds older replies in Kafka itself, so any instance can answer
//!   for any command within the topic's retention, after restarts too.

pub mod bulk;
mod cache;
pub mod follow;
mod lookup;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use topics::codec::{DecodeError, Format};
use topics::{
    Envelope, LogCommand, Position, Reply, Request, TRACE_HEADER, Topic, Topics, TraceContext,
};

pub use cache::Replies;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The producer's local queue is full: retry later. Nothing was enqueued.
    #[error("the producer queue is full")]
    Backpressure,
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("encode: {0}")]
    Encode(#[from] topics::codec::EncodeError),
    /// The queue of reply searches is full: retry later.
    #[error("too many reply lookups queued")]
    Busy,
    /// A search for an old reply took longer than its bound.
    #[error("the reply search timed out")]
    LookupTimeout,
    /// A part of the client stopped before it answered (its thread ended, or the
    /// producer was dropped with the record in its queue).
    #[error("{0} stopped before it answered")]
    Gone(&'static str),
    /// A thread of the client could not be started.
    #[error("starting a thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Replies kept in memory for waiters and polls (about 0.5 KB each).
pub const DEFAULT_REPLY_CACHE: usize = 200_000;
/// Searches for old replies queued at once.
pub const DEFAULT_LOOKUP_QUEUE: usize = 64;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub bootstrap: String,
    pub topics: Topics,
    /// Replies kept in memory for waiters and polls.
    pub cache_capacity: usize,
    /// librdkafka's local queue bound (messages); beyond it submit answers Backpressure.
    pub queue_capacity: usize,
    /// How long the broker may take to acknowledge a command.
    pub delivery_timeout: Duration,
    /// Searches for old replies queued at once (one searcher per instance); beyond it
    /// [`Ingest::lookup`] answers [`IngestError::Busy`].
    pub lookup_queue: usize,
    /// How envelopes are encoded (the deployment's format).
    pub format: Format,
}

impl IngestConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            topics: Topics::default(),
            cache_capacity: DEFAULT_REPLY_CACHE,
            queue_capacity: 100_000,
            delivery_timeout: Duration::from_secs(30),
            lookup_queue: DEFAULT_LOOKUP_QUEUE,
            format: Format::Json,
        }
    }
}

/// Where an accepted command landed in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub position: Position,
}

#[derive(Clone)]
pub struct Ingest {
    /// The producer and its generation: an idempotent producer that failed fatally (a
    /// broker that lost its producer state answers out-of-order sequence numbers after a
    /// restart) never sends again, so it is replaced by a fresh one.
    producer: Arc<std::sync::RwLock<(u64, FutureProducer)>>,
    commands_topic: Arc<str>,
    replies: Arc<Replies>,
    config: Arc<IngestConfig>,
    _tail: Arc<follow::Follower>,
    lookups: Arc<lookup::Lookups>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("bootstrap", &self.config.bootstrap).finish_non_exhaustive()
    }
}

impl Ingest {
    /// Start the producer and the replies tail. Blocking (metadata lookups).
    pub fn new(config: IngestConfig) -> Result<Self, IngestError> {
        Ok(Self::with_follows(config, [])?.0)
    }

    /// [`Ingest::new`], and `follows` read by the replies tail's consumer: one fetching
    /// client for all of them. Returns their followers in the order given.
    pub fn with_follows<const N: usize>(
        config: IngestConfig,
        follows: [follow::Follow; N],
    ) -> Result<(Self, [follow::Follower; N]), IngestError> {
        let producer = Arc::new(std::sync::RwLock::new((0, Self::create_producer(&config)?)));
        let replies = Arc::new(Replies::new(config.cache_capacity));
        let tail = follow::Follow {
            topic: config.topics.name(Topic::Replies),
            from: rdkafka::Offset::End,
            view: Arc::new(RepliesView(replies.clone(), config.format.clone())),
            on_undecodable: Box::new(|| {}),
        };
        let (tail, followers) =
            follow::Follower::start_with(&config.bootstrap, "skuflow-follower", tail, follows)?;
        let lookups = lookup::Lookups::start(
            &config.bootstrap,
            &config.topics.name(Topic::Replies),
            config.lookup_queue,
            config.format.clone(),
        )?;
        let ingest = Self {
            producer,
            commands_topic: config.topics.name(Topic::Commands).into(),
            replies,
            config: Arc::new(config),
            _tail: Arc::new(tail),
            lookups: Arc::new(lookups),
        };
        Ok((ingest, followers))
    }

    fn create_producer(config: &IngestConfig) -> Result<FutureProducer, KafkaError> {
        broker::client::producer_config(&config.bootstrap)
            .set("enable.idempotence", "true")
            // A command waits for its reply: 1 ms of lingering, not 5. Under load
            // librdkafka still batches what queues while a request is in flight.
            .set("linger.ms", "1")
            .set("queue.buffering.max.messages", config.queue_capacity.to_string())
            .set("message.timeout.ms", config.delivery_timeout.as_millis().to_string())
            .create()
    }

    fn current(&self) -> (u64, FutureProducer) {
        self.producer.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Replace producer `generation` if it failed fatally (once, whoever notices first).
    fn replace_if_fatal(&self, generation: u64, producer: &FutureProducer) {
        use rdkafka::producer::Producer;
        let Some((code, reason)) = producer.client().fatal_error() else { return };
        let mut current = self.producer.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.0 != generation {
            return;
        }
        match Self::create_producer(&self.config) {
            Ok(fresh) => {
                tracing::warn!(?code, %reason, "command producer failed fatally; replaced it");
                *current = (generation + 1, fresh);
            }
            Err(e) => {
                tracing::warn!(error = %e, "command producer failed fatally and could not be replaced yet")
            }
        }
    }

    /// Enqueue `request`; resolves when the broker has acknowledged it.
    pub async fn submit(&self, request: &Request) -> Result<Accepted, IngestError> {
        self.submit_traced(request, None).await
    }

    /// [`Ingest::submit`], with `trace` in the record's `traceparent` header: the
    /// processor copies it onto the command's reply and events.
    pub async fn submit_traced(
        &self,
        request: &Request,
        trace: Option<TraceContext>,
    ) -> Result<Accepted, IngestError> {
        let payload = self
            .config
            .format
            .encode(Topic::Commands, &Envelope::command(LogCommand::Request(request.clone())))?;
        let key = topics::keys::command_key(request.command.sku());
        let traceparent = trace.map(|t| t.to_string());
        let mut record = FutureRecord::to(&self.commands_topic).key(key).payload(&payload);
        if let Some(value) = &traceparent {
            record = record.headers(rdkafka::message::OwnedHeaders::new().insert(
                rdkafka::message::Header { key: TRACE_HEADER, value: Some(value.as_bytes()) },
            ));
        }
        let (generation, producer) = self.current();
        // Never wait for queue space: a full queue is the caller's signal to back off.
        let delivery = producer.send_result(record).map_err(|(e, _)| {
            self.replace_if_fatal(generation, &producer);
            match e {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                    IngestError::Backpressure
                }
                e => IngestError::Kafka(e),
            }
        })?;
        let result = match delivery.await {
            Ok(Ok(delivered)) => Ok(Accepted {
                position: Position { partition: delivered.partition, offset: delivered.offset },
            }),
            Ok(Err((e, _))) => Err(IngestError::Kafka(e)),
            Err(_) => Err(IngestError::Gone("the producer")),
        };
        if result.is_err() {
            self.replace_if_fatal(generation, &producer);
        }
        result
    }

    /// The reply to the command record at `at`, waiting up to `wait` for it to be
    /// published. `None` when it has not come within `wait`: a fresh command's reply is
    /// not in Kafka either, so no lookup is made (use [`Ingest::lookup`] for old ones).
    pub async fn reply(
        &self,
        at: Position,
        wait: Duration,
    ) -> Result<Option<Arc<Reply>>, IngestError> {
        let waiter = self.replies.waiter(at);
        if let Some(reply) = waiter.ready() {
            return Ok(Some(reply));
        }
        if let Ok(Some(reply)) = tokio::time::timeout(wait, waiter.wait()).await {
            return Ok(Some(reply));
        }
        Ok(self.replies.get(at))
    }

    /// Find the reply to the record at `at` in the replies topic (a binary search over
    /// the partition, whose replies are in command order). A found reply is returned, not
    /// cached: old replies looked up never push recent ones out of the cache.
    pub async fn lookup(&self, at: Position) -> Result<Option<Arc<Reply>>, IngestError> {
        if let Some(reply) = self.replies.get(at) {
            return Ok(Some(reply));
        }
        let answer = self.lookups.submit(at).ok_or(IngestError::Busy)?;
        let found = answer.await.map_err(|_| IngestError::Gone("the reply searcher"))??;
        Ok(found.map(Arc::new))
    }

    pub fn replies(&self) -> &Replies {
        &self.replies
    }
}

/// The replies tail's view: every reply into the cache, under the position it answers.
struct RepliesView(Arc<Replies>, Format);

impl follow::View for RepliesView {
    fn apply(&self, _partition: i32, payload: Option<&[u8]>) -> Result<(), DecodeError> {
        let (at, reply) = reply_at(&self.1, payload)?;
        self.0.insert_from_tail(at, Arc::new(reply));
        Ok(())
    }
}

/// The envelope id of a reply record, as the position of the command it answers.
pub(crate) fn reply_at(
    format: &Format,
    payload: Option<&[u8]>,
) -> Result<(Position, Reply), DecodeError> {
    let envelope = format.decode::<Reply>(payload)?;
    let id = envelope
        .id
        .ok_or_else(|| DecodeError::Malformed("a reply without its record id".into()))?;
    Ok((Position { partition: id.partition, offset: id.offset }, envelope.body))
}
