//! Turning [`OutRecord`]s into Kafka records.

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use crate::batch::OutRecord;

/// The record to send for `out`, addressed to its topic's name in `topics`.
pub fn record<'a>(out: &'a OutRecord, topic_name: &'a str) -> BaseRecord<'a, [u8], [u8]> {
    let headers = out
        .headers
        .iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(value) }));
    let record =
        BaseRecord::to(topic_name).partition(out.partition).key(&out.key[..]).headers(headers);
    match &out.payload {
        Some(p) => record.payload(&p[..]),
        None => record,
    }
}
