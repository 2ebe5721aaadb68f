//! The state of one partition, as the machine sees it: stock rows, reservations,
//! remembered command ids and the timers that expire and forget them.
//!
//! Every mutation goes through a method here, which records the entity as changed; the
//! store persists exactly those entities (and nothing else) in the batch's WriteBatch.
//!
//! A `PartitionState` is either *whole* (every entity of the partition: tests, the
//! fuzzer, audits of small logs) or a *view* of a RocksDB store (the processor): the
//! store loads exactly what a batch will touch before the batch is applied
//! ([`crate::store::Store::prefetch`]), and after the batch the view keeps at most a
//! configured number of rows ([`PartitionState::evict`]). The machine cannot tell the
//! two apart: to it an entity that is not in the state does not exist, which is true of
//! a view for every key its batch needs.

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::{FxHashMap, FxHashSet};
use topics::{
    Command, CommandId, LogTime, Reply, Reservation, ReservationId, Sku, StockLevel, TenantId,
    WarehouseId,
};

/// A remembered request: the command as it was first sent, and its reply.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DedupRecord {
    pub command: Command,
    pub reply: Reply,
}

/// Something that happens at a log time.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Timer {
    /// An active hold reaches its `expires_at`.
    Expire { reservation: ReservationId },
    /// A finished reservation leaves the store.
    ForgetReservation { reservation: ReservationId },
    /// A command id leaves the idempotency window.
    ForgetCommand { tenant: TenantId, sku: Sku, command_id: CommandId },
}

/// What kind of work a timer does; part of its key, so never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum TimerKind {
    Expire = 1,
    ForgetReservation = 2,
    ForgetCommand = 3,
}

/// When a timer fires and which one it is: time, then kind, then the log offset that
/// names its subject (a reservation's reserve command, or the request whose id is to be
/// forgotten). Unique within a partition, and ordered by integers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey {
    pub at: LogTime,
    pub kind: TimerKind,
    pub seq: u64,
}

impl TimerKey {
    pub fn expire(at: LogTime, reservation: &ReservationId) -> Self {
        Self { at, kind: TimerKind::Expire, seq: reservation.seq }
    }

    pub fn forget_reservation(at: LogTime, reservation: &ReservationId) -> Self {
        Self { at, kind: TimerKind::ForgetReservation, seq: reservation.seq }
    }

    pub fn forget_command(at: LogTime, request_offset: i64) -> Self {
        Self { at, kind: TimerKind::ForgetCommand, seq: request_offset as u64 }
    }
}

/// The key of anything the store keeps for a partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityKey {
    Stock(Sku, WarehouseId),
    Reservation(ReservationId),
    Dedup(DedupKey),
    Timer(TimerKey),
}

/// The scope of an idempotency key: the tenant, the SKU the command touches and the
/// client's command id. The SKU is part of it so that the answer never depends on
/// whether two SKUs share a partition: one id used with two SKUs is two commands.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DedupKey {
    pub tenant: TenantId,
    pub sku: Sku,
    pub command_id: CommandId,
}

/// A sorted, comparable copy of a partition's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub log_time: LogTime,
    pub applied: Option<i64>,
    pub stock: BTreeMap<(Sku, WarehouseId), StockLevel>,
    pub reservations: BTreeMap<ReservationId, Reservation>,
    pub dedup: BTreeMap<DedupKey, DedupRecord>,
    pub timers: BTreeMap<TimerKey, Timer>,
}

