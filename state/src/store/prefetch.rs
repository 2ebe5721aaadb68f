//! What a batch will touch, and loading exactly that from the store into a view before
//! the batch is applied (TigerBeetle's prefetch: read what the batch needs, then apply
//! it in memory, deterministically).
//!
//! An entry touches, besides what its command names, whatever the timers due by its log
//! time touch: an expiring hold needs its reservation and its SKU's stock rows (a
//! forgotten reservation or command id needs nothing: it is only deleted). So the view
//! loads every timer due by the batch's latest entry time, then the reservations those
//! timers and the commands name, the idempotency records of the requests, and every
//! stock row of every SKU involved (a reserve looks at all of a SKU's rows).
//!
//! Memory per batch is bounded by the batch: its commands and the timers that fall due
//! during it. With ticks every second, that is about one second of expiries and
//! forgettings; only a partition that saw no entry at all for a long time (no ticks, no
//! traffic) meets more at once.

use rocksdb::{DB, Direction, IteratorMode, ReadOptions};
use topics::{LogCommand, LogTime, ReservationId, Sku};

use super::keys::{self, Key, Kind};
use super::values;
use super::{Store, StoreError};
use crate::partition::{DedupKey, EntityKey, PartitionState, Timer, TimerKey, TimerKind};

/// The keys a batch needs, gathered entry by entry.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    skus: Vec<Sku>,
    reservations: Vec<ReservationId>,
    dedup: Vec<DedupKey>,
    /// The latest entry time: every timer due by then may fire in the batch.
    timers_until: Option<LogTime>,
}

impl Needs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add what applying `command` at `at` will read.
    pub fn entry(&mut self, at: LogTime, command: &LogCommand) {
        self.timers_until = Some(self.timers_until.map_or(at, |t| t.max(at)));
        let LogCommand::Request(request) = command else { return };
        let sku = request.command.sku();
        self.dedup.push(DedupKey {
            tenant: request.tenant.clone(),
            sku: sku.clone(),
            command_id: request.command_id.clone(),
        });
        self.skus.push(sku.clone());
        use topics::Command::*;
        match &request.command {
            Release(c) => self.reservations.push(c.reservation.clone()),
            Purchase(c) => self.reservations.push(c.reservation.clone()),
            Extend(c) => self.reservations.push(c.reservation.clone()),
            Reserve(_) | Restock(_) | Adjust(_) | SetStock(_) => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.timers_until.is_none()
    }
}

impl Store {
    /// Load into `view` (a view of `partition`) everything `needs` names that it does not
    /// hold yet: due timers, then reservations, idempotency records and stock rows.
    pub fn prefetch(
        &self,
        partition: i32,
        view: &mut PartitionState,
        needs: Needs,
    ) -> Result<(), StoreError> {
        let Needs { mut skus, mut reservations, dedup, timers_until } = needs;
        let Some(until) = timers_until else { return Ok(()) };
        // An entry fires what is due by max(log time, its time): records stamped before
        // the log time (a broker clock that stepped back) still fire timers due at it.
        let until = until.max(view.log_time());
        for (key, timer) in self.due_timers(partition, view.log_time(), until)? {
            if let Timer::Expire { reservation } = &timer {
                reservations.push(reservation.clone());
            }
            view.load_timer(key, timer);
        }
        reservations.sort_unstable();
        reservations.dedup();
        // Every reservation touched needs its SKU's rows, cached or not.
        skus.extend(reservations.iter().map(|id| id.sku.clone()));
        reservations.retain(|id| !view.has_reservation(id));
        let found = self.multi_get(
            partition,
            reservations.iter().map(|id| Key::Entity(EntityKey::Reservation(id.clone()))),
        )?;
        for v in found.into_iter().flatten() {
            view.load_reservation(values::reservation_from(&v)?);
        }
        let mut dedup: Vec<&DedupKey> = dedup.iter().filter(|k| !view.has_dedup(k)).collect();
        dedup.sort_unstable();
        dedup.dedup();
        let found = self.multi_get(
            partition,
            dedup.iter().map(|k| Key::Entity(EntityKey::Dedup((*k).clone()))),
        )?;
        for (key, value) in dedup.into_iter().zip(found) {
            if let Some(v) = value {
                view.load_dedup(key.clone(), values::dedup_from(&v)?);
            }
        }
        skus.sort_unstable();
        skus.dedup();
        for sku in skus {
            if !view.stock_known(&sku) {
                self.load_stock_of(partition, view, sku)?;
            }
        }
        Ok(())
    }

    /// Timers of `partition` due at or before `until`, from `from` (the log time) on.
    /// Every earlier timer has fired: an entry fires every timer due by its time,
    /// including those that firing adds (a hold that expired long ago is forgotten in the
    /// same loop), and a command adds only timers due at or after its time. Starting at
    /// the log time skips the fired timers' deletions still in the LSM.
    fn due_timers(
        &self,
        partition: i32,
        from: LogTime,
        until: LogTime,
    ) -> Result<Vec<(TimerKey, Timer)>, StoreError> {
        let bound = |at: LogTime| {
            keys::encode_in(
                partition,
                &Key::Entity(EntityKey::Timer(TimerKey { at, kind: TimerKind::Expire, seq: 0 })),
            )
        };
        let upper = match until.0.checked_add(1) {
            Some(next) => bound(LogTime(next)),
            None => kind_end(partition, Kind::Timer),
        };
        let mut out = Vec::new();
        scan(&self.db, &bound(from), upper, |key, value| {
            let Key::Entity(EntityKey::Timer(k)) = keys::decode(&key[4..])? else {
                return Err(keys::BadKey(key.to_vec()).into());
            };
            out.push((k, values::timer_from(value)?));
            Ok(())
        })?;
        Ok(out)
    }

    fn load_stock_of(
        &self,
        partition: i32,
        view: &mut PartitionState,
        sku: Sku,
    ) -> Result<(), StoreError> {
        let mut from = keys::partition_prefix(partition).to_vec();
        from.push(Kind::Stock as u8);
        from.extend_from_slice(sku.as_str().as_bytes());
        from.push(0);
        let mut upper = from.clone();
        *upper.last_mut().unwrap_or_else(|| unreachable!("ends in the separator")) = 1;
        let mut any = false;
        scan(&self.db, &from, upper, |key, value| {
            let Key::Entity(EntityKey::Stock(s, w)) = keys::decode(&key[4..])? else {
                return Err(keys::BadKey(key.to_vec()).into());
            };
            view.load_stock(s, w, values::stock_from(value)?);
            any = true;
            Ok(())
        })?;
        if !any {
            view.stock_absent(sku);
        }
        Ok(())
    }

    fn multi_get(
        &self,
        partition: i32,
        keys: impl Iterator<Item = Key>,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let keys: Vec<Vec<u8>> = keys.map(|k| keys::encode_in(partition, &k)).collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.db.multi_get(&keys).into_iter().map(|r| r.map_err(StoreError::from)).collect()
    }
}

/// The first key after every key of `kind` in `partition`.
fn kind_end(partition: i32, kind: Kind) -> Vec<u8> {
    let mut out = keys::partition_prefix(partition).to_vec();
    out.push(kind as u8 + 1);
    out
}

/// Call `f` with every key/value in `[from, upper)`, in key order.
fn scan(
    db: &DB,
    from: &[u8],
    upper: Vec<u8>,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(upper);
    for item in db.iterator_opt(IteratorMode::From(from, Direction::Forward), opts) {
        let (k, v) = item?;
        f(&k, &v)?;
    }
    Ok(())
}
