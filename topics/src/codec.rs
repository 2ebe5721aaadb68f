//! Encoding and decoding of envelopes. JSON (serde) is the default. A decode failure is
//! a value, [`DecodeError`], that the processor routes to the dead-letter topic with
//! its reason instead of stopping the partition.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::{Envelope, VERSION};

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
