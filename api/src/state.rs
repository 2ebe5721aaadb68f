//! What every handler shares: the config, the ingest client, the read models, limits
//! and metrics.

use std::sync::Arc;

use ingest::Ingest;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use crate::config::ApiConfig;
use crate::limits::Limits;
use crate::views::{AvailabilityView, ReservationsView};
use ingest::follow::Follower;

#[derive(Debug)]
pub struct AppState {
    pub config: ApiConfig,
    /// The served OpenAPI document (built from the config once).
    pub openapi: serde_json::Value,
    pub ingest: Ingest,
    pub availability: Arc<AvailabilityView>,
    pub availability_follower: Follower,
    pub reservations: Arc<ReservationsView>,
    pub _reservations_follower: Follower,
    /// Partitions of the commands topic when the instance started.
    pub commands_partitions: usize,
    pub limits: Arc<Limits>,
    pub registry: Registry,
    pub metrics: Metrics,
}

impl AppState {
    /// Partitions of skuflow's topics (they all have the commands topic's count).
    pub fn partitions(&self) -> i32 {
        self.availability_follower.progress().borrow().len() as i32
    }

    /// Why this instance cannot serve reads yet, if it cannot: a followed topic is
    /// missing or has another partition count than the commands topic, or a view has not
    /// caught up in every partition with where it ended when the instance started (a restarted
    /// instance would answer 404 for SKUs and reservations that exist).
    pub fn not_ready(&self) -> Option<String> {
        let topics = &self.config.topics;
        let want = self.commands_partitions;
        for (topic, f) in [
            (topics::Topic::Availability, &self.availability_follower),
            (topics::Topic::Events, &self._reservations_follower),
        ] {
            let name = topics.name(topic);
            if f.partitions() != want {
                return Some(format!(
                    "topic {name} has {} partitions, the commands topic {want}",
                    f.partitions()
                ));
            }
            let behind = f.behind();
            if !behind.is_empty() {
                return Some(format!("catching up with topic {name}: partitions {behind:?}"));
            }
        }
        None
    }
}

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Responses by route and status.
    pub responses: IntCounterVec,
    /// Seconds from request to response, by route (a command's includes its wait).
    pub latency: HistogramVec,
    /// Replies searched for in Kafka (polls for commands older than what this instance
    /// holds in memory). A poll of a pending command never counts here.
    pub lookups: IntCounter,
    /// Records the views could not decode and skipped, by topic.
    pub undecodable: IntCounterVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let responses = IntCounterVec::new(
            Opts::new("skuflow_api_responses_total", "HTTP responses by route and status"),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("skuflow_api_request_seconds", "Request latency by route")
                .buckets(prometheus::exponential_buckets(0.000_25, 2.0, 16)?),
            &["route"],
        )?;
        let lookups = IntCounter::new(
            "skuflow_api_reply_lookups_total",
            "Replies searched for in the replies topic (polls older than the in-memory tail)",
        )?;
        registry.register(Box::new(responses.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        let undecodable = IntCounterVec::new(
            Opts::new(
                "skuflow_api_undecodable_records_total",
                "Records of the availability and events topics the views could not decode and skipped",
            ),
            &["topic"],
        )?;
        registry.register(Box::new(lookups.clone()))?;
        registry.register(Box::new(undecodable.clone()))?;
        Ok(Self { responses, latency, lookups, undecodable })
    }
}