/// All of one partition's state.
#[derive(Debug, Clone, Default)]
pub struct PartitionState {
    /// Log time: the largest record timestamp applied so far.
    pub(crate) log_time: LogTime,
    /// Offset of the last applied command, `None` before the first.
    pub(crate) applied: Option<i64>,
    pub(crate) stock: FxHashMap<Sku, BTreeMap<WarehouseId, StockLevel>>,
    pub(crate) reservations: FxHashMap<ReservationId, Reservation>,
    /// Boxed: records are large and the map grows by moving its entries.
    pub(crate) dedup: FxHashMap<DedupKey, Box<DedupRecord>>,
    /// Timers that end holds and forget reservations.
    pub(crate) timers: BTreeMap<TimerKey, Timer>,
    /// The timers that forget command ids, one per command, in key order: they are
    /// created in log-time order (a command's time plus the idempotency window), so a
    /// queue keeps them sorted at O(1) a timer where the B-tree paid a search.
    pub(crate) forget_commands: VecDeque<(TimerKey, Timer)>,
    /// Entities changed since the last [`PartitionState::take_changes`].
    changed: Vec<EntityKey>,
    /// In a view: SKUs the store was asked for and has no stock rows of. Only the
    /// prefetch reads it (so that it does not ask again); the machine never does.
    absent_skus: FxHashSet<Sku>,
}

impl PartitionState {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty view of a partition whose state stands at `log_time` and `applied`.
    pub fn view(log_time: LogTime, applied: Option<i64>) -> Self {
        Self { log_time, applied, ..Self::default() }
    }

    /// Rows held in memory: stock rows (and SKUs known to have none), reservations,
    /// idempotency records and timers.
    pub fn rows(&self) -> usize {
        self.stock.values().map(BTreeMap::len).sum::<usize>()
            + self.absent_skus.len()
            + self.reservations.len()
            + self.dedup.len()
            + self.timers.len()
            + self.forget_commands.len()
    }

    /// End of a batch in a view (its changes taken and written). Timers and idempotency
    /// records always leave: the next batch scans the due timers from the store, and a
    /// retry (rare) reads its record through the Bloom filter. Stock rows and
    /// reservations (read again by the purchase or release that follows a reserve) stay
    /// as a cache while there are at most `max_rows` of them; past that, reservations go
    /// first, then, if the stock rows alone are too many, those too. The hot SKUs' rows
    /// therefore stay between batches; the store's block cache keeps the rest a read
    /// away. Emptying a full cache at once is simple and amortised O(1) per row.
    pub fn evict(&mut self, max_rows: usize) {
        debug_assert!(self.changed.is_empty(), "evict before the changes are written");
        self.timers.clear();
        self.forget_commands.clear();
        self.dedup.clear();
        let stock_rows = self.stock.values().map(BTreeMap::len).sum::<usize>();
        if stock_rows + self.absent_skus.len() + self.reservations.len() > max_rows {
            self.reservations.clear();
        }
        if stock_rows + self.absent_skus.len() > max_rows {
            self.stock.clear();
            self.absent_skus.clear();
        }
    }

    /// In a view: whether the stock rows of `sku` are known (loaded, or known absent).
    pub(crate) fn stock_known(&self, sku: &Sku) -> bool {
        self.stock.contains_key(sku) || self.absent_skus.contains(sku)
    }

    pub(crate) fn stock_absent(&mut self, sku: Sku) {
        self.absent_skus.insert(sku);
    }

    pub(crate) fn has_reservation(&self, id: &ReservationId) -> bool {
        self.reservations.contains_key(id)
    }

    pub(crate) fn has_dedup(&self, key: &DedupKey) -> bool {
        self.dedup.contains_key(key)
    }

    pub fn log_time(&self) -> LogTime {
        self.log_time
    }

    pub fn applied_offset(&self) -> Option<i64> {
        self.applied
    }

    pub fn stock(&self, sku: &Sku) -> Option<&BTreeMap<WarehouseId, StockLevel>> {
        self.stock.get(sku)
    }

    pub fn stock_level(&self, sku: &Sku, warehouse: &WarehouseId) -> Option<&StockLevel> {
        self.stock.get(sku)?.get(warehouse)
    }

    pub fn reservation(&self, id: &ReservationId) -> Option<&Reservation> {
        self.reservations.get(id)
    }

    pub fn dedup(&self, key: &DedupKey) -> Option<&DedupRecord> {
        self.dedup.get(key).map(|r| &**r)
    }

    /// Every stock row, sorted, for audits and comparisons.
    pub fn stock_rows(&self) -> BTreeMap<(Sku, WarehouseId), StockLevel> {
        self.stock
            .iter()
            .flat_map(|(sku, rows)| rows.iter().map(move |(wh, l)| ((sku.clone(), wh.clone()), *l)))
            .collect()
    }

