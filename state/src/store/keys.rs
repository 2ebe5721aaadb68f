//! The RocksDB key layout — the one place that knows it.
//!
//! ```text
//! key := partition:u32be  kind:u8  rest
//! kind 0x01 META         rest = ""                           value = log_time:u64be applied:i64be (-1: none)
//! kind 0x02 STOCK        rest = sku 0x00 warehouse           value = on_hand, reserved, sold, version: u64be each
//! kind 0x03 RESERVATION  rest = sku 0x00 seq:u64be           value = JSON Reservation
//! kind 0x04 (retired: idempotency records scoped by tenant and id only)
//! kind 0x05 TIMER        rest = at:u64be timer_kind:u8 seq:u64be   value = JSON Timer
//! kind 0x06 DEDUP        rest = tenant 0x00 sku 0x00 command_id  value = JSON DedupRecord
//! kind 0x07 CHECKPOINT   rest = ""                           value = see values::Checkpoint
//! ```
//!
//! CHECKPOINT is the store's own note of where its META sits in the changelog topic; it
//! is never produced to the changelog, is not part of the state ([`Key`] has no variant
//! for it, so an import refuses it), and [`super::Store::export`] leaves it out.
//!
//! Prefix bytes are fixed forever: a retired kind keeps its number and is never reused.
//! Ids never contain 0x00 (their alphabet is checked), so the separator is unambiguous.
//! Big-endian numbers make RocksDB's byte order the numeric order: timers iterate by
//! time, and a partition is one contiguous range.

use topics::{CommandId, LogTime, ReservationId, Sku, TenantId, WarehouseId};

use crate::partition::{DedupKey, EntityKey, TimerKey, TimerKind};

/// Kind byte of each entity. Never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Meta = 0x01,
    Stock = 0x02,
    Reservation = 0x03,
    // 0x04 is retired (idempotency records without the SKU); never reuse it.
    Timer = 0x05,
    Dedup = 0x06,
    /// Local to the store, never in the changelog (see the module docs).
    Checkpoint = 0x07,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0x01 => Kind::Meta,
            0x02 => Kind::Stock,
            0x03 => Kind::Reservation,
            0x05 => Kind::Timer,
            0x06 => Kind::Dedup,
            0x07 => Kind::Checkpoint,
            _ => return None,
        })
    }
}

/// A decoded key without its partition prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Meta,
    Entity(EntityKey),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable store key {0:02x?}")]
pub struct BadKey(pub Vec<u8>);

pub fn partition_prefix(partition: i32) -> [u8; 4] {
    (partition as u32).to_be_bytes()
}

/// The key bytes without the partition prefix (what the changelog carries).
pub fn encode(key: &Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    match key {
        Key::Meta => out.push(Kind::Meta as u8),
        Key::Entity(EntityKey::Stock(sku, wh)) => {
            out.push(Kind::Stock as u8);
            pair(&mut out, sku.as_str(), wh.as_str());
        }
        Key::Entity(EntityKey::Reservation(id)) => {
            out.push(Kind::Reservation as u8);
            out.extend_from_slice(id.sku.as_str().as_bytes());
            out.push(0);
            out.extend_from_slice(&id.seq.to_be_bytes());
        }
        Key::Entity(EntityKey::Dedup(k)) => {
            out.push(Kind::Dedup as u8);
            pair(&mut out, k.tenant.as_str(), k.sku.as_str());
            out.push(0);
            out.extend_from_slice(k.command_id.as_str().as_bytes());
        }
        Key::Entity(EntityKey::Timer(key)) => {
            out.push(Kind::Timer as u8);
            out.extend_from_slice(&key.at.0.to_be_bytes());
            out.push(key.kind as u8);
            out.extend_from_slice(&key.seq.to_be_bytes());
        }
    }
    out
}

/// The full RocksDB key of `partition`'s checkpoint (local to the store).
pub fn checkpoint_in(partition: i32) -> Vec<u8> {
    let mut out = partition_prefix(partition).to_vec();
    out.push(Kind::Checkpoint as u8);
    out
}

/// True when `key` (without the partition prefix, as the changelog carries it) is META.
pub fn is_meta(key: &[u8]) -> bool {
    key == [Kind::Meta as u8]
}

/// True when `key` (with its partition prefix) is a checkpoint key.
pub fn is_checkpoint(key: &[u8]) -> bool {
    key.len() == 5 && key[4] == Kind::Checkpoint as u8
}

/// The full RocksDB key.
pub fn encode_in(partition: i32, key: &Key) -> Vec<u8> {
    let mut out = partition_prefix(partition).to_vec();
    out.extend_from_slice(&encode(key));
    out
}

fn pair(out: &mut Vec<u8>, a: &str, b: &str) {
    out.extend_from_slice(a.as_bytes());
    out.push(0);
    out.extend_from_slice(b.as_bytes());
}

