//! The API service: `Api::new(config)` connects to Kafka and builds the read models,
//! `run()` serves HTTP until the server handle stops it.

use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use ingest::{Ingest, IngestConfig};
use prometheus::Registry;
use topics::Topic;

use crate::config::ApiConfig;
use crate::limits::Limits;
use crate::problem::{bad_request, body_error};
use crate::routes::{admin, commands, ops, reads};
use crate::state::{AppState, Metrics};
use crate::views::{AvailabilityView, ReservationsView};
use ingest::follow::Follow;

#[derive(Debug, thiserror::Error)]
pub enum ApiStartError {
    #[error("ingest: {0}")]
    Ingest(#[from] ingest::IngestError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("bind {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    /// The API would run with no partition to send commands to or read from.
    #[error(
        "topic {0} does not exist on the brokers: is --topic-prefix right, and have skuflow's topics been created (skuflow up creates them; on a real cluster the operator does)?"
    )]
    NoTopic(String),
}

#[derive(Debug)]
pub struct Api {
    state: web::Data<AppState>,
}

impl Api {
    /// Connect to Kafka (blocking): the ingest producer and replies tail, and the
    /// followers of the availability and events topics.
    pub fn new(config: ApiConfig, registry: Registry) -> Result<Self, ApiStartError> {
        let commands = config.topics.name(Topic::Commands);
        let commands_partitions = broker::admin::partition_count(&config.bootstrap, &commands)?;
        if commands_partitions == 0 {
            return Err(ApiStartError::NoTopic(commands));
        }
        let mut ingest_config = IngestConfig::new(&config.bootstrap);
        ingest_config.topics = config.topics.clone();
        ingest_config.cache_capacity = config.reply_cache;
        ingest_config.lookup_queue = config.lookup_queue;
        ingest_config.format = config.format.clone();
        let metrics = Metrics::register(&registry)?;
        let follow = |topic: Topic, view: Arc<dyn ingest::follow::View>| {
            let topic = config.topics.name(topic);
            let undecodable = metrics.undecodable.with_label_values(&[topic.as_str()]);
            Follow {
                topic,
                from: rdkafka::Offset::Beginning,
                view,
                on_undecodable: Box::new(move || undecodable.inc()),
            }
        };
        let availability = Arc::new(AvailabilityView::new(config.format.clone()));
        let reservations =
            Arc::new(ReservationsView::new(config.keep_finished, config.format.clone()));
        // The views' topics are read by the replies tail's consumer.
        let (ingest, [availability_follower, reservations_follower]) = Ingest::with_follows(
            ingest_config,
            [
                follow(Topic::Availability, availability.clone()),
                follow(Topic::Events, reservations.clone()),
            ],
        )?;
        if let Some(set) = config.jwt.as_ref().and_then(|j| j.key_set()) {
            registry.register(Box::new(set.fetches.clone()))?;
        }
        let limits =
            Arc::new(Limits::new(config.rate_per_sec, config.rate_burst, config.max_in_flight));
        let state = AppState {
            openapi: crate::openapi::document(&config),
            config,
            ingest,
            availability,
            availability_follower,
            reservations,
            _reservations_follower: reservations_follower,
            commands_partitions,
            limits,
            registry,
            metrics,
        };
        Ok(Self { state: web::Data::new(state) })
    }

    /// Bind and serve; returns the server (a future) and the address it listens on.
    pub fn serve(self) -> Result<(actix_web::dev::Server, std::net::SocketAddr), ApiStartError> {
        let state = self.state.clone();
        let bind = state.config.bind;
        let body_limit = state.config.body_limit;
        let body_timeout = state.config.body_timeout;
        let workers = state.config.workers;
        let max_connections = state.config.max_connections;
        let per_address = crate::conns::PerAddress::new(state.config.max_connections_per_address);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_limit)
                        .error_handler(move |e, _| body_error(e, body_limit, body_timeout)),
                )
                .app_data(web::PayloadConfig::new(body_limit))
                .app_data(web::PathConfig::default().error_handler(|e, _| bad_request(e)))
                .app_data(web::QueryConfig::default().error_handler(|e, _| bad_request(e)))
                .wrap(crate::gate::Gate)
                .wrap(crate::count::CountResponses)
                .route("/v1/reservations", web::post().to(commands::reserve))
                .route("/v1/reservations/{id}", web::get().to(reads::reservation))
                .route("/v1/reservations/{id}/release", web::post().to(commands::release))
                .route("/v1/reservations/{id}/purchase", web::post().to(commands::purchase))
                .route("/v1/reservations/{id}/extend", web::post().to(commands::extend))
                .route("/v1/commands/{key}", web::get().to(reads::command))
                .route("/v1/availability/{sku}", web::get().to(reads::availability))
                .route("/v1/admin/stock/{sku}/{warehouse}/restock", web::post().to(admin::restock))
                .route("/v1/admin/stock/{sku}/{warehouse}/adjust", web::post().to(admin::adjust))
                .route("/v1/admin/stock/{sku}/{warehouse}/set", web::post().to(admin::set))
                .route("/openapi.json", web::get().to(ops::openapi))
                .route("/metrics", web::get().to(ops::metrics))
                .route("/healthz", web::get().to(ops::healthz))
                .route("/readyz", web::get().to(ops::readyz))
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(crate::problem::ApiError::NotFound)
                }))
        })
        .on_connect(move |conn, data| per_address.on_connect(conn, data))
        .workers(workers)
        // Request heads must arrive within 5 s (actix's default, stated); bodies within
        // `body_timeout` (the gate); at most this many connections per worker.
        .client_request_timeout(std::time::Duration::from_secs(5))
        .max_connections(max_connections)
        .disable_signals()
        .bind(bind)
        .map_err(|e| ApiStartError::Bind(bind, e))?;
        let addr = server.addrs().first().copied().unwrap_or(bind);
        Ok((server.run(), addr))
    }
}
