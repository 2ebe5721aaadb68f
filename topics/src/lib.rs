//! The wire format of skuflow and nothing else: topic names and configs, record keys,
//! versioned envelopes, the message types, and their codecs. No other crate builds a
//! Kafka payload by hand.

#[cfg(feature = "avro")]
pub mod avro;
pub mod codec;
pub mod envelope;
pub mod ids;
pub mod keys;
pub mod model;
pub mod names;
pub mod trace;

pub use envelope::{Envelope, RecordId, VERSION};
pub use ids::{CommandId, IdError, ReservationId, Sku, TenantId, WarehouseId};
pub use model::*;
pub use names::{Topic, TopicLayout, Topics};
pub use trace::{TRACE_HEADER, TraceContext};
