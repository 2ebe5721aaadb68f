//! One batch of one partition: decode → apply → collect outputs, as data.
//!
//! Every output carries a stable identity ([`RecordId`]) derived from the command it
//! came from, so re-applying the same commands (after a crash or a fence) yields the
//! same replies and events with the same ids, whatever the batch boundaries; consumers
//! drop duplicates by id (ARCHITECTURE.md, "Exactly-once"). All outputs go to the source partition's
//! number in their topic, so changelog partition p restores commands partition p.
//!
//! Records that cannot be applied never stop the partition: they go to the dead-letter
//! topic with a reason, and the partition's applied offset moves past them. When the
//! sender can still be read from such a record (tenant and command id), it also gets a
//! `refused` reply with the same reason, so that a client waiting for its answer hears
//! one instead of waiting forever; a replay makes the same decision.

use std::collections::BTreeMap;

use state::store::{self, Batch, Needs, Store, StoreError};
use state::{ApplyError, LogEntry, Machine, PartitionState};
use topics::codec::{EncodeError, Format};
use topics::{
    Availability, CommandId, Envelope, LogCommand, LogTime, Outcome, Position, RecordId, Rejection,
    Reply, Sku, TRACE_HEADER, TenantId, Topic, TraceContext, keys,
};

pub use topics::envelope::{ID_HEADER, REASON_HEADER};

/// A record of the commands topic as consumed.
#[derive(Debug, Clone, Copy)]
pub struct InRecord<'a> {
    pub offset: i64,
    /// The record's timestamp (append time on the commands topic).
    pub timestamp: LogTime,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// The record's trace context (its `traceparent` header), copied onto the command's
    /// reply and events under the processor's span for it ([`apply_span_id`]).
    pub trace: Option<TraceContext>,
}

/// The span id under which the processor applied the command at `offset` of `partition`:
/// derived from the position, so that re-applying it writes the same headers.
pub fn apply_span_id(partition: i32, offset: i64) -> [u8; 8] {
    let mixed = (offset as u64 ^ ((partition as u64) << 48)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed | 1).to_be_bytes()
}

/// A record to produce, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub topic: Topic,
    pub partition: i32,
    pub key: Vec<u8>,
    /// `None`: a tombstone (changelog deletions).
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

/// The result of one batch: write `store` atomically, then produce `records` in one
/// transaction with the consumed offset `next_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub store: Batch,
    pub records: Vec<OutRecord>,
    /// The offset to commit: one past the last record of the batch.
    pub next_offset: i64,
    pub dead_lettered: usize,
    /// The reason of every rejected command in the batch, for metrics.
    pub rejections: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The caller fed offsets the state has already applied: the store and the consumer
    /// disagree, which the processor must resolve (restore) before applying anything.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The rows the batch needs could not be read from the store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("empty batch")]
    Empty,
}

/// Where a batch's state comes from: a whole [`PartitionState`] in memory, or a view of a
/// [`Store`] that loads the rows the batch needs before it is applied.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The state holds every entity of the partition (tests, audits).
    Whole,
    /// The state is a view of this store (the processor).
    Store(&'a Store),
}

