//! Encoding and decoding of envelopes. JSON (serde) is the default. A decode failure is
//! a value, [`DecodeError`], that the processor routes to the dead-letter topic with
//! its reason instead of stopping the partition.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::{Envelope, VERSION};
use crate::ids::{CommandId, TenantId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record has no value")]
    Empty,
    #[error("malformed record: {0}")]
    Malformed(String),
    #[error("unsupported envelope version {found} (this build reads {VERSION})")]
    UnsupportedVersion { found: u16 },
}

impl DecodeError {
    /// Stable name for dead-letter headers and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::Malformed(_) => "malformed",
            DecodeError::UnsupportedVersion { .. } => "unsupported_version",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not encode record: {0}")]
pub struct EncodeError(String);

impl EncodeError {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// Encode an envelope as JSON.
pub fn to_json<T: Serialize>(envelope: &Envelope<T>) -> Result<Vec<u8>, EncodeError> {
    serde_json::to_vec(envelope).map_err(|e| EncodeError(e.to_string()))
}

/// Decode a JSON envelope, checking its version before its body.
pub fn from_json<T: DeserializeOwned>(bytes: Option<&[u8]>) -> Result<Envelope<T>, DecodeError> {
    let bytes = bytes.filter(|b| !b.is_empty()).ok_or(DecodeError::Empty)?;
    #[derive(serde::Deserialize)]
    struct Version {
        v: u16,
    }
    let Version { v } =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if v != VERSION {
        return Err(DecodeError::UnsupportedVersion { found: v });
    }
    serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
}

/// Who sent a command record that cannot be applied: the tenant and command id of a
/// request, read leniently (any envelope version, any other field broken), so that a
/// refused request still gets a reply. `None` when even those cannot be read.
pub fn requester(bytes: Option<&[u8]>) -> Option<(TenantId, CommandId)> {
    #[derive(serde::Deserialize)]
    struct Body {
        tenant: String,
        command_id: String,
    }
    #[derive(serde::Deserialize)]
    struct Outer {
        body: Body,
    }
    let outer: Outer = serde_json::from_slice(bytes?).ok()?;
    Some((TenantId::new(outer.body.tenant).ok()?, CommandId::new(outer.body.command_id).ok()?))
}
