//! A deliberately naive reference model of the reservation state machine.
//!
//! Written from the contract only (rules 1-5 and the per-command checks), never from
//! `state/src`. Plain maps, linear scans, u128/i128 sums, no indexes, no timer queue:
//! due timers are found by scanning everything on every entry. Slow on purpose, and
//! meant to be checked by reading it next to the contract.

use std::collections::BTreeMap;

use state::{Effects, MachineConfig};
use topics::{
    Adjust, Allocation, Command, CommandId, Event, Extend, LogCommand, LogTime, Outcome, Position,
    Purchase, Rejection, Release, Reply, Request, Reservation, ReservationId, ReservationState,
    Reserve, Restock, SetStock, Sku, StockLevel, Strategy, TenantId, WarehouseId,
};

type Rows = BTreeMap<WarehouseId, StockLevel>;
type Scope = (TenantId, Sku, CommandId);

/// Rule 2: timers fire in (time, kind, seq) order, kinds ordered as declared here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Expire,
    ForgetReservation,
    ForgetCommand,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Hold(ReservationId),
    Record(Scope),
}

/// Rule 4: what an idempotency scope remembers.
#[derive(Debug, Clone)]
struct Record {
    command: Command,
    reply: Reply,
    /// `now` when the record was made; its ForgetCommand timer is this + dedup window.
    applied_at: u64,
    /// Offset of the request that made it: the ForgetCommand timer's seq.
    offset: i64,
}

#[derive(Debug)]
pub struct Model {
    default_ttl: u64,
    max_ttl: u64,
    dedup_window: u64,
    retention: u64,
    max_quantity: u32,
    max_stock: u64,
    max_warehouses: u32,
    /// Rule 1: log time, starts at 0.
    now: u64,
    stock: BTreeMap<Sku, Rows>,
    holds: BTreeMap<ReservationId, Reservation>,
    records: BTreeMap<Scope, Record>,
    /// I2 bookkeeping: sum of stock-keeping deltas per row.
    deltas: BTreeMap<(Sku, WarehouseId), i128>,
    /// I7 bookkeeping: every ending of every hold ever (never forgotten).
    endings: BTreeMap<ReservationId, Vec<ReservationState>>,
}

