//! Who is calling: an API key (`Authorization: ApiKey <key>` or `X-Api-Key`), compared by
//! its SHA-256 in constant time against every configured key, or a JWT bearer token
//! (HS256 pinned, `exp` and `aud` checked). The tenant always comes from the credential.

use actix_web::HttpRequest;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use topics::TenantId;

use crate::config::{ApiConfig, Role};
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
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[&jwt.audience]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = 60;
    let data =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(jwt.secret()), &validation)
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
