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
        ctx.update_stock(&c.sku, &a.warehouse, |l| l.reserved += u64::from(a.quantity));
    }
    // The reserve's own offset names the reservation: unique in the SKU's partition,
    // and the same on every replay.
    let id = ReservationId::new(c.sku.clone(), ctx.position.offset as u64);
    let quantity = allocations.iter().map(|a| a.quantity).sum();
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
