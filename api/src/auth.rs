//! Who is calling: an API key (`Authorization: ApiKey <key>` or `X-Api-Key`), compared by
//! its SHA-256 in constant time against every configured key, or a JWT bearer token
//! (HS256 pinned, `exp` and `aud` checked). The tenant always comes from the credential.

use actix_web::HttpRequest;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use topics::TenantId;

use crate::config::{ApiConfig, JWT_LEEWAY_SECS, JwtKeys, Role};
use crate::problem::ApiError;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    pub role: Role,
    /// What rate limits are counted against: the key's hash prefix or the token subject.
    pub credential: String,
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Client => Err(ApiError::Forbidden),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    tenant: String,
    #[serde(default)]
    role: Option<String>,
}

pub fn authenticate(req: &HttpRequest, config: &ApiConfig) -> Result<Caller, ApiError> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(key) = header("x-api-key") {
        return api_key(key, config);
    }
    let authorization = header("authorization").ok_or(ApiError::Unauthenticated)?;
    match authorization.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("apikey") => api_key(key.trim(), config),
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => jwt(token.trim(), config),
        _ => Err(ApiError::Unauthenticated),
    }
}

fn api_key(key: &str, config: &ApiConfig) -> Result<Caller, ApiError> {
    let hash = crate::config::hash_key(key);
    // Compare against every key, whatever matches, so timing says nothing about which.
    let mut found = None;
    for k in &config.keys {
        if bool::from(k.sha256.ct_eq(&hash)) {
            found = Some(k);
        }
    }
    let k = found.ok_or(ApiError::Unauthenticated)?;
    Ok(Caller { tenant: k.tenant.clone(), role: k.role, credential: hex::encode(&hash[..8]) })
}

fn jwt(token: &str, config: &ApiConfig) -> Result<Caller, ApiError> {
    let jwt = config.jwt.as_ref().ok_or(ApiError::Unauthenticated)?;
    let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::Unauthenticated)?;
    // The key decides the algorithm: a token naming another is refused (no `none`, no
    // HS256 signed with a public key).
    let (algorithm, key) = match &jwt.keys {
        JwtKeys::Hs256(secret) => (Algorithm::HS256, DecodingKey::from_secret(secret)),
        JwtKeys::Jwks(set) => {
            let key =
                set.find(header.alg, header.kid.as_deref()).ok_or(ApiError::Unauthenticated)?;
            (key.alg, key.key)
        }
    };
    if header.alg != algorithm {
        return Err(ApiError::Unauthenticated);
    }
    let mut validation = Validation::new(algorithm);
    validation.set_audience(&[&jwt.audience]);
    let mut required = vec!["exp", "aud", "sub"];
    if let Some(issuer) = &jwt.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    validation.set_required_spec_claims(&required);
    validation.validate_nbf = true;
    validation.leeway = JWT_LEEWAY_SECS;
    let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map_err(|_| ApiError::Unauthenticated)?;
    let tenant = TenantId::new(&data.claims.tenant).map_err(|_| ApiError::Unauthenticated)?;
    let role = match data.claims.role.as_deref() {
        None | Some("client") => Role::Client,
        Some("admin") => Role::Admin,
        Some(_) => return Err(ApiError::Unauthenticated),
    };
    // Limits are per tenant and subject: two tenants' `checkout` subjects are two callers.
    Ok(Caller {
        tenant,
        role,
        credential: format!("jwt:{}:{}", data.claims.tenant, data.claims.sub),
    })
}
