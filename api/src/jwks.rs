//! The identity provider's public keys (a JWKS, RFC 7517), from a file or fetched from a
//! URL and kept fresh.
//!
//! Only RSA keys (RS256) and P-256 keys (ES256) meant for signatures are taken; keys of
//! other kinds, algorithms or uses are skipped (logged), and a set without a usable key
//! is an error. Keys from a URL are fetched once at start (the API refuses to start if that
//! fails), then again every `refresh`, and sooner when a token names a `kid` the set does
//! not hold (a provider that rotates publishes the new key first): such a refetch happens
//! at most once every [`MIN_REFETCH`], so tokens with made-up `kid`s cannot make the API
//! hammer the provider. A failed refetch keeps the keys the API has and is logged and
//! counted (`skuflow_api_jwks_fetches_total{result}`).

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};
use prometheus::{IntCounterVec, Opts};

/// The least time between two fetches triggered by unknown `kid`s.
pub const MIN_REFETCH: Duration = Duration::from_secs(5);

/// How long one fetch of the JWKS may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest JWKS document accepted, in bytes.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// One usable key of the set.
#[derive(Clone)]
pub(crate) struct Key {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// The keys JWTs are verified with; shared by every worker and, for a URL, replaced by
/// the refresher thread.
pub struct KeySet {
    keys: RwLock<Arc<Vec<Key>>>,
    /// Wakes the refresher for an unknown `kid` (capacity one: misses coalesce).
    refetch: Option<SyncSender<()>>,
    /// Fetches by result (`ok`, `failed`); registered with the API's metrics.
    pub(crate) fetches: IntCounterVec,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.current().len())
            .field("from_url", &self.refetch.is_some())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("JWKS key {kid:?}: {source}")]
    Key { kid: Option<String>, source: jsonwebtoken::errors::Error },
    #[error("the JWKS holds no key")]
    Empty,
    #[error("fetching the JWKS from {url}: {reason}")]
    Fetch { url: String, reason: String },
}

impl KeySet {
    /// A set that never changes (from a file).
    pub fn fixed(json: &str) -> Result<Arc<Self>, JwksError> {
        Ok(Arc::new(Self::with(parse(json)?, None)))
    }

    /// Fetch the set from `url` now (blocking; an error if it cannot be had or holds no
    /// usable key) and keep it fresh on a thread of its own, which ends with the set.
    pub fn from_url(url: &str, refresh: Duration) -> Result<Arc<Self>, JwksError> {
        let client = reqwest::blocking::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| JwksError::Fetch { url: url.to_owned(), reason: e.to_string() })?;
        let keys = fetch(&client, url)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let set = Arc::new(Self::with(keys, Some(tx)));
        set.fetches.with_label_values(&["ok"]).inc();
        let weak = Arc::downgrade(&set);
        let url = url.to_owned();
        std::thread::Builder::new()
            .name("jwks".into())
            .spawn(move || refresher(&weak, &client, &url, refresh, &rx))
            .map_err(|e| JwksError::Fetch { url: "(thread)".into(), reason: e.to_string() })?;
        Ok(set)
    }

    fn with(keys: Vec<Key>, refetch: Option<SyncSender<()>>) -> Self {
        let fetches = IntCounterVec::new(
            Opts::new("skuflow_api_jwks_fetches_total", "Fetches of the JWKS URL by result"),
            &["result"],
        )
        .expect("a valid metric definition");
        Self { keys: RwLock::new(Arc::new(keys)), refetch, fetches }
    }

    pub(crate) fn current(&self) -> Arc<Vec<Key>> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The key a token with `alg` and `kid` must be verified with: the one with that
    /// `kid` and algorithm or, without a `kid`, the only key of that algorithm. A `kid`
    /// the set does not hold asks the refresher for a refetch.
    pub(crate) fn find(&self, alg: Algorithm, kid: Option<&str>) -> Option<Key> {
        let keys = self.current();
        if let Some(kid) = kid
            && !keys.iter().any(|k| k.kid.as_deref() == Some(kid))
            && let Some(tx) = &self.refetch
        {
            // Full: a refetch is already asked for; disconnected: the refresher ended.
            let _ = tx.try_send(());
        }
        let mut usable =
            keys.iter().filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid));
        let found = usable.next()?;
        // Without a `kid`, the key must be the only one of its algorithm.
        if kid.is_none() && usable.next().is_some() {
            return None;
        }
        Some(found.clone())
    }
}

