//! reserve: hold units of one SKU for a while.

use topics::{
    Event, Outcome, Rejection, Reservation, ReservationId, ReservationState, Reserve, Strategy,
    TenantId,
};

use super::allocate::{Ask, allocate};
use crate::context::Ctx;
use crate::partition::{Timer, TimerKey};

pub(super) fn apply(
    ctx: &mut Ctx<'_>,
    tenant: &TenantId,
    c: &Reserve,
) -> Result<Outcome, Rejection> {
    check_shape(ctx, c)?;
    let rows = ctx.state.stock(&c.sku).ok_or(Rejection::UnknownSku)?;
    let ttl = super::checked_ttl(ctx, c.ttl_ms)?;
    let default_strategy = Strategy::default();
    let ask = Ask {
        requested: c.quantity.get(),
        warehouse: c.warehouse.as_ref(),
        strategy: c.strategy.as_ref().unwrap_or(&default_strategy),
        allow_partial: c.allow_partial,
    };
    let allocations = allocate(rows, &ask)?;
    for a in &allocations {
        ctx.update_stock(&c.sku, &a.warehouse, |l| {
            l.reserved = l.reserved.checked_add(u64::from(a.quantity))?;
            Some(())
        });
    }
    // The reserve's own offset names the reservation: unique in the SKU's partition,
    // and the same on every replay.
    let id = ReservationId::new(c.sku.clone(), ctx.position.offset as u64);
    // At most the requested quantity, a u32: the allocator never takes more.
    let quantity = allocations.iter().fold(0u32, |t, a| t.saturating_add(a.quantity));
    let expires_at = ctx.now.plus_ms(ttl);
    ctx.state
        .add_timer(TimerKey::expire(expires_at, &id), Timer::Expire { reservation: id.clone() });
    ctx.events.push(Event::ReservationCreated {
        reservation: id.clone(),
        tenant: tenant.clone(),
        quantity,
        allocations: allocations.clone(),
        expires_at,
    });
    ctx.state.put_reservation(Reservation {
        id: id.clone(),
        tenant: tenant.clone(),
        quantity,
        allocations: allocations.clone(),
        state: ReservationState::Active,
        created_at: ctx.now,
        expires_at,
        purchased: 0,
        ended_at: None,
    });
    Ok(Outcome::Reserved { reservation: id, quantity, allocations, expires_at })
}

/// What can be refused from the command alone, before looking at any state: a quantity
/// above the configured maximum, and a priority order that is empty, too long or names a
/// warehouse twice (which would let one row be counted, and held, twice).
fn check_shape(ctx: &Ctx<'_>, c: &Reserve) -> Result<(), Rejection> {
    let max = ctx.config.max_quantity;
    if c.quantity.get() > max {
        return Err(Rejection::QuantityTooLarge { max });
    }
    if let Some(Strategy::Priority { order }) = &c.strategy {
        topics::check_priority_order(order, ctx.config.max_warehouses)?;
    }
    Ok(())
}
