//! What a command handler works with: the state, the configuration, the log time and
//! position, and the events it emits. Stock changes go through [`Ctx::update_stock`] so
//! that every change bumps the row's version, emits `stock_changed`, and is counted
//! for the out-of-stock / back-in-stock transitions of the SKU.

use topics::{Event, LogTime, Position, Sku, StockLevel, WarehouseId};

use crate::config::MachineConfig;
use crate::partition::PartitionState;

pub(crate) struct Ctx<'a> {
    pub state: &'a mut PartitionState,
    pub config: &'a MachineConfig,
    pub now: LogTime,
    pub position: Position,
    pub events: Vec<Event>,
    /// Total availability of each touched SKU before this entry changed it.
    before: Vec<(Sku, u64)>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        state: &'a mut PartitionState,
        config: &'a MachineConfig,
        now: LogTime,
        position: Position,
    ) -> Self {
        Self { state, config, now, position, events: Vec::new(), before: Vec::new() }
    }

    fn total_available(&self, sku: &Sku) -> u64 {
        self.state.stock(sku).map_or(0, |rows| rows.values().map(StockLevel::available).sum())
    }

    /// Change one stock row (created empty if missing) and bump its version.
    pub fn update_stock(
        &mut self,
        sku: &Sku,
        warehouse: &WarehouseId,
        f: impl FnOnce(&mut StockLevel),
    ) -> StockLevel {
        if !self.before.iter().any(|(s, _)| s == sku) {
            let total = self.total_available(sku);
            self.before.push((sku.clone(), total));
        }
        let mut level = self.state.stock_level(sku, warehouse).copied().unwrap_or_default();
        f(&mut level);
        level.version += 1;
        self.state.put_stock(sku, warehouse, level);
        self.events.push(Event::StockChanged {
            sku: sku.clone(),
            warehouse: warehouse.clone(),
            level,
        });
        level
    }

    /// The events, with availability transitions appended, and the touched SKUs.
    pub fn finish(mut self) -> (Vec<Event>, Vec<Sku>) {
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
        (self.events, touched)
    }
}
