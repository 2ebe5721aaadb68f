//! Turning [`OutRecord`]s into Kafka records.

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::util::IntoOpaque;

use crate::batch::OutRecord;

/// The record to send for `out`, addressed to its topic's name in `topics`.
pub fn record<'a>(out: &'a OutRecord, topic_name: &'a str) -> BaseRecord<'a, [u8], [u8]> {
    record_tagged(out, topic_name, ())
}

/// [`record`] with `tag` for its delivery report.
pub fn record_tagged<'a, D: IntoOpaque>(
    out: &'a OutRecord,
    topic_name: &'a str,
    tag: D,
) -> BaseRecord<'a, [u8], [u8], D> {
    let headers = out
        .headers
        .iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(value) }));
    let record = BaseRecord::with_opaque_to(topic_name, tag)
        .partition(out.partition)
        .key(&out.key[..])
        .headers(headers);
    match &out.payload {
        Some(p) => record.payload(&p[..]),
        None => record,
    }
}