impl Model {
    pub fn new(cfg: &MachineConfig) -> Self {
        Model {
            default_ttl: cfg.default_ttl_ms,
            max_ttl: cfg.max_ttl_ms,
            dedup_window: cfg.dedup_window_ms,
            retention: cfg.reservation_retention_ms,
            max_quantity: cfg.max_quantity,
            max_stock: cfg.max_stock,
            max_warehouses: cfg.max_warehouses,
            now: 0,
            stock: BTreeMap::new(),
            holds: BTreeMap::new(),
            records: BTreeMap::new(),
            deltas: BTreeMap::new(),
            endings: BTreeMap::new(),
        }
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    /// The stock rows of a SKU (empty when it has none).
    pub fn availability(&self, sku: &Sku) -> Rows {
        self.stock.get(sku).cloned().unwrap_or_default()
    }

    pub fn reservation(&self, id: &ReservationId) -> Option<&Reservation> {
        self.holds.get(id)
    }

    pub fn has_record(&self, tenant: &TenantId, sku: &Sku, id: &CommandId) -> bool {
        self.records.contains_key(&(tenant.clone(), sku.clone(), id.clone()))
    }

    pub fn apply(&mut self, offset: i64, at: LogTime, partition: i32, cmd: &LogCommand) -> Effects {
        // Rule 1: log time never goes backwards.
        self.now = self.now.max(at.0);
        // Rule 5 needs each SKU's availability before the entry's first change to it;
        // nothing has changed yet, so a snapshot of every SKU now is exactly that.
        let before: BTreeMap<Sku, u128> =
            self.stock.keys().map(|s| (s.clone(), self.total_available(s))).collect();
        let mut events = Vec::new();
        // Rule 2: fire due timers one at a time, smallest (time, kind, seq) first; a
        // fired timer may make another due (an expiry's ForgetReservation).
        while let Some((_, kind, _, target)) = self.next_due_timer() {
            match (kind, target) {
                (Kind::Expire, Target::Hold(id)) => self.expire(&id, &mut events),
                (Kind::ForgetReservation, Target::Hold(id)) => {
                    self.holds.remove(&id);
                }
                (Kind::ForgetCommand, Target::Record(scope)) => {
                    self.records.remove(&scope);
                }
                other => panic!("model bug: timer {other:?}"),
            }
        }
        // Rules 3 and 4.
        let reply = match cmd {
            LogCommand::Tick => None,
            LogCommand::Request(req) => Some(self.request(req, offset, partition, &mut events)),
        };
        // Rule 5: SKUs whose stock changed, in first-touched order, then the
        // out-of-stock / back-in-stock events after everything else.
        let mut touched: Vec<Sku> = Vec::new();
        for e in &events {
            if let Event::StockChanged { sku, .. } = e
                && !touched.contains(sku)
            {
                touched.push(sku.clone());
            }
        }
        for sku in &touched {
            let was = before.get(sku).copied().unwrap_or(0);
            let is = self.total_available(sku);
            if was > 0 && is == 0 {
                events.push(Event::OutOfStock { sku: sku.clone() });
            }
            if was == 0 && is > 0 {
                events.push(Event::BackInStock { sku: sku.clone(), available: clamp_u64(is) });
            }
        }
        Effects { reply, events, touched }
    }

    /// Rule 2: the smallest due timer, derived from the state by a full scan.
    fn next_due_timer(&self) -> Option<(u64, Kind, i128, Target)> {
        let mut due = Vec::new();
        for h in self.holds.values() {
            let seq = i128::from(h.id.seq);
            if h.state == ReservationState::Active {
                if h.expires_at.0 <= self.now {
                    due.push((h.expires_at.0, Kind::Expire, seq, Target::Hold(h.id.clone())));
                }
            } else {
                let ended = h.ended_at.expect("model bug: final hold without ended_at").0;
                let forget = ended.saturating_add(self.retention);
                if forget <= self.now {
                    due.push((forget, Kind::ForgetReservation, seq, Target::Hold(h.id.clone())));
                }
            }
        }
        for (scope, r) in &self.records {
            let forget = r.applied_at.saturating_add(self.dedup_window);
            if forget <= self.now {
                let seq = i128::from(r.offset);
                due.push((forget, Kind::ForgetCommand, seq, Target::Record(scope.clone())));
            }
        }
        due.into_iter().min()
    }

    /// Rule 2, Expire: ended at the timer's time (expires_at), units go back per
    /// allocation in order, then ReservationExpired.
    fn expire(&mut self, id: &ReservationId, events: &mut Vec<Event>) {
        let hold = self.holds.get(id).expect("model bug: due hold missing").clone();
        for a in &hold.allocations {
            self.row(&id.sku, &a.warehouse).reserved -= u64::from(a.quantity);
            self.changed(&id.sku, &a.warehouse, events);
        }
        self.end(id, ReservationState::Expired, hold.expires_at);
        events.push(Event::ReservationExpired {
            reservation: id.clone(),
            expired_at: hold.expires_at,
            returned: hold.quantity,
        });
    }

    /// Rule 4: idempotency per (tenant, SKU, command id).
    fn request(
        &mut self,
        req: &Request,
        offset: i64,
        partition: i32,
        events: &mut Vec<Event>,
    ) -> Reply {
        let scope = (req.tenant.clone(), req.command.sku().clone(), req.command_id.clone());
        let mut reply = Reply {
            tenant: req.tenant.clone(),
            command_id: req.command_id.clone(),
            position: Position { partition, offset },
            at: LogTime(self.now),
            outcome: Outcome::Rejected(Rejection::Conflict),
        };
        if let Some(record) = self.records.get(&scope) {
            if record.command == req.command {
                return record.reply.clone(); // the stored reply, no events
            }
            return reply; // Conflict, nothing remembered
        }
        let mut own = Vec::new();
        reply.outcome = match self.execute(&req.tenant, &req.command, offset, &mut own) {
            Ok(outcome) => {
                events.extend(own);
                outcome
            }
            // A rejected command changes nothing and emits nothing: every command
            // below does all its checks before its first change.
            Err(rejection) => {
                assert!(own.is_empty(), "model bug: a rejection emitted events");
                Outcome::Rejected(rejection)
            }
        };
        let record = Record {
            command: req.command.clone(),
            reply: reply.clone(),
            applied_at: self.now,
            offset,
        };
        self.records.insert(scope, record);
        reply
    }

    fn execute(
        &mut self,
        tenant: &TenantId,
        cmd: &Command,
        offset: i64,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        match cmd {
            Command::Reserve(c) => self.reserve(tenant, c, offset, events),
            Command::Release(c) => self.release(tenant, c, events),
            Command::Purchase(c) => self.purchase(tenant, c, events),
            Command::Extend(c) => self.extend(tenant, c, events),
            Command::Restock(c) => self.restock(c, events),
            Command::Adjust(c) => self.adjust(c, events),
            Command::SetStock(c) => self.set_stock(c, events),
        }
    }

    fn reserve(
        &mut self,
        tenant: &TenantId,
        c: &Reserve,
        offset: i64,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let quantity = c.quantity.get();
        // (a)
        if quantity > self.max_quantity {
            return Err(Rejection::QuantityTooLarge { max: self.max_quantity });
        }
        // (b) checked whatever `warehouse` says
        if let Some(Strategy::Priority { order }) = &c.strategy {
            if order.is_empty() {
                return Err(Rejection::EmptyOrder);
            }
            if order.len() as u128 > u128::from(self.max_warehouses) {
                return Err(Rejection::TooManyWarehouses { max: self.max_warehouses });
            }
            for i in 0..order.len() {
                if order[..i].contains(&order[i]) {
                    return Err(Rejection::DuplicateWarehouse { warehouse: order[i].clone() });
                }
            }
        }
        // (c)
        let rows = self.availability(&c.sku);
        if rows.is_empty() {
            return Err(Rejection::UnknownSku);
        }
        // (d)
        let ttl = self.check_ttl(c.ttl_ms.unwrap_or(self.default_ttl))?;
        // (e)
        let candidates: Vec<WarehouseId> = if let Some(w) = &c.warehouse {
            if !rows.contains_key(w) {
                return Err(Rejection::UnknownWarehouse { warehouse: w.clone() });
            }
            vec![w.clone()]
        } else {
            match c.strategy.clone().unwrap_or_default() {
                Strategy::Priority { order } => {
                    for w in &order {
                        if !rows.contains_key(w) {
                            return Err(Rejection::UnknownWarehouse { warehouse: w.clone() });
                        }
                    }
                    order
                }
                Strategy::MostAvailable => most_available(&rows),
                Strategy::FewestSplits => {
                    // The smallest single row that can serve it all (ties: smallest id,
                    // which is BTreeMap order, kept by the strict `<`).
                    let mut best: Option<(&WarehouseId, u64)> = None;
                    for (w, l) in &rows {
                        let fits = u128::from(l.available()) >= u128::from(quantity);
                        if fits && best.is_none_or(|(_, b)| l.available() < b) {
                            best = Some((w, l.available()));
                        }
                    }
                    match best {
                        Some((w, _)) => vec![w.clone()],
                        None => most_available(&rows),
                    }
                }
            }
        };
        // (f)
        let total: u128 = candidates.iter().map(|w| u128::from(rows[w].available())).sum();
        if total == 0 || (total < u128::from(quantity) && !c.allow_partial) {
            return Err(Rejection::InsufficientStock {
                requested: quantity,
                available: clamp_u64(total),
            });
        }
        // (g) greedy in candidate order, skipping zero takes.
        let mut left: u128 = u128::from(quantity).min(total);
        let mut allocations = Vec::new();
        for w in &candidates {
            let take = left.min(u128::from(rows[w].available()));
            if take == 0 {
                continue;
            }
            left -= take;
            allocations.push(Allocation { warehouse: w.clone(), quantity: take as u32 });
        }
        for a in &allocations {
            self.row(&c.sku, &a.warehouse).reserved += u64::from(a.quantity);
            self.changed(&c.sku, &a.warehouse, events);
        }
        let taken: u128 = allocations.iter().map(|a| u128::from(a.quantity)).sum();
        let id = ReservationId::new(c.sku.clone(), offset as u64);
        let expires_at = LogTime(self.now.saturating_add(ttl));
        let hold = Reservation {
            id: id.clone(),
            tenant: tenant.clone(),
            quantity: taken as u32,
            allocations: allocations.clone(),
            state: ReservationState::Active,
            created_at: LogTime(self.now),
            expires_at,
            purchased: 0,
            ended_at: None,
        };
        self.holds.insert(id.clone(), hold);
        events.push(Event::ReservationCreated {
            reservation: id.clone(),
            tenant: tenant.clone(),
            quantity: taken as u32,
            allocations: allocations.clone(),
            expires_at,
        });
        Ok(Outcome::Reserved { reservation: id, quantity: taken as u32, allocations, expires_at })
    }

    fn release(
        &mut self,
        tenant: &TenantId,
        c: &Release,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let hold = self.active_hold(tenant, &c.reservation)?;
        let id = &c.reservation;
        for a in &hold.allocations {
            self.row(&id.sku, &a.warehouse).reserved -= u64::from(a.quantity);
            self.changed(&id.sku, &a.warehouse, events);
        }
        self.end(id, ReservationState::Released, LogTime(self.now));
        events
            .push(Event::ReservationReleased { reservation: id.clone(), returned: hold.quantity });
        Ok(Outcome::Released { reservation: id.clone(), returned: hold.quantity })
    }

    fn purchase(
        &mut self,
        tenant: &TenantId,
        c: &Purchase,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let hold = self.active_hold(tenant, &c.reservation)?;
        let id = &c.reservation;
        let held = hold.quantity;
        let q = c.quantity.map_or(held, |n| n.get());
        if q > held {
            return Err(Rejection::ExceedsReservation { held, requested: q });
        }
        // Plan the sells first (allocation order) so the StockLimit check precedes changes.
        let mut to_sell = q;
        let mut sells = Vec::new();
        for a in &hold.allocations {
            let sell = to_sell.min(a.quantity);
            to_sell -= sell;
            sells.push(sell);
            let sold = self.stock[&id.sku][&a.warehouse].sold;
            if u128::from(sold) + u128::from(sell) > u128::from(u64::MAX) {
                return Err(Rejection::StockLimit { max: self.max_stock });
            }
        }
        for (a, sell) in hold.allocations.iter().zip(sells) {
            let row = self.row(&id.sku, &a.warehouse);
            row.reserved -= u64::from(a.quantity);
            row.on_hand -= u64::from(sell);
            row.sold += u64::from(sell);
            self.changed(&id.sku, &a.warehouse, events); // even when sell is 0
        }
        self.end(id, ReservationState::Purchased, LogTime(self.now));
        self.holds.get_mut(id).expect("hold").purchased = q;
        let returned = held - q;
        events.push(Event::ReservationPurchased { reservation: id.clone(), quantity: q, returned });
        Ok(Outcome::Purchased { reservation: id.clone(), quantity: q, returned })
    }

    fn extend(
        &mut self,
        tenant: &TenantId,
        c: &Extend,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        self.active_hold(tenant, &c.reservation)?;
        let ttl = self.check_ttl(c.ttl_ms)?;
        let expires_at = LogTime(self.now.saturating_add(ttl)); // may shorten
        self.holds.get_mut(&c.reservation).expect("hold").expires_at = expires_at;
        events.push(Event::ReservationExtended { reservation: c.reservation.clone(), expires_at });
        Ok(Outcome::Extended { reservation: c.reservation.clone(), expires_at })
    }

    fn restock(&mut self, c: &Restock, events: &mut Vec<Event>) -> Result<Outcome, Rejection> {
        let rows = self.availability(&c.sku);
        let current = rows.get(&c.warehouse).copied();
        if current.is_none() && rows.len() as u128 >= u128::from(self.max_warehouses) {
            return Err(Rejection::TooManyWarehouses { max: self.max_warehouses });
        }
        let on_hand = current.map_or(0, |l| l.on_hand);
        let quantity = c.quantity.get();
        if u128::from(on_hand) + u128::from(quantity) > u128::from(self.max_stock) {
            return Err(Rejection::StockLimit { max: self.max_stock });
        }
        self.row(&c.sku, &c.warehouse).on_hand += u64::from(quantity); // creates the row
        self.count_delta(&c.sku, &c.warehouse, i128::from(quantity));
        Ok(self.stock_updated(&c.sku, &c.warehouse, events))
    }

    fn adjust(&mut self, c: &Adjust, events: &mut Vec<Event>) -> Result<Outcome, Rejection> {
        let rows = self.availability(&c.sku);
        if rows.is_empty() {
            return Err(Rejection::UnknownSku);
        }
        let Some(row) = rows.get(&c.warehouse).copied() else {
            return Err(Rejection::UnknownWarehouse { warehouse: c.warehouse.clone() });
        };
        let target: i128 = i128::from(row.on_hand) + i128::from(c.delta);
        if target < i128::from(row.reserved) {
            return Err(Rejection::BelowReserved {
                on_hand: row.on_hand,
                reserved: row.reserved,
                requested_on_hand: clamp_i64(target),
            });
        }
        if target > i128::from(self.max_stock) {
            return Err(Rejection::StockLimit { max: self.max_stock });
        }
        if c.delta == 0 {
            // The current row, no version bump, no event.
            return Ok(Outcome::StockUpdated {
                sku: c.sku.clone(),
                warehouse: c.warehouse.clone(),
                level: row,
            });
        }
        self.row(&c.sku, &c.warehouse).on_hand = target as u64;
        self.count_delta(&c.sku, &c.warehouse, i128::from(c.delta));
        Ok(self.stock_updated(&c.sku, &c.warehouse, events))
    }

    fn set_stock(&mut self, c: &SetStock, events: &mut Vec<Event>) -> Result<Outcome, Rejection> {
        let rows = self.availability(&c.sku);
        let current = rows.get(&c.warehouse).copied();
        let version = current.map_or(0, |l| l.version);
        if c.expected_version != version {
            return Err(Rejection::VersionMismatch { current: version });
        }
        let row = current.unwrap_or_default();
        if c.on_hand < row.reserved {
            return Err(Rejection::BelowReserved {
                on_hand: row.on_hand,
                reserved: row.reserved,
                requested_on_hand: clamp_i64(i128::from(c.on_hand)),
            });
        }
        if c.on_hand > self.max_stock {
            return Err(Rejection::StockLimit { max: self.max_stock });
        }
        if current.is_none() && rows.len() as u128 >= u128::from(self.max_warehouses) {
            return Err(Rejection::TooManyWarehouses { max: self.max_warehouses });
        }
        self.row(&c.sku, &c.warehouse).on_hand = c.on_hand; // bumps even if unchanged
        self.count_delta(&c.sku, &c.warehouse, i128::from(c.on_hand) - i128::from(row.on_hand));
        Ok(self.stock_updated(&c.sku, &c.warehouse, events))
    }

    // ----- helpers ----------------------------------------------------------------

    /// The three checks shared by release, purchase and extend, in contract order.
    fn active_hold(&self, tenant: &TenantId, id: &ReservationId) -> Result<Reservation, Rejection> {
        let Some(hold) = self.holds.get(id) else { return Err(Rejection::NotFound) };
        if &hold.tenant != tenant {
            return Err(Rejection::NotFound);
        }
        match hold.state {
            ReservationState::Active => Ok(hold.clone()),
            ReservationState::Expired => {
                Err(Rejection::ReservationExpired { expired_at: hold.expires_at })
            }
            state => Err(Rejection::AlreadyFinal { state }),
        }
    }

    fn check_ttl(&self, ttl: u64) -> Result<u64, Rejection> {
        if ttl == 0 {
            return Err(Rejection::InvalidTtl);
        }
        if ttl > self.max_ttl {
            return Err(Rejection::TtlTooLong { max_ms: self.max_ttl });
        }
        Ok(ttl)
    }

    /// A hold ends (purchased, released, expired) at `at`; its ForgetReservation timer
    /// is derived from `ended_at` in `next_due_timer`.
    fn end(&mut self, id: &ReservationId, state: ReservationState, at: LogTime) {
        let hold = self.holds.get_mut(id).expect("model bug: ending a missing hold");
        hold.state = state;
        hold.ended_at = Some(at);
        self.endings.entry(id.clone()).or_default().push(state);
    }

    /// The row, created all zero (version 0) if missing.
    fn row(&mut self, sku: &Sku, w: &WarehouseId) -> &mut StockLevel {
        self.stock.entry(sku.clone()).or_default().entry(w.clone()).or_default()
    }

    /// Every stock change: version + 1 and a StockChanged with the row after it.
    fn changed(&mut self, sku: &Sku, w: &WarehouseId, events: &mut Vec<Event>) {
        let row = self.row(sku, w);
        row.version += 1;
        let level = *row;
        events.push(Event::StockChanged { sku: sku.clone(), warehouse: w.clone(), level });
    }

    fn stock_updated(&mut self, sku: &Sku, w: &WarehouseId, events: &mut Vec<Event>) -> Outcome {
        self.changed(sku, w, events);
        Outcome::StockUpdated { sku: sku.clone(), warehouse: w.clone(), level: *self.row(sku, w) }
    }

    fn count_delta(&mut self, sku: &Sku, w: &WarehouseId, delta: i128) {
        *self.deltas.entry((sku.clone(), w.clone())).or_default() += delta;
    }

    fn total_available(&self, sku: &Sku) -> u128 {
        self.availability(sku).values().map(|l| u128::from(l.available())).sum()
    }

    // ----- invariants -------------------------------------------------------------

    pub fn check_invariants(&self) -> Result<(), String> {
        // I1: reserved == sum of the active holds' allocations on the row, <= on_hand.
        let mut held: BTreeMap<(Sku, WarehouseId), u128> = BTreeMap::new();
        for h in self.holds.values().filter(|h| h.state == ReservationState::Active) {
            for a in &h.allocations {
                *held.entry((h.id.sku.clone(), a.warehouse.clone())).or_default() +=
                    u128::from(a.quantity);
            }
        }
        for (sku, rows) in &self.stock {
            for (w, l) in rows {
                let key = (sku.clone(), w.clone());
                if l.reserved > l.on_hand {
                    return Err(format!("I1: {sku}/{w} reserved > on_hand: {l:?}"));
                }
                let holds = held.remove(&key).unwrap_or(0);
                if u128::from(l.reserved) != holds {
                    return Err(format!(
                        "I1: {sku}/{w} reserved {} but active holds {holds}",
                        l.reserved
                    ));
                }
                if l.on_hand > self.max_stock {
                    return Err(format!("{sku}/{w} on_hand above max_stock: {l:?}"));
                }
                // I2: on_hand + sold == sum of stock-keeping deltas.
                let deltas = self.deltas.get(&key).copied().unwrap_or(0);
                if i128::from(l.on_hand) + i128::from(l.sold) != deltas {
                    return Err(format!("I2: {sku}/{w} {l:?} but deltas sum to {deltas}"));
                }
            }
        }
        if let Some((row, n)) = held.iter().next() {
            return Err(format!("I1: active holds keep {n} units on missing row {row:?}"));
        }
        // I7: at most one ending each; a final state never changes.
        for (id, ends) in &self.endings {
            if ends.len() > 1 {
                return Err(format!("I7: {id} ended {} times: {ends:?}", ends.len()));
            }
        }
        for h in self.holds.values() {
            let ends = self.endings.get(&h.id).map(Vec::as_slice).unwrap_or(&[]);
            let ok = match h.state {
                ReservationState::Active => ends.is_empty() && h.ended_at.is_none(),
                s => ends == [s] && h.ended_at.is_some(),
            };
            if !ok {
                return Err(format!("I7: {} is {:?} after endings {ends:?}", h.id, h.state));
            }
        }
        Ok(())
    }
}

/// MostAvailable: all rows, available descending, then warehouse id ascending.
fn most_available(rows: &Rows) -> Vec<WarehouseId> {
    let mut order: Vec<(&WarehouseId, u64)> =
        rows.iter().map(|(w, l)| (w, l.available())).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    order.into_iter().map(|(w, _)| w.clone()).collect()
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn clamp_u64(v: u128) -> u64 {
    v.min(u128::from(u64::MAX)) as u64
}