/// Decode key bytes without the partition prefix.
pub fn decode(bytes: &[u8]) -> Result<Key, BadKey> {
    let bad = || BadKey(bytes.to_vec());
    let (&kind, rest) = bytes.split_first().ok_or_else(bad)?;
    let split = |rest: &[u8]| -> Option<(String, String)> {
        let i = rest.iter().position(|&b| b == 0)?;
        Some((
            String::from_utf8(rest[..i].to_vec()).ok()?,
            String::from_utf8(rest[i + 1..].to_vec()).ok()?,
        ))
    };
    let key = match Kind::from_byte(kind).ok_or_else(bad)? {
        Kind::Meta if rest.is_empty() => Key::Meta,
        Kind::Meta | Kind::Checkpoint => return Err(bad()),
        Kind::Stock => {
            let (s, w) = split(rest).ok_or_else(bad)?;
            EntityKey::Stock(
                Sku::new(s).map_err(|_| bad())?,
                WarehouseId::new(w).map_err(|_| bad())?,
            )
            .into()
        }
        Kind::Reservation => {
            let i = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
            let sku = std::str::from_utf8(&rest[..i])
                .ok()
                .and_then(|s| Sku::new(s).ok())
                .ok_or_else(bad)?;
            let seq = u64::from_be_bytes(rest[i + 1..].try_into().map_err(|_| bad())?);
            EntityKey::Reservation(ReservationId::new(sku, seq)).into()
        }
        Kind::Dedup => {
            let (t, rest) = split(rest).ok_or_else(bad)?;
            let (s, c) = split(rest.as_bytes()).ok_or_else(bad)?;
            EntityKey::Dedup(DedupKey {
                tenant: TenantId::new(t).map_err(|_| bad())?,
                sku: Sku::new(s).map_err(|_| bad())?,
                command_id: CommandId::new(c).map_err(|_| bad())?,
            })
            .into()
        }
        Kind::Timer => {
            let rest: &[u8; 17] = rest.try_into().map_err(|_| bad())?;
            let kind = match rest[8] {
                1 => TimerKind::Expire,
                2 => TimerKind::ForgetReservation,
                3 => TimerKind::ForgetCommand,
                _ => return Err(bad()),
            };
            let at = LogTime(u64::from_be_bytes(rest[..8].try_into().map_err(|_| bad())?));
            let seq = u64::from_be_bytes(rest[9..].try_into().map_err(|_| bad())?);
            EntityKey::Timer(TimerKey { at, kind, seq }).into()
        }
    };
    Ok(key)
}

impl From<EntityKey> for Key {
    fn from(k: EntityKey) -> Key {
        Key::Entity(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_keeps_its_prefix() {
        let sku = Sku::new("sku-1").unwrap();
        let wh = WarehouseId::new("w").unwrap();
        let rid = ReservationId::new(sku.clone(), 7);
        let keys = [
            (Key::Meta, 0x01),
            (EntityKey::Stock(sku.clone(), wh).into(), 0x02),
            (EntityKey::Reservation(rid.clone()).into(), 0x03),
            (
                EntityKey::Dedup(DedupKey {
                    tenant: TenantId::new("t").unwrap(),
                    sku: sku.clone(),
                    command_id: CommandId::new("c/1").unwrap(),
                })
                .into(),
                0x06,
            ),
            (EntityKey::Timer(TimerKey::expire(LogTime(5), &rid)).into(), 0x05),
            (EntityKey::Timer(TimerKey::forget_reservation(LogTime(5), &rid)).into(), 0x05),
            (EntityKey::Timer(TimerKey::forget_command(LogTime(5), 12)).into(), 0x05),
        ];
        for (key, prefix) in keys {
            let bytes = encode(&key);
            assert_eq!(bytes[0], prefix, "{key:?}");
            assert_eq!(decode(&bytes), Ok(key));
        }
    }

    #[test]
    fn timers_sort_by_time_and_partitions_are_contiguous() {
        let t = |at, seq| {
            encode_in(3, &EntityKey::Timer(TimerKey::forget_command(LogTime(at), seq)).into())
        };
        assert!(t(255, 9) < t(256, 1));
        assert!(t(256, 1) < t(256, 2));
        assert!(encode_in(3, &Key::Meta) < encode_in(4, &Key::Meta));
        assert!(t(u64::MAX, i64::MAX) < encode_in(4, &Key::Meta));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let bad_kind = [&[0x05][..], &[0; 8], &[9], &[0; 8]].concat();
        for bytes in [
            &[][..],
            &[0x09],
            &[0x02, b'a'],
            &[0x03, b'a', 0, 1],
            &[0x05, 1, 2],
            &bad_kind,
            &[0x04, b't', 0, b'c'],
            &[0x06, b't', 0, b'c'],
            &[0x07],
        ] {
            assert!(decode(bytes).is_err(), "{bytes:?}");
        }
    }
}
