//! Avro in the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro
//! binary body), with the schemas checked in under `topics/schemas/` and registered
//! through `schema_registry_converter`'s registry client under the topic name strategy
//! (`{topic}-value`), each subject set to BACKWARD compatibility first.
//!
//! Registering talks to the registry (blocking HTTP): it happens once, when a service
//! starts, outside any async runtime ([`AvroFormat::register`]). After that, encoding
//! never does I/O (the ids of this build's schemas are known), so it is safe anywhere,
//! an async handler included. Decoding looks up a writer schema it has not met (another
//! build's, by id) once and caches it; skuflow decodes on its own threads (the processor
//! loop, the followers of the API and `ingest`), never on an async runtime's.
//!
//! Records are decoded with their writer's schema and then read as this build's types,
//! so an old reader refuses a field it does not know like the JSON reader does (a
//! dead letter or an undecodable record, never a misread). A decode failure is a
//! [`DecodeError`], like JSON's.

mod convert;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use schema_registry_converter::blocking::schema_registry::{
    SrSettings, get_schema_by_id, post_schema,
};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{DecodeError, EncodeError};
use crate::envelope::{Envelope, VERSION};
use crate::names::{Topic, Topics};

pub use convert::Mismatch;

/// The compatibility every subject is set to before its schema is registered: a new
/// schema must read every record written with the previous one.
pub const COMPATIBILITY: &str = "BACKWARD";

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

/// Where the registry is and how to authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    pub url: String,
    /// `user:password` for HTTP basic authentication (Confluent Cloud: API key and
    /// secret), or `None`.
    pub basic_auth: Option<String>,
    pub timeout: Duration,
}

impl RegistryConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), basic_auth: None, timeout: Duration::from_secs(10) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry {url}: {what}: {reason}")]
    Call { url: String, what: String, reason: String },
    #[error("{topic:?} schema: {reason}")]
    Schema { topic: Topic, reason: String },
}

/// Encodes and decodes envelopes as registry-backed Avro.
pub struct AvroFormat {
    /// This build's schema of each topic with the id the registry gave it.
    ours: Vec<(Topic, u32, Arc<Schema>)>,
    /// Writer schemas by id: ours, and others met while decoding.
    by_id: RwLock<HashMap<u32, Arc<Schema>>>,
    /// Ids the registry did not have (or did not give), up to [`MAX_MISSING`]: a record
    /// naming one is refused without asking again, so hostile ids cost one call each.
    missing: RwLock<std::collections::HashSet<u32>>,
    settings: SrSettings,
}

/// The most bytes one decoded string, byte array, array or map may claim: more than any
/// record skuflow writes (its largest command is a few kilobytes) and than Kafka's
/// default record size (1 MiB).
pub const MAX_DECODE_ALLOCATION: usize = 4 * 1024 * 1024;

/// The most unknown schema ids remembered; past it, every unknown id is refused without
/// a registry call (until the process restarts).
const MAX_MISSING: usize = 1024;

impl std::fmt::Debug for AvroFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<_> = self.ours.iter().map(|(t, id, _)| (t, id)).collect();
        f.debug_struct("AvroFormat").field("ids", &ids).finish_non_exhaustive()
    }
}

