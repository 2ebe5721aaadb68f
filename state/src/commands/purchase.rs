//! purchase: turn held units into sold units; units not bought go back to stock.

use topics::{Event, Outcome, Purchase, Rejection, ReservationState, TenantId};

use super::{active_reservation, finish_reservation};
use crate::context::Ctx;

pub(super) fn apply(
    ctx: &mut Ctx<'_>,
    tenant: &TenantId,
    c: &Purchase,
) -> Result<Outcome, Rejection> {
    let r = active_reservation(ctx, tenant, &c.reservation)?;
    let quantity = c.quantity.map_or(r.quantity, |q| q.get());
    if quantity > r.quantity {
        return Err(Rejection::ExceedsReservation { held: r.quantity, requested: quantity });
    }
    // Sold units only grow; a row whose sold count would leave the u64 range (after
    // ~max_stock × 18 million restock-and-sell cycles) refuses further sales.
    for a in &r.allocations {
        let sold = ctx.state.stock_level(&r.id.sku, &a.warehouse).map_or(0, |l| l.sold);
        if sold.checked_add(u64::from(a.quantity)).is_none() {
            return Err(Rejection::StockLimit { max: ctx.config.max_stock });
        }
    }
    let returned = finish_reservation(ctx, r, ReservationState::Purchased, quantity, ctx.now);
    ctx.events.push(Event::ReservationPurchased {
        reservation: c.reservation.clone(),
        quantity,
        returned,
    });
    Ok(Outcome::Purchased { reservation: c.reservation.clone(), quantity, returned })
}
