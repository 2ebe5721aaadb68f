//! restock, adjust and set: the stock-keeping commands. They are the only source of
//! units (invariant I2) and never take on-hand stock below what is reserved (I1).

use topics::{Adjust, Outcome, Rejection, Restock, SetStock, StockLevel};

use crate::context::Ctx;

pub(super) fn restock(ctx: &mut Ctx<'_>, c: &Restock) -> Result<Outcome, Rejection> {
    let level =
        ctx.update_stock(&c.sku, &c.warehouse, |l| l.on_hand += u64::from(c.quantity.get()));
    Ok(Outcome::StockUpdated { sku: c.sku.clone(), warehouse: c.warehouse.clone(), level })
}

pub(super) fn adjust(ctx: &mut Ctx<'_>, c: &Adjust) -> Result<Outcome, Rejection> {
    let rows = ctx.state.stock(&c.sku).ok_or(Rejection::UnknownSku)?;
    let current = *rows
        .get(&c.warehouse)
        .ok_or_else(|| Rejection::UnknownWarehouse { warehouse: c.warehouse.clone() })?;
    let target = i128::from(current.on_hand) + i128::from(c.delta);
    let on_hand = checked_on_hand(&current, target)?;
    if c.delta == 0 {
        return Ok(Outcome::StockUpdated {
            sku: c.sku.clone(),
            warehouse: c.warehouse.clone(),
            level: current,
        });
    }
    let level = ctx.update_stock(&c.sku, &c.warehouse, |l| l.on_hand = on_hand);
    Ok(Outcome::StockUpdated { sku: c.sku.clone(), warehouse: c.warehouse.clone(), level })
}

pub(super) fn set(ctx: &mut Ctx<'_>, c: &SetStock) -> Result<Outcome, Rejection> {
    let current = ctx.state.stock_level(&c.sku, &c.warehouse).copied();
    let version = current.map_or(0, |l| l.version);
    if version != c.expected_version {
        return Err(Rejection::VersionMismatch { current: version });
    }
    checked_on_hand(&current.unwrap_or_default(), i128::from(c.on_hand))?;
    let level = ctx.update_stock(&c.sku, &c.warehouse, |l| l.on_hand = c.on_hand);
    Ok(Outcome::StockUpdated { sku: c.sku.clone(), warehouse: c.warehouse.clone(), level })
}

fn checked_on_hand(current: &StockLevel, target: i128) -> Result<u64, Rejection> {
    let refused = || Rejection::BelowReserved {
        on_hand: current.on_hand,
        reserved: current.reserved,
        requested_on_hand: i64::try_from(target).unwrap_or(i64::MIN),
    };
    if target < i128::from(current.reserved) {
        return Err(refused());
    }
    // Above u64::MAX is as impossible to hold as below zero.
    u64::try_from(target).map_err(|_| refused())
}
