//! The baseline HTTP server: skuflow's reserve request and reply shapes, authentication
//! and problem+json (from the `api` crate), over a [`Store`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{HttpRequest, HttpResponse, web};
use api::dto::ReserveBody;
use api::problem::ApiError;
use api::routes::commands::idempotency_key;
use api::{ApiConfig, ApiKey};
use topics::{
    Allocation, LogTime, Outcome, Position, Rejection, Reply, ReservationId, Sku, WarehouseId,
};

use crate::backend::{PostgresStore, RedisStore, Reserved, Store};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Backend {
    Redis,
    Postgres,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    backend: Backend,
    /// `redis://127.0.0.1:6379`, or a PostgreSQL connection string
    /// (`host=127.0.0.1 port=5432 user=postgres dbname=postgres`).
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// SKUs `sku-0` .. `sku-{N-1}` are stocked at start.
    #[arg(long, default_value_t = 1000)]
    skus: usize,
    /// Units of each SKU at start.
    #[arg(long, default_value_t = 1_000_000_000)]
    stock: i64,
    /// HTTP worker threads (skuflow's API default is 2).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// PostgreSQL connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// `tenant:role:sha256-hex`, as `skuflow api --api-key`.
    #[arg(long = "api-key", value_parser = api::parse_key)]
    api_keys: Vec<ApiKey>,
}

struct State {
    store: Store,
    config: ApiConfig,
}

/// The one warehouse a baseline has (skuflow's replies name where units were taken).
const WAREHOUSE: &str = "main";

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut config = ApiConfig::new(args.bind, "");
    config.keys = args.api_keys.clone();
    actix_web::rt::System::new().block_on(async move {
        let store = match args.backend {
            Backend::Redis => {
                let redis = RedisStore::connect(&args.url).await?;
                redis.seed(args.skus, args.stock).await?;
                Store::Redis(redis)
            }
            Backend::Postgres => Store::Postgres(
                PostgresStore::connect(&args.url, args.connections, args.skus, args.stock).await?,
            ),
        };
        let state = web::Data::new(Arc::new(State { store, config }));
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(state.clone())
                .route("/v1/reservations", web::post().to(reserve))
                .route("/v1/availability/{sku}", web::get().to(availability))
                .route("/trivial", web::get().to(trivial))
        })
        .workers(args.workers.max(1))
        .backlog(4096)
        .bind(args.bind)?;
        let addr = server.addrs().first().copied().unwrap_or(args.bind);
        tracing::info!(backend = ?args.backend, "baseline listening on http://{addr}");
        server.run().await?;
        anyhow::Ok(())
    })
}

fn unavailable(e: anyhow::Error) -> ApiError {
    ApiError::Unavailable(e.to_string())
}

async fn reserve(
    req: HttpRequest,
    state: web::Data<Arc<State>>,
    body: web::Json<ReserveBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = api::auth::authenticate(&req, &state.config)?;
    let command_id = idempotency_key(&req)?;
    let sku = Sku::new(body.sku.clone()).map_err(|e| ApiError::BadRequest(format!("sku: {e}")))?;
    if body.quantity == 0 || body.quantity > state.config.max_quantity {
        return Err(ApiError::BadRequest("quantity out of range".into()));
    }
    let answer = state
        .store
        .reserve(caller.tenant.as_str(), sku.as_str(), command_id.as_str(), body.quantity)
        .await
        .map_err(unavailable)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let (offset, outcome) = match answer {
        Reserved::Held(seq) => (
            seq,
            Outcome::Reserved {
                reservation: ReservationId::new(sku.clone(), seq.max(0) as u64),
                quantity: body.quantity,
                allocations: vec![Allocation {
                    warehouse: WarehouseId::new(WAREHOUSE).unwrap_or_else(|_| unreachable!()),
                    quantity: body.quantity,
                }],
                expires_at: LogTime(now + body.ttl_ms.unwrap_or(topics::DEFAULT_MAX_TTL_MS)),
            },
        ),
        Reserved::Insufficient(available) => (
            0,
            Outcome::Rejected(Rejection::InsufficientStock {
                requested: body.quantity,
                available: available.max(0) as u64,
            }),
        ),
    };
    let reply = Reply {
        tenant: caller.tenant,
        command_id,
        position: Position { partition: 0, offset },
        at: LogTime(now),
        outcome,
    };
    api::routes::reply_response(&reply)
}

async fn availability(
    req: HttpRequest,
    state: web::Data<Arc<State>>,
    sku: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    api::auth::authenticate(&req, &state.config)?;
    match state.store.available(&sku).await.map_err(unavailable)? {
        Some(available) => Ok(HttpResponse::Ok()
            .json(serde_json::json!({ "sku": sku.as_str(), "available": available }))),
        None => Err(ApiError::NotFound),
    }
}

async fn trivial() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body("{}")
}