/// Apply `records` (consecutive records of `partition`, in log order) to `state`.
pub fn apply_batch(
    machine: &Machine,
    state: &mut PartitionState,
    partition: i32,
    records: &[InRecord<'_>],
) -> Result<Applied, BatchError> {
    apply_routed(machine, Source::Whole, state, partition, None, &Format::Json, records)
}

/// [`apply_batch`] for partition `partition` of a commands topic of `partitions`
/// partitions: a request found on another partition than its key maps to (a producer
/// with another partitioner) is dead-lettered, since applying it would give its SKU a
/// second writer. Records are read and written in `format`.
pub fn apply_routed(
    machine: &Machine,
    source: Source<'_>,
    state: &mut PartitionState,
    partition: i32,
    partitions: Option<i32>,
    format: &Format,
    records: &[InRecord<'_>],
) -> Result<Applied, BatchError> {
    let last = records.last().ok_or(BatchError::Empty)?.offset;
    let decoded: Vec<_> =
        records.iter().map(|r| decode(format, r, partition, partitions)).collect();
    if let Source::Store(store) = source {
        let mut needs = Needs::new();
        for (record, command) in records.iter().zip(&decoded) {
            if let Ok(command) = command {
                needs.entry(record.timestamp, command);
            }
        }
        store.prefetch(partition, state, needs)?;
    }
    let mut out = Vec::new();
    let mut touched: BTreeMap<Sku, Position> = BTreeMap::new();
    let mut dead_lettered = 0;
    let mut rejections = Vec::new();
    for (record, decoded) in records.iter().zip(decoded) {
        let position = Position { partition, offset: record.offset };
        let id = |index| RecordId { partition, offset: record.offset, index };
        let traced = |mut out: OutRecord| {
            if let Some(trace) = record.trace {
                let ours = trace.child(apply_span_id(partition, record.offset));
                out.headers.push((TRACE_HEADER, ours.to_string().into_bytes()));
            }
            out
        };
        let command = match decoded {
            Ok(command) => command,
            Err(refused) => {
                machine.skip(state, position)?;
                out.push(dead_letter(partition, record, refused.reason.clone()));
                dead_lettered += 1;
                if let Some((tenant, command_id)) = refused.requester {
                    let outcome = Outcome::Rejected(Rejection::Refused { detail: refused.reason });
                    // Log time did not move for the refused record: its time is not trusted.
                    let reply =
                        Reply { tenant, command_id, position, at: state.log_time(), outcome };
                    out.push(traced(reply_record(format, id(0), &reply)?));
                    rejections.push("refused");
                }
                continue;
            }
        };
        let fx =
            machine.apply(state, LogEntry { position, at: record.timestamp, command: &command })?;
        if let Some(reply) = &fx.reply {
            if let Outcome::Rejected(r) = &reply.outcome {
                rejections.push(r.reason());
            }
            out.push(traced(reply_record(format, id(0), reply)?));
        }
        for (i, event) in fx.events.iter().enumerate() {
            let rid = id(i as u32 + 1);
            let key = event_key(event).to_vec();
            out.push(traced(output(
                Topic::Events,
                rid,
                key,
                format.encode(Topic::Events, &Envelope::output(rid, event))?,
            )));
        }
        for sku in fx.touched {
            touched.insert(sku, position);
        }
    }
    for (sku, position) in touched {
        let rid = RecordId { partition, offset: position.offset, index: 0 };
        let availability = availability(state, sku, position);
        let key = keys::command_key(&availability.sku).to_vec();
        out.push(output(
            Topic::Availability,
            rid,
            key,
            format.encode(Topic::Availability, &Envelope::output(rid, &availability))?,
        ));
    }
    let batch = store::batch(partition, state).map_err(StoreError::from)?;
    for (i, change) in batch.changes.iter().enumerate() {
        let rid = RecordId { partition, offset: last, index: i as u32 };
        out.push(OutRecord {
            topic: Topic::Changelog,
            partition,
            key: change.key.clone(),
            payload: change.value.clone(),
            headers: vec![(ID_HEADER, rid.to_string().into_bytes())],
        });
    }
    Ok(Applied { store: batch, records: out, next_offset: last + 1, dead_lettered, rejections })
}

fn reply_record(format: &Format, id: RecordId, reply: &Reply) -> Result<OutRecord, EncodeError> {
    let key = keys::reply_key(&reply.tenant, &reply.command_id);
    Ok(output(
        Topic::Replies,
        id,
        key,
        format.encode(Topic::Replies, &Envelope::output(id, reply))?,
    ))
}

/// A record that cannot be applied: a stable reason, and who sent it if that can be read.
struct Refused {
    reason: String,
    requester: Option<(TenantId, CommandId)>,
}

fn decode(
    format: &Format,
    record: &InRecord<'_>,
    partition: i32,
    partitions: Option<i32>,
) -> Result<LogCommand, Refused> {
    let envelope = format.decode::<LogCommand>(record.payload).map_err(|e| Refused {
        reason: format!("{}: {e}", e.reason()),
        requester: format.requester(record.payload),
    })?;
    if let LogCommand::Request(request) = &envelope.body {
        let refused = |reason| Refused {
            reason,
            requester: Some((request.tenant.clone(), request.command_id.clone())),
        };
        // A command keyed by another SKU was routed to this partition by its key; applying
        // it here would give its SKU a second writer.
        let sku = request.command.sku();
        if record.key != Some(keys::command_key(sku)) {
            return Err(refused(format!(
                "wrong_key: record key does not match the command's sku {sku}"
            )));
        }
        if let Some(n) = partitions {
            let home = keys::partition_for(keys::command_key(sku), n);
            if home != partition {
                return Err(refused(format!(
                    "wrong_partition: sku {sku} belongs to partition {home} of {n} (murmur2), not {partition}"
                )));
            }
        }
    }
    Ok(envelope.body)
}

fn dead_letter(partition: i32, record: &InRecord<'_>, reason: String) -> OutRecord {
    let id = RecordId { partition, offset: record.offset, index: 0 };
    OutRecord {
        topic: Topic::DeadLetter,
        partition,
        key: record.key.unwrap_or_default().to_vec(),
        payload: record.payload.map(<[u8]>::to_vec),
        headers: vec![
            (ID_HEADER, id.to_string().into_bytes()),
            (REASON_HEADER, reason.into_bytes()),
        ],
    }
}

fn output(topic: Topic, id: RecordId, key: Vec<u8>, payload: Vec<u8>) -> OutRecord {
    OutRecord {
        topic,
        partition: id.partition,
        key,
        payload: Some(payload),
        headers: vec![(ID_HEADER, id.to_string().into_bytes())],
    }
}

fn event_key(event: &topics::Event) -> &[u8] {
    use topics::Event::*;
    let sku = match event {
        ReservationCreated { reservation, .. }
        | ReservationExtended { reservation, .. }
        | ReservationReleased { reservation, .. }
        | ReservationExpired { reservation, .. }
        | ReservationPurchased { reservation, .. } => &reservation.sku,
        StockChanged { sku, .. } | OutOfStock { sku } | BackInStock { sku, .. } => sku,
    };
    keys::command_key(sku)
}

fn availability(state: &PartitionState, sku: Sku, position: Position) -> Availability {
    let warehouses = state.stock(&sku).cloned().unwrap_or_default();
    // Saturating: the machine keeps a SKU's rows small enough for their sum to fit.
    let available = warehouses.values().fold(0u64, |t, l| t.saturating_add(l.available()));
    Availability { sku, available, warehouses, position }
}
