//! What a command handler works with: the state, the configuration, the log time and
//! position, and the events it emits. Stock changes go through [`Ctx::update_stock`] so
//! that every change bumps the row's version, emits `stock_changed`, is counted for the
//! out-of-stock / back-in-stock transitions of the SKU, and is checked afterwards.
//!
//! The checks ([`Ctx::finish`]) are the machine's assertions, kept in release builds:
//! after an entry every row it touched must hold I1 (`reserved <= on_hand`) and I2
//! (`on_hand + sold` moved by exactly the stock-keeping delta the entry declared, zero
//! for reserve, release, purchase and expiry), and no stock arithmetic may have
//! overflowed. A failed check is a bug in the machine, never a client's fault: it is
//! returned as [`Broken`] and the caller must not persist the state.

use topics::{Event, LogTime, Position, Sku, StockLevel, WarehouseId};

use crate::config::MachineConfig;
use crate::partition::PartitionState;

/// A broken invariant found after an entry: which row, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub sku: Sku,
    pub warehouse: WarehouseId,
    pub what: String,
}

/// One touched row: how it was before the entry and after its last change, and the
/// stock-keeping delta declared. The row is named by its first `stock_changed` event
/// (no copies of the ids on the hot path).
struct Touched {
    event: usize,
    before: StockLevel,
    after: StockLevel,
    declared: i128,
}

pub(crate) struct Ctx<'a> {
    pub state: &'a mut PartitionState,
    pub config: &'a MachineConfig,
    pub now: LogTime,
    pub position: Position,
    pub events: Vec<Event>,
    /// Total availability of each touched SKU before this entry changed it.
    before: Vec<(Sku, u64)>,
    rows: Vec<Touched>,
    /// The first stock arithmetic that did not fit, if any.
    overflow: Option<Broken>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        state: &'a mut PartitionState,
        config: &'a MachineConfig,
        now: LogTime,
        position: Position,
    ) -> Self {
        Self {
            state,
            config,
            now,
            position,
            events: Vec::new(),
            before: Vec::new(),
            rows: Vec::new(),
            overflow: None,
        }
    }

    /// Sum of the SKU's available units. Saturating: with the configured bounds
    /// (`max_stock × max_warehouses` fits in a u64) it never saturates.
    pub fn total_available(&self, sku: &Sku) -> u64 {
        self.state
            .stock(sku)
            .map_or(0, |rows| rows.values().fold(0u64, |t, l| t.saturating_add(l.available())))
    }

    /// Change one stock row (created empty if missing) and bump its version. `f` does
    /// the arithmetic checked and returns `None` if it does not fit; the row is then left
    /// as it was and the entry fails its checks.
    pub fn update_stock(
        &mut self,
        sku: &Sku,
        warehouse: &WarehouseId,
        f: impl FnOnce(&mut StockLevel) -> Option<()>,
    ) -> StockLevel {
        self.update_stock_declared(sku, warehouse, 0, f)
    }

    /// [`Ctx::update_stock`] for a stock-keeping command, which moves `on_hand + sold`
    /// by `declared` units (the only way units enter or leave, I2).
    pub fn update_stock_declared(
        &mut self,
        sku: &Sku,
        warehouse: &WarehouseId,
        declared: i128,
        f: impl FnOnce(&mut StockLevel) -> Option<()>,
    ) -> StockLevel {
        if !self.before.iter().any(|(s, _)| s == sku) {
            let total = self.total_available(sku);
            self.before.push((sku.clone(), total));
        }
        let current = self.state.stock_level(sku, warehouse).copied().unwrap_or_default();
        let mut level = current;
        let changed = f(&mut level).and_then(|()| level.version.checked_add(1));
        let Some(version) = changed else {
            self.overflow.get_or_insert_with(|| Broken {
                sku: sku.clone(),
                warehouse: warehouse.clone(),
                what: format!("stock arithmetic out of range on {current:?}"),
            });
            return current;
        };
        level.version = version;
        self.state.put_stock(sku, warehouse, level);
        let events = &self.events;
        let same_row = |r: &&mut Touched| matches!(&events[r.event], Event::StockChanged { sku: s, warehouse: w, .. } if s == sku && w == warehouse);
        match self.rows.iter_mut().find(same_row) {
            Some(row) => {
                row.declared += declared;
                row.after = level;
            }
            None => self.rows.push(Touched {
                event: self.events.len(),
                before: current,
                after: level,
                declared,
            }),
        }
        self.events.push(Event::StockChanged {
            sku: sku.clone(),
            warehouse: warehouse.clone(),
            level,
        });
        level
    }

    /// The events, with availability transitions appended, and the touched SKUs; or
    /// the first broken invariant among the touched rows.
    pub fn finish(mut self) -> Result<(Vec<Event>, Vec<Sku>), Broken> {
        if let Some(broken) = self.overflow.take() {
            return Err(broken);
        }
        for row in &self.rows {
            if let Err(what) = check_row(&row.before, &row.after, row.declared) {
                let Event::StockChanged { sku, warehouse, .. } = &self.events[row.event] else {
                    unreachable!("a touched row is named by its stock_changed event")
                };
                return Err(Broken { sku: sku.clone(), warehouse: warehouse.clone(), what });
            }
        }
        let mut touched = Vec::with_capacity(self.before.len());
        for (sku, before) in std::mem::take(&mut self.before) {
            let after = self.total_available(&sku);
            if before > 0 && after == 0 {
                self.events.push(Event::OutOfStock { sku: sku.clone() });
            } else if before == 0 && after > 0 {
                self.events.push(Event::BackInStock { sku: sku.clone(), available: after });
            }
            touched.push(sku);
        }
        Ok((self.events, touched))
    }
}

/// I1 and I2 for one row across one entry.
fn check_row(before: &StockLevel, after: &StockLevel, declared: i128) -> Result<(), String> {
    if after.reserved > after.on_hand {
        return Err(format!("I1: reserved {} above on_hand {}", after.reserved, after.on_hand));
    }
    let units = |l: &StockLevel| i128::from(l.on_hand) + i128::from(l.sold);
    if units(after) - units(before) != declared {
        return Err(format!(
            "I2: on_hand + sold moved from {} to {}, but the stock-keeping delta was {declared}",
            units(before),
            units(after)
        ));
    }
    if after.sold < before.sold {
        return Err(format!("sold went down from {} to {}", before.sold, after.sold));
    }
    Ok(())
}
