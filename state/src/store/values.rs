//! Value encodings of the store (and of the changelog, which carries the same bytes).
//! Fixed-width big-endian for the hot, small rows (stock, meta); JSON for the rest.

use topics::{LogTime, Reservation, StockLevel};

use crate::partition::{DedupRecord, Timer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable {what} value: {reason}")]
pub struct BadValue {
    pub what: &'static str,
    pub reason: String,
}

fn bad(what: &'static str, reason: impl ToString) -> BadValue {
    BadValue { what, reason: reason.to_string() }
}

/// Where a partition's state stands: the log time and the last applied offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub log_time: LogTime,
    pub applied: Option<i64>,
}

pub fn meta(m: &Meta) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&m.log_time.0.to_be_bytes());
    out.extend_from_slice(&m.applied.unwrap_or(-1).to_be_bytes());
    out
}

pub fn meta_from(b: &[u8]) -> Result<Meta, BadValue> {
    let b: &[u8; 16] =
        b.try_into().map_err(|_| bad("meta", format!("{} bytes, want 16", b.len())))?;
    let (t, a) = b.split_at(8);
    let applied = i64::from_be_bytes(a.try_into().map_err(|_| bad("meta", "length"))?);
    Ok(Meta {
        log_time: LogTime(u64::from_be_bytes(t.try_into().map_err(|_| bad("meta", "length"))?)),
        applied: (applied >= 0).then_some(applied),
    })
}

/// Where a partition's META sits in the changelog topic: the store's own note, written
/// with every batch whose META's changelog offset is known, never produced. A restore
/// that finds the same META at `offset` imports only the records after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The changelog offset of the META record the state ends with.
    pub offset: i64,
    /// Wall-clock time it was written, in milliseconds since the Unix epoch.
    pub written_ms: u64,
    /// That META.
    pub meta: Meta,
}

impl Checkpoint {
    /// A checkpoint of `meta` at changelog `offset`, written now.
    pub fn now(offset: i64, meta: Meta) -> Self {
        Checkpoint { offset, written_ms: now_ms(), meta }
    }

    /// How long ago it was written; `None` if the clock says it is from the future.
    pub fn age(&self) -> Option<std::time::Duration> {
        now_ms().checked_sub(self.written_ms).map(std::time::Duration::from_millis)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn checkpoint(c: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&c.offset.to_be_bytes());
    out.extend_from_slice(&c.written_ms.to_be_bytes());
    out.extend_from_slice(&meta(&c.meta));
    out
}

pub fn checkpoint_from(b: &[u8]) -> Result<Checkpoint, BadValue> {
    if b.len() != 32 {
        return Err(bad("checkpoint", format!("{} bytes, want 32", b.len())));
    }
    let n = |i: usize| b[i * 8..i * 8 + 8].try_into().unwrap_or_default();
    Ok(Checkpoint {
        offset: i64::from_be_bytes(n(0)),
        written_ms: u64::from_be_bytes(n(1)),
        meta: meta_from(&b[16..])?,
    })
}

pub fn stock(l: &StockLevel) -> Vec<u8> {
    [l.on_hand, l.reserved, l.sold, l.version].iter().flat_map(|n| n.to_be_bytes()).collect()
}

pub fn stock_from(b: &[u8]) -> Result<StockLevel, BadValue> {
    if b.len() != 32 {
        return Err(bad("stock", format!("{} bytes, want 32", b.len())));
    }
    let n = |i: usize| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    Ok(StockLevel { on_hand: n(0), reserved: n(1), sold: n(2), version: n(3) })
}

/// JSON of a value. These types always encode (string map keys, no custom serializers);
/// should one ever fail, the batch fails instead of writing an empty value.
fn json(what: &'static str, v: &impl serde::Serialize) -> Result<Vec<u8>, BadValue> {
    serde_json::to_vec(v).map_err(|e| bad(what, format!("cannot encode: {e}")))
}

pub fn reservation(r: &Reservation) -> Result<Vec<u8>, BadValue> {
    json("reservation", r)
}

pub fn reservation_from(b: &[u8]) -> Result<Reservation, BadValue> {
    serde_json::from_slice(b).map_err(|e| bad("reservation", e))
}

pub fn dedup(d: &DedupRecord) -> Result<Vec<u8>, BadValue> {
    json("dedup", d)
}

pub fn dedup_from(b: &[u8]) -> Result<DedupRecord, BadValue> {
    serde_json::from_slice(b).map_err(|e| bad("dedup", e))
}

pub fn timer(t: &Timer) -> Result<Vec<u8>, BadValue> {
    json("timer", t)
}

pub fn timer_from(b: &[u8]) -> Result<Timer, BadValue> {
    serde_json::from_slice(b).map_err(|e| bad("timer", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_has_fixed_bytes() {
        let c = Checkpoint {
            offset: 0x0102,
            written_ms: 0x0304,
            meta: Meta { log_time: LogTime(5), applied: None },
        };
        let bytes = checkpoint(&c);
        let golden = [
            [0, 0, 0, 0, 0, 0, 1, 2],
            [0, 0, 0, 0, 0, 0, 3, 4],
            [0, 0, 0, 0, 0, 0, 0, 5],
            [0xff; 8],
        ]
        .concat();
        assert_eq!(bytes, golden);
        assert_eq!(checkpoint_from(&bytes), Ok(c));
        assert!(checkpoint_from(&bytes[1..]).is_err());
    }
}