    /// Every reservation, sorted by id.
    pub fn reservations(&self) -> BTreeMap<ReservationId, Reservation> {
        self.reservations.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn dedup_records(&self) -> BTreeMap<DedupKey, DedupRecord> {
        self.dedup.iter().map(|(k, v)| (k.clone(), (**v).clone())).collect()
    }

    /// Every timer, in key order.
    pub fn timers(&self) -> BTreeMap<TimerKey, Timer> {
        let mut all = self.timers.clone();
        all.extend(self.forget_commands.iter().cloned());
        all
    }

    /// One timer, by its key.
    pub fn timer(&self, key: &TimerKey) -> Option<&Timer> {
        match key.kind {
            TimerKind::ForgetCommand => {
                self.forget_command_at(key).ok().map(|i| &self.forget_commands[i].1)
            }
            _ => self.timers.get(key),
        }
    }

    /// Everything that is state (not the change tracking), sorted, for comparisons:
    /// replay, restore and reopen must all give an equal snapshot (invariant I6).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            log_time: self.log_time,
            applied: self.applied,
            stock: self.stock_rows(),
            reservations: self.reservations(),
            dedup: self.dedup_records(),
            timers: self.timers(),
        }
    }

    /// The entities changed since the last call, in the order they were first changed
    /// (deterministic: the same commands give the same order), without repeats.
    pub fn take_changes(&mut self) -> Vec<EntityKey> {
        // The next batch's list starts as large as this one's: no regrowing it.
        let capacity = self.changed.len();
        let mut changed = std::mem::replace(&mut self.changed, Vec::with_capacity(capacity));
        // Repeats out in one pass over hashes; sorting the keys (enums of strings) cost
        // 40% of a batch's instructions (BENCHMARKS.md).
        let first: Vec<bool> = {
            let mut seen = FxHashSet::with_capacity_and_hasher(changed.len(), Default::default());
            changed.iter().map(|k| seen.insert(k)).collect()
        };
        let mut first = first.into_iter();
        changed.retain(|_| first.next().unwrap_or(false));
        changed
    }

    // ----- mutations (each records what it changed) -----------------------------------

    pub(crate) fn put_stock(&mut self, sku: &Sku, warehouse: &WarehouseId, level: StockLevel) {
        self.stock.entry(sku.clone()).or_default().insert(warehouse.clone(), level);
        self.changed.push(EntityKey::Stock(sku.clone(), warehouse.clone()));
    }

    pub(crate) fn put_reservation(&mut self, r: Reservation) {
        self.changed.push(EntityKey::Reservation(r.id.clone()));
        self.reservations.insert(r.id.clone(), r);
    }

    pub(crate) fn remove_reservation(&mut self, id: &ReservationId) {
        self.reservations.remove(id);
        self.changed.push(EntityKey::Reservation(id.clone()));
    }

    pub(crate) fn put_dedup(&mut self, key: DedupKey, record: DedupRecord) {
        self.changed.push(EntityKey::Dedup(key.clone()));
        self.dedup.insert(key, Box::new(record));
    }

    pub(crate) fn remove_dedup(&mut self, key: DedupKey) {
        self.dedup.remove(&key);
        self.changed.push(EntityKey::Dedup(key));
    }

    pub(crate) fn add_timer(&mut self, key: TimerKey, timer: Timer) {
        self.changed.push(EntityKey::Timer(key));
        self.insert_timer(key, timer);
    }

    /// Where `key` is in the queue of command-id timers (`Err`: where it would go).
    fn forget_command_at(&self, key: &TimerKey) -> Result<usize, usize> {
        self.forget_commands.binary_search_by(|(k, _)| k.cmp(key))
    }

    /// Into its structure; a timer that forgets a command id goes to the back of the
    /// queue, or where it sorts if it is not the latest (as when timers are loaded).
    fn insert_timer(&mut self, key: TimerKey, timer: Timer) {
        if key.kind != TimerKind::ForgetCommand {
            self.timers.insert(key, timer);
            return;
        }
        if self.forget_commands.back().is_none_or(|(last, _)| *last < key) {
            self.forget_commands.push_back((key, timer));
            return;
        }
        match self.forget_command_at(&key) {
            Ok(i) => self.forget_commands[i].1 = timer,
            Err(i) => self.forget_commands.insert(i, (key, timer)),
        }
    }

    pub(crate) fn remove_timer(&mut self, key: TimerKey) {
        if key.kind == TimerKind::ForgetCommand {
            if let Ok(i) = self.forget_command_at(&key) {
                self.forget_commands.remove(i);
            }
        } else {
            self.timers.remove(&key);
        }
        self.changed.push(EntityKey::Timer(key));
    }

    /// The earliest timer due at or before `now`, removed.
    pub(crate) fn pop_due_timer(&mut self, now: LogTime) -> Option<(TimerKey, Timer)> {
        let tree = self.timers.first_key_value().map(|(k, _)| *k);
        let queue = self.forget_commands.front().map(|(k, _)| *k);
        let first = tree.into_iter().chain(queue).min()?;
        if first.at > now {
            return None;
        }
        let (key, timer) = if Some(first) == queue {
            self.forget_commands.pop_front()?
        } else {
            self.timers.pop_first()?
        };
        self.changed.push(EntityKey::Timer(key));
        Some((key, timer))
    }

    // ----- loading (used by the store on open and on restore; not recorded) -----------

    pub(crate) fn load_stock(&mut self, sku: Sku, warehouse: WarehouseId, level: StockLevel) {
        self.stock.entry(sku).or_default().insert(warehouse, level);
    }

    pub(crate) fn load_reservation(&mut self, r: Reservation) {
        self.reservations.insert(r.id.clone(), r);
    }

    pub(crate) fn load_dedup(&mut self, key: DedupKey, record: DedupRecord) {
        self.dedup.insert(key, Box::new(record));
    }

    pub(crate) fn load_timer(&mut self, key: TimerKey, timer: Timer) {
        self.insert_timer(key, timer);
    }

    pub(crate) fn load_meta(&mut self, meta: crate::store::values::Meta) {
        self.log_time = meta.log_time;
        self.applied = meta.applied;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forget(at: u64, seq: i64) -> (TimerKey, Timer) {
        let timer = Timer::ForgetCommand {
            tenant: TenantId::new("t").unwrap(),
            sku: Sku::new("s").unwrap(),
            command_id: topics::CommandId::new(format!("c{seq}")).unwrap(),
        };
        (TimerKey::forget_command(LogTime(at), seq), timer)
    }

    /// Timers kept in two structures (the B-tree, and the queue of command-id timers) come
    /// out as one sequence in key order: time, then kind, then offset; a command-id timer
    /// loaded out of order still takes its place; lookups and removals find it.
    #[test]
    fn timers_fire_in_key_order_across_the_tree_and_the_queue() {
        let mut s = PartitionState::new();
        let id = ReservationId { sku: Sku::new("s").unwrap(), seq: 9 };
        let expire = (TimerKey::expire(LogTime(5), &id), Timer::Expire { reservation: id });
        let (f3, f5, f7, f8) = (forget(3, 1), forget(5, 2), forget(7, 3), forget(8, 4));
        s.add_timer(f5.0, f5.1.clone());
        s.add_timer(f7.0, f7.1.clone());
        s.add_timer(expire.0, expire.1.clone());
        s.load_timer(f3.0, f3.1.clone());
        s.add_timer(f8.0, f8.1.clone());
        assert_eq!(s.timer(&f3.0), Some(&f3.1));
        assert_eq!(s.timers().len(), 5);
        s.remove_timer(f8.0);
        assert_eq!(s.timer(&f8.0), None);
        let mut fired = Vec::new();
        while let Some((key, _)) = s.pop_due_timer(LogTime(7)) {
            fired.push(key);
        }
        assert_eq!(fired, [f3.0, expire.0, f5.0, f7.0]);
        assert_eq!(s.rows(), 0);
    }
}
