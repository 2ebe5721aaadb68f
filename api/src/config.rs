//! The API's configuration, loaded once at start and passed explicitly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use topics::{TenantId, Topics};

use crate::jwks::{JwksError, KeySet};

/// What a credential may do. Tenancy: reservations and idempotency keys belong to a
/// tenant (another tenant's are `not_found`); stock is one catalog for the whole
/// deployment, which every tenant reserves from and reads. So there is no tenant admin:
/// `Admin` is the catalog's operator, whose stock commands change a SKU for every tenant
/// (the tenant of an admin credential only scopes its idempotency keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reserve, release, purchase, extend its tenant's reservations; read availability.
    Client,
    /// Everything a client may, and stock-keeping (restock, adjust, set) of any SKU: the
    /// deployment's catalog operator. Issue it to the operator, never to a tenant.
    Admin,
}

/// An API key as stored: only the SHA-256 of the key, never the key.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub tenant: TenantId,
    pub role: Role,
    pub sha256: [u8; 32],
}

/// JWT verification. Keys: an HS256 secret, or a JWKS (RS256 and ES256 public keys, the
/// production option: the API holds no key that can mint tokens). The algorithm is pinned
/// by the key, never taken from the token alone. `exp`, `aud` and `sub` are required,
/// `iss` when configured, `nbf` checked when present; 60 s of leeway for clock skew on
/// `exp` and `nbf` ([`JWT_LEEWAY_SECS`]). The tenant is the `tenant` claim, the role the
/// `role` claim.
#[derive(Clone)]
pub struct JwtConfig {
    pub(crate) keys: JwtKeys,
    pub audience: String,
    pub issuer: Option<String>,
}

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const JWT_LEEWAY_SECS: u64 = 60;

#[derive(Clone)]
pub(crate) enum JwtKeys {
    Hs256(Vec<u8>),
    /// RS256 and ES256 public keys, from a file or a URL.
    Jwks(Arc<KeySet>),
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            JwtKeys::Hs256(_) => "HS256 secret".to_owned(),
            JwtKeys::Jwks(k) => format!("{k:?}"),
        };
        f.debug_struct("JwtConfig")
            .field("keys", &keys)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// The shortest HS256 secret accepted: 32 bytes, the hash's own size (RFC 7518 §3.2).
/// A short or empty secret would let anyone mint tokens for any tenant.
pub const MIN_JWT_SECRET: usize = 32;

impl JwtConfig {
    /// HS256 with `secret` (at least [`MIN_JWT_SECRET`] bytes).
    pub fn new(secret: &[u8], audience: impl Into<String>) -> Result<Self, String> {
        if secret.len() < MIN_JWT_SECRET {
            return Err(format!(
                "the JWT secret has {} bytes; at least {MIN_JWT_SECRET} are required",
                secret.len()
            ));
        }
        let keys = JwtKeys::Hs256(secret.to_vec());
        Ok(Self { keys, audience: audience.into(), issuer: None })
    }

    /// The public keys of a JWKS document (see [`crate::jwks`]).
    pub fn jwks(json: &str, audience: impl Into<String>) -> Result<Self, JwksError> {
        let keys = JwtKeys::Jwks(KeySet::fixed(json)?);
        Ok(Self { keys, audience: audience.into(), issuer: None })
    }

    /// The public keys fetched from `url` now and every `refresh` (see [`crate::jwks`]).
    pub fn jwks_url(
        url: &str,
        refresh: Duration,
        audience: impl Into<String>,
    ) -> Result<Self, JwksError> {
        let keys = JwtKeys::Jwks(KeySet::from_url(url, refresh)?);
        Ok(Self { keys, audience: audience.into(), issuer: None })
    }

    /// The key set when the keys come from a URL (its fetch counter is a metric).
    pub(crate) fn key_set(&self) -> Option<&Arc<KeySet>> {
        match &self.keys {
            JwtKeys::Jwks(set) => Some(set),
            JwtKeys::Hs256(_) => None,
        }
    }

