//! Encoding and decoding of envelopes. JSON (serde) is the default; [`Format::Avro`]
//! (with the `avro` feature) is registry-backed Avro (`crate::avro`). A decode failure is
//! a value, [`DecodeError`], that the processor routes to the dead-letter topic with
//! its reason instead of stopping the partition.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::{Envelope, VERSION};
use crate::ids::{CommandId, TenantId};
use crate::names::Topic;

/// How a deployment encodes its envelopes: every writer and reader of one deployment
/// must use the same one.
#[derive(Debug, Clone, Default)]
pub enum Format {
    #[default]
    Json,
    /// Avro in the Confluent wire format, schemas registered at startup.
    #[cfg(feature = "avro")]
    Avro(std::sync::Arc<crate::avro::AvroFormat>),
}

impl Format {
    /// Encode `envelope` as a value of `topic`.
    pub fn encode<T: Serialize>(
        &self,
        topic: Topic,
        envelope: &Envelope<T>,
    ) -> Result<Vec<u8>, EncodeError> {
        let _ = topic;
        match self {
            Format::Json => to_json(envelope),
            #[cfg(feature = "avro")]
            Format::Avro(avro) => avro.encode(topic, envelope),
        }
    }

    /// Decode an envelope, checking its version before its body.
    pub fn decode<T: DeserializeOwned>(
        &self,
        bytes: Option<&[u8]>,
    ) -> Result<Envelope<T>, DecodeError> {
        match self {
            Format::Json => from_json(bytes),
            #[cfg(feature = "avro")]
            Format::Avro(avro) => avro.decode(bytes),
        }
    }

    /// [`requester`] in this format.
    pub fn requester(&self, bytes: Option<&[u8]>) -> Option<(TenantId, CommandId)> {
        match self {
            Format::Json => requester(bytes),
            #[cfg(feature = "avro")]
            Format::Avro(avro) => requester_of(&avro.decode_json(bytes).ok()?),
        }
    }
}

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
    requester_of(&serde_json::from_slice(bytes?).ok()?)
}

/// [`requester`] of an envelope's JSON form.
fn requester_of(envelope: &serde_json::Value) -> Option<(TenantId, CommandId)> {
    let body = envelope.get("body")?;
    let text = |field: &str| body.get(field)?.as_str().map(str::to_owned);
    Some((TenantId::new(text("tenant")?).ok()?, CommandId::new(text("command_id")?).ok()?))
}