impl AvroFormat {
    /// Set every subject of `topics` to [`COMPATIBILITY`] and register this build's
    /// schemas (an existing identical schema keeps its id). Blocking: call it at startup,
    /// not on an async runtime.
    pub fn register(config: &RegistryConfig, topics: &Topics) -> Result<Self, RegistryError> {
        // A hostile record's length prefix must not make the decoder allocate more than a
        // record can hold (apache-avro's default allows 512 MiB; the first call wins).
        apache_avro::util::max_allocation_bytes(MAX_DECODE_ALLOCATION);
        let call = |what: &str, reason: String| RegistryError::Call {
            url: config.url.clone(),
            what: what.to_owned(),
            reason,
        };
        let auth = config.basic_auth.as_deref().map(|auth| match auth.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (auth, None),
        });
        let mut builder = SrSettings::new_builder(config.url.clone());
        builder.no_proxy().set_timeout(config.timeout);
        if let Some((user, password)) = auth {
            builder.set_basic_authorization(user, password);
        }
        let settings = builder.build().map_err(|e| call("settings", e.to_string()))?;
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(config.timeout)
            .build()
            .map_err(|e| call("client", e.to_string()))?;
        let mut ours = Vec::new();
        for topic in Topic::ALL {
            let Some(text) = schema_text(topic) else { continue };
            let schema = Schema::parse_str(text)
                .map_err(|e| RegistryError::Schema { topic, reason: e.to_string() })?;
            let subject = format!("{}-value", topics.name(topic));
            let url = format!("{}/config/{subject}", config.url.trim_end_matches('/'));
            let mut put =
                http.put(&url).json(&serde_json::json!({ "compatibility": COMPATIBILITY }));
            if let Some((user, password)) = auth {
                put = put.basic_auth(user, password);
            }
            put.send()
                .and_then(reqwest::blocking::Response::error_for_status)
                .map_err(|e| call(&format!("PUT /config/{subject}"), e.to_string()))?;
            let supplied = SuppliedSchema::new(None, SchemaType::Avro, text.to_owned());
            let registered = post_schema(&settings, subject.clone(), supplied)
                .map_err(|e| call(&format!("register {subject}"), e.to_string()))?;
            ours.push((topic, registered.id, Arc::new(schema)));
        }
        let by_id = ours.iter().map(|(_, id, schema)| (*id, schema.clone())).collect();
        Ok(Self { ours, by_id: RwLock::new(by_id), missing: RwLock::default(), settings })
    }

    /// Encode `envelope` for `topic` (no I/O).
    pub fn encode<T: Serialize>(
        &self,
        topic: Topic,
        envelope: &Envelope<T>,
    ) -> Result<Vec<u8>, EncodeError> {
        let (id, schema) = self
            .ours
            .iter()
            .find_map(|(t, id, s)| (*t == topic).then_some((*id, s)))
            .ok_or_else(|| EncodeError::new(format!("{topic:?} has no Avro schema")))?;
        let json = serde_json::to_value(envelope).map_err(|e| EncodeError::new(e.to_string()))?;
        let value =
            convert::to_avro(schema, &json, "$").map_err(|e| EncodeError::new(e.to_string()))?;
        let body = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .and_then(|w| w.write_value_to_vec(value))
            .map_err(|e| EncodeError::new(e.to_string()))?;
        let mut out = Vec::with_capacity(5 + body.len());
        out.push(0);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decode a record to its JSON form (envelope version not checked).
    pub fn decode_json(&self, bytes: Option<&[u8]>) -> Result<serde_json::Value, DecodeError> {
        let bytes = bytes.filter(|b| !b.is_empty()).ok_or(DecodeError::Empty)?;
        let (header, mut body) = bytes.split_at_checked(5).ok_or_else(|| not_avro(bytes))?;
        if header[0] != 0 {
            return Err(not_avro(bytes));
        }
        let id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let schema = self.writer_schema(id)?;
        let value = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .and_then(|r| r.read_value(&mut body))
            .map_err(|e| DecodeError::Malformed(format!("Avro body (schema {id}): {e}")))?;
        if !body.is_empty() {
            return Err(DecodeError::Malformed(format!(
                "{} bytes after the Avro body (schema {id})",
                body.len()
            )));
        }
        convert::to_json(&value).map_err(|e| DecodeError::Malformed(e.to_string()))
    }

    /// Decode an envelope, checking its version before its body.
    pub fn decode<T: DeserializeOwned>(
        &self,
        bytes: Option<&[u8]>,
    ) -> Result<Envelope<T>, DecodeError> {
        let json = self.decode_json(bytes)?;
        let v = json.get("v").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if v != u64::from(VERSION) {
            return Err(DecodeError::UnsupportedVersion {
                found: u16::try_from(v).unwrap_or(u16::MAX),
            });
        }
        serde_json::from_value(json).map_err(|e| DecodeError::Malformed(e.to_string()))
    }

    fn writer_schema(&self, id: u32) -> Result<Arc<Schema>, DecodeError> {
        if let Some(s) = self.by_id.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(s.clone());
        }
        let refused = |why: String| DecodeError::Malformed(format!("schema {id}: {why}"));
        {
            let missing = self.missing.read().unwrap_or_else(|e| e.into_inner());
            if missing.contains(&id) || missing.len() >= MAX_MISSING {
                return Err(refused("unknown to the registry".into()));
            }
        }
        let fetched = get_schema_by_id(id, &self.settings)
            .map_err(|e| e.to_string())
            .and_then(|r| Schema::parse_str(&r.schema).map_err(|e| e.to_string()));
        let schema = match fetched {
            Ok(schema) => Arc::new(schema),
            Err(why) => {
                self.missing.write().unwrap_or_else(|e| e.into_inner()).insert(id);
                return Err(refused(why));
            }
        };
        self.by_id.write().unwrap_or_else(|e| e.into_inner()).insert(id, schema.clone());
        Ok(schema)
    }
}

fn not_avro(bytes: &[u8]) -> DecodeError {
    let head: Vec<String> = bytes.iter().take(5).map(|b| format!("{b:02x}")).collect();
    DecodeError::Malformed(format!(
        "not the Confluent Avro wire format (starts {}): a JSON writer, or no registry configured here?",
        head.join(" ")
    ))
}
