//! restock, adjust and set: the stock-keeping commands. They are the only source of
//! units (invariant I2), never take on-hand stock below what is reserved (I1), and never
//! above the configured `max_stock` per row or past `max_warehouses` rows per SKU, which
//! together keep every sum of a SKU's rows inside a u64.

use topics::{Adjust, Outcome, Rejection, Restock, SetStock, Sku, StockLevel, WarehouseId};

use crate::context::Ctx;

pub(super) fn restock(ctx: &mut Ctx<'_>, c: &Restock) -> Result<Outcome, Rejection> {
    let current = ctx.state.stock_level(&c.sku, &c.warehouse).copied();
    if current.is_none() {
        check_new_row(ctx, &c.sku)?;
    }
    let quantity = u64::from(c.quantity.get());
    let on_hand = current.unwrap_or_default().on_hand;
    let max = ctx.config.max_stock;
    let target = on_hand.checked_add(quantity).filter(|t| *t <= max);
    let target = target.ok_or(Rejection::StockLimit { max })?;
    let level = ctx.update_stock_declared(&c.sku, &c.warehouse, quantity.into(), |l| {
        l.on_hand = target;
        Some(())
    });
    Ok(Outcome::StockUpdated { sku: c.sku.clone(), warehouse: c.warehouse.clone(), level })
}

/// A SKU may have at most `max_warehouses` rows.
fn check_new_row(ctx: &Ctx<'_>, sku: &Sku) -> Result<(), Rejection> {
    let max = ctx.config.max_warehouses;
    let rows = ctx.state.stock(sku).map_or(0, |rows| rows.len());
    if rows >= max as usize {
        return Err(Rejection::TooManyWarehouses { max });
    }
    Ok(())
}

/// Set a row's on-hand stock to `on_hand`, declaring the difference as the delta.
fn put_on_hand(ctx: &mut Ctx<'_>, sku: &Sku, wh: &WarehouseId, from: u64, on_hand: u64) -> Outcome {
    let declared = i128::from(on_hand) - i128::from(from);
    let level = ctx.update_stock_declared(sku, wh, declared, |l| {
        l.on_hand = on_hand;
        Some(())
    });
    Outcome::StockUpdated { sku: sku.clone(), warehouse: wh.clone(), level }
}

pub(super) fn adjust(ctx: &mut Ctx<'_>, c: &Adjust) -> Result<Outcome, Rejection> {
    let rows = ctx.state.stock(&c.sku).ok_or(Rejection::UnknownSku)?;
    let current = *rows
        .get(&c.warehouse)
        .ok_or_else(|| Rejection::UnknownWarehouse { warehouse: c.warehouse.clone() })?;
    let target = i128::from(current.on_hand) + i128::from(c.delta);
    let on_hand = checked_on_hand(ctx, &current, target)?;
    if c.delta == 0 {
        return Ok(Outcome::StockUpdated {
            sku: c.sku.clone(),
            warehouse: c.warehouse.clone(),
            level: current,
        });
    }
    Ok(put_on_hand(ctx, &c.sku, &c.warehouse, current.on_hand, on_hand))
}

pub(super) fn set(ctx: &mut Ctx<'_>, c: &SetStock) -> Result<Outcome, Rejection> {
    let current = ctx.state.stock_level(&c.sku, &c.warehouse).copied();
    let version = current.map_or(0, |l| l.version);
    if version != c.expected_version {
        return Err(Rejection::VersionMismatch { current: version });
    }
    let row = current.unwrap_or_default();
    let on_hand = checked_on_hand(ctx, &row, i128::from(c.on_hand))?;
    if current.is_none() {
        check_new_row(ctx, &c.sku)?;
    }
    Ok(put_on_hand(ctx, &c.sku, &c.warehouse, row.on_hand, on_hand))
}

/// `target` as an on-hand figure: not below what is reserved (I1), not above the
/// configured maximum.
fn checked_on_hand(ctx: &Ctx<'_>, current: &StockLevel, target: i128) -> Result<u64, Rejection> {
    if target < i128::from(current.reserved) {
        return Err(Rejection::BelowReserved {
            on_hand: current.on_hand,
            reserved: current.reserved,
            requested_on_hand: i64::try_from(target.max(i128::from(i64::MIN))).unwrap_or(i64::MIN),
        });
    }
    let max = ctx.config.max_stock;
    u64::try_from(target).ok().filter(|t| *t <= max).ok_or(Rejection::StockLimit { max })
}