fn refresher(
    set: &Weak<KeySet>,
    client: &reqwest::blocking::Client,
    url: &str,
    refresh: Duration,
    wake: &Receiver<()>,
) {
    let mut last = Instant::now();
    loop {
        match wake.recv_timeout(refresh) {
            Ok(()) => {
                // Rate limit: a refetch for an unknown kid waits out MIN_REFETCH.
                let since = last.elapsed();
                if since < MIN_REFETCH {
                    std::thread::sleep(MIN_REFETCH - since);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(set) = set.upgrade() else { return };
        last = Instant::now();
        match fetch(client, url) {
            Ok(keys) => {
                let kids: Vec<_> = keys.iter().map(|k| k.kid.clone()).collect();
                *set.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Arc::new(keys);
                set.fetches.with_label_values(&["ok"]).inc();
                tracing::debug!(?kids, "JWKS refreshed");
            }
            Err(e) => {
                set.fetches.with_label_values(&["failed"]).inc();
                tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys");
            }
        }
    }
}

fn fetch(client: &reqwest::blocking::Client, url: &str) -> Result<Vec<Key>, JwksError> {
    let failed = |reason: String| JwksError::Fetch { url: url.to_owned(), reason };
    let response = client.get(url).send().map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("status {}", response.status())));
    }
    if response.content_length().is_some_and(|n| n > MAX_DOCUMENT as u64) {
        return Err(failed(format!("the document is larger than {MAX_DOCUMENT} bytes")));
    }
    // Read at most one byte past the limit, whatever the headers say.
    let mut body = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(response, MAX_DOCUMENT as u64 + 1),
        &mut body,
    )
    .map_err(|e| failed(e.to_string()))?;
    if body.len() > MAX_DOCUMENT {
        return Err(failed(format!("the document is larger than {MAX_DOCUMENT} bytes")));
    }
    let text = std::str::from_utf8(&body).map_err(|e| failed(e.to_string()))?;
    parse(text)
}

/// The usable keys of a JWKS document.
fn parse(json: &str) -> Result<Vec<Key>, JwksError> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
    let set: JwkSet = serde_json::from_str(json)?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            (_, alg) => {
                // A provider may publish keys of other kinds beside ours: skip them.
                tracing::warn!(
                    ?kid,
                    ?alg,
                    "JWKS key skipped: only RSA keys for RS256 and P-256 keys for ES256 are used"
                );
                continue;
            }
        };
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
        {
            tracing::warn!(?kid, "JWKS key skipped: not a signing key (use)");
            continue;
        }
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|source| JwksError::Key { kid: kid.clone(), source })?;
        keys.push(Key { kid, alg, key });
    }
    if keys.is_empty() {
        return Err(JwksError::Empty);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of other kinds, algorithms or uses beside ours are skipped, not fatal: a
    /// provider adding an EdDSA key must not stop the refresh of the others.
    #[test]
    fn unusable_keys_are_skipped_and_only_an_empty_set_is_an_error() {
        let fixture = include_str!("../../skuflow/tests/fixtures/jwks.json");
        let mut set: serde_json::Value = serde_json::from_str(fixture).unwrap();
        let keys = set["keys"].as_array_mut().unwrap();
        let mut encryption = keys[0].clone();
        encryption["kid"] = "rsa-enc".into();
        encryption["use"] = "enc".into();
        keys.push(encryption);
        keys.push(
            serde_json::json!({ "kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256" }),
        );
        let parsed = parse(&set.to_string()).unwrap();
        let kids: Vec<_> = parsed.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, ["rsa-1", "ec-1"]);
        let only_bad =
            serde_json::json!({ "keys": [{ "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" }] });
        assert!(matches!(parse(&only_bad.to_string()), Err(JwksError::Empty)));
    }
}
