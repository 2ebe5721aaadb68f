//! The HTTP front door (actix-web): authenticates (API keys, JWT), validates, rate-limits
//! and enqueues commands through `ingest`, waits for or lets clients poll their replies,
//! and serves availability and reservations from read models fed by Kafka.
//! Contract: the served OpenAPI document (`/openapi.json`). Every error is problem+json with a stable type ([`problem`]).

pub mod auth;
pub mod config;
pub mod conns;
mod count;
pub mod dto;
mod gate;
pub mod jwks;
pub mod limits;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod server;
pub mod state;
pub mod trace;
pub mod views;

pub use config::{ApiConfig, ApiKey, JwtConfig, Role, hash_key, parse_key};
pub use server::{Api, ApiStartError};
