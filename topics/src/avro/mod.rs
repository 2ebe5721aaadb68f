//! Avro in the Confluent wire format (magic byte, 4-byte schema id, Avro body), through
//! `schema_registry_converter`. No service is configured for a registry yet: only this
//! crate's tests use it. The
//! schemas are checked in under `topics/schemas/` and registered under the topic name
//! strategy (`{topic}-value`). A decode failure is a [`DecodeError`], like JSON's.

mod convert;

use apache_avro::Schema;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{DecodeError, EncodeError};
use crate::envelope::{Envelope, VERSION};
use crate::names::{Topic, Topics};

pub use convert::Mismatch;

/// The Avro schema of each topic's values, as registered.
pub fn schema_text(topic: Topic) -> Option<&'static str> {
    Some(match topic {
        Topic::Commands => include_str!("../../schemas/command.avsc"),
        Topic::Replies => include_str!("../../schemas/reply.avsc"),
        Topic::Events => include_str!("../../schemas/event.avsc"),
        Topic::Availability => include_str!("../../schemas/availability.avsc"),
        // The changelog carries the store's own bytes; dead letters carry what came in.
        Topic::Changelog | Topic::DeadLetter => return None,
    })
}

/// Encodes and decodes envelopes as registry-backed Avro.
pub struct AvroCodec {
    topics: Topics,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    schemas: Vec<(Topic, Schema)>,
}

impl std::fmt::Debug for AvroCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroCodec").field("topics", &self.topics).finish_non_exhaustive()
    }
}

impl AvroCodec {
    pub fn new(registry_url: &str, topics: Topics) -> Result<Self, EncodeError> {
        let settings = SrSettings::new_builder(registry_url.to_owned())
            .no_proxy()
            .build()
            .map_err(|e| EncodeError::new(format!("schema registry settings: {e}")))?;
        let mut schemas = Vec::new();
        for topic in Topic::ALL {
            if let Some(text) = schema_text(topic) {
                let schema = Schema::parse_str(text)
                    .map_err(|e| EncodeError::new(format!("{topic:?} schema: {e}")))?;
                schemas.push((topic, schema));
            }
        }
        Ok(Self {
            topics,
            encoder: AvroEncoder::new(settings.clone()),
            decoder: AvroDecoder::new(settings),
            schemas,
        })
    }

    fn schema(&self, topic: Topic) -> Result<&Schema, EncodeError> {
        self.schemas
            .iter()
            .find_map(|(t, s)| (*t == topic).then_some(s))
            .ok_or_else(|| EncodeError::new(format!("{topic:?} has no Avro schema")))
    }

    pub async fn encode<T: Serialize>(
        &self,
        topic: Topic,
        envelope: &Envelope<T>,
    ) -> Result<Vec<u8>, EncodeError> {
        let schema = self.schema(topic)?;
        let json = serde_json::to_value(envelope).map_err(|e| EncodeError::new(e.to_string()))?;
        let value =
            convert::to_avro(schema, &json, "$").map_err(|e| EncodeError::new(e.to_string()))?;
        let supplied = SuppliedSchema::new(
            None,
            SchemaType::Avro,
            schema_text(topic).unwrap_or_default().to_owned(),
        );
        let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
            self.topics.name(topic),
            false,
            supplied,
        );
        self.encoder
            .encode_value(value, &strategy)
            .await
            .map_err(|e| EncodeError::new(e.to_string()))
    }

    pub async fn decode<T: DeserializeOwned>(
        &self,
        bytes: Option<&[u8]>,
    ) -> Result<Envelope<T>, DecodeError> {
        let bytes = bytes.filter(|b| !b.is_empty()).ok_or(DecodeError::Empty)?;
        let decoded = self
            .decoder
            .decode(Some(bytes))
            .await
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let json =
            convert::to_json(&decoded.value).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let v = json.get("v").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if v != u64::from(VERSION) {
            return Err(DecodeError::UnsupportedVersion {
                found: u16::try_from(v).unwrap_or(u16::MAX),
            });
        }
        serde_json::from_value(json).map_err(|e| DecodeError::Malformed(e.to_string()))
    }
}