    /// Require `iss` to be `issuer`.
    pub fn with_issuer(mut self, issuer: Option<String>) -> Self {
        self.issuer = issuer;
        self
    }
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub bind: SocketAddr,
    pub bootstrap: String,
    pub topics: Topics,
    pub keys: Vec<ApiKey>,
    pub jwt: Option<JwtConfig>,
    /// How long a command request waits for its reply unless `?wait=` says otherwise.
    pub wait_default: Duration,
    /// Upper bound of `?wait=`.
    pub wait_max: Duration,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// How long an authenticated request's body may take to arrive whole.
    pub body_timeout: Duration,
    /// Open connections per HTTP worker; beyond it, new ones wait to be accepted.
    pub max_connections: usize,
    /// Open connections per client address (0: no limit); beyond it a connection's first
    /// request is answered 429 `too-many-connections` and the connection closed.
    pub max_connections_per_address: usize,
    /// Requests per second per credential (token bucket refill) and the bucket size.
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    /// Commands of one credential waiting for their replies at once.
    pub max_in_flight: usize,
    /// Largest quantity one command may ask for.
    pub max_quantity: u32,
    /// Longest hold a client may ask for, in milliseconds.
    pub max_ttl_ms: u64,
    /// Most units an admin may set on hand in one row, or move with one adjust.
    pub max_stock: u64,
    /// Most warehouses a priority order may name.
    pub max_warehouses: u32,
    pub workers: usize,
    /// Replies each instance keeps in memory for waiters and polls by key (~0.5 KB each);
    /// older ones are found in Kafka with the poll URL's `at`.
    pub reply_cache: usize,
    /// Searches for old replies (polls of commands older than the reply cache) queued at
    /// once; one searcher per instance works through them.
    pub lookup_queue: usize,
    /// Finished (released, purchased, expired) reservations the reservations view keeps
    /// readable; the oldest are forgotten first (their reads answer 404).
    pub keep_finished: usize,
    /// Start a trace for commands whose request brings no `traceparent` (on when spans
    /// are exported; a request that brings one is always traced).
    pub start_traces: bool,
    /// How envelopes are encoded: JSON, or Avro through a schema registry (registered
    /// before the API starts).
    pub format: topics::codec::Format,
}

/// Finished reservations kept by the reservations view (about 200 bytes each).
pub const DEFAULT_KEEP_FINISHED: usize = 1_000_000;

impl ApiConfig {
    pub fn new(bind: SocketAddr, bootstrap: impl Into<String>) -> Self {
        Self {
            bind,
            bootstrap: bootstrap.into(),
            topics: Topics::default(),
            keys: Vec::new(),
            jwt: None,
            wait_default: Duration::from_secs(5),
            wait_max: Duration::from_secs(30),
            body_limit: 16 * 1024,
            body_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_connections_per_address: 1_000,
            rate_per_sec: 1000.0,
            rate_burst: 2000.0,
            max_in_flight: 1000,
            max_quantity: 10_000,
            max_ttl_ms: topics::DEFAULT_MAX_TTL_MS,
            max_stock: topics::DEFAULT_MAX_STOCK,
            max_warehouses: topics::DEFAULT_MAX_WAREHOUSES,
            workers: 2,
            reply_cache: ingest::DEFAULT_REPLY_CACHE,
            lookup_queue: ingest::DEFAULT_LOOKUP_QUEUE,
            keep_finished: DEFAULT_KEEP_FINISHED,
            start_traces: false,
            format: topics::codec::Format::Json,
        }
    }
}

impl ApiConfig {
    /// How long to wait for a reply or a position: `?wait=` in milliseconds, or the
    /// default, never more than the largest.
    pub fn wait(&self, asked_ms: Option<u64>) -> Duration {
        asked_ms.map(Duration::from_millis).unwrap_or(self.wait_default).min(self.wait_max)
    }
}

/// Parse `tenant:role:sha256hex` (role `client` or `admin`).
pub fn parse_key(spec: &str) -> Result<ApiKey, String> {
    let mut parts = spec.trim().split(':');
    let (Some(tenant), Some(role), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("{spec:?}: expected tenant:role:sha256hex"));
    };
    let tenant = TenantId::new(tenant).map_err(|e| format!("{spec:?}: {e}"))?;
    let role = match role {
        "client" => Role::Client,
        "admin" => Role::Admin,
        other => return Err(format!("{spec:?}: role {other:?} is not client or admin")),
    };
    let bytes = hex::decode(hash).map_err(|e| format!("{spec:?}: {e}"))?;
    let sha256 = bytes.try_into().map_err(|_| format!("{spec:?}: the hash must be 32 bytes"))?;
    Ok(ApiKey { tenant, role, sha256 })
}

/// The stored form of a key: its SHA-256.
pub fn hash_key(key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).into()
}
