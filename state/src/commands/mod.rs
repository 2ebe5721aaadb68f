//! One file per command. Each handler validates against the state, changes it through
//! [`Ctx`], emits events, and returns the outcome; a rejection changes nothing.

mod allocate;
mod extend;
mod purchase;
mod release;
mod reserve;
mod stock;

use topics::{
    Command, LogTime, Outcome, Rejection, Reservation, ReservationId, ReservationState, TenantId,
};

use crate::context::Ctx;
use crate::partition::{Timer, TimerKey};

pub(crate) fn apply(ctx: &mut Ctx<'_>, tenant: &TenantId, command: &Command) -> Outcome {
    let result = match command {
        Command::Reserve(c) => reserve::apply(ctx, tenant, c),
        Command::Release(c) => release::apply(ctx, tenant, c),
        Command::Purchase(c) => purchase::apply(ctx, tenant, c),
        Command::Extend(c) => extend::apply(ctx, tenant, c),
        Command::Restock(c) => stock::restock(ctx, c),
        Command::Adjust(c) => stock::adjust(ctx, c),
        Command::SetStock(c) => stock::set(ctx, c),
    };
    result.unwrap_or_else(Outcome::Rejected)
}

pub(crate) use release::expire;

/// Check a requested hold time against the configured bounds.
fn checked_ttl(ctx: &Ctx<'_>, ttl_ms: Option<u64>) -> Result<u64, Rejection> {
    match ttl_ms.unwrap_or(ctx.config.default_ttl_ms) {
        0 => Err(Rejection::InvalidTtl),
        ttl if ttl > ctx.config.max_ttl_ms => {
            Err(Rejection::TtlTooLong { max_ms: ctx.config.max_ttl_ms })
        }
        ttl => Ok(ttl),
    }
}

/// The tenant's active reservation `id`. Another tenant's reservation is `not_found`:
/// tenants never learn about each other's holds.
fn active_reservation(
    ctx: &Ctx<'_>,
    tenant: &TenantId,
    id: &ReservationId,
) -> Result<Reservation, Rejection> {
    let r = ctx.state.reservation(id).filter(|r| &r.tenant == tenant).ok_or(Rejection::NotFound)?;
    match r.state {
        ReservationState::Active => Ok(r.clone()),
        ReservationState::Expired => {
            Err(Rejection::ReservationExpired { expired_at: r.expires_at })
        }
        state => Err(Rejection::AlreadyFinal { state }),
    }
}

/// Give back the units `r` still holds beyond `sold` (taken from its allocations in
/// order) and move it to its final `state`. Returns the units returned to stock.
/// Callers pass active reservations only: the final states never change again (I7).
fn finish_reservation(
    ctx: &mut Ctx<'_>,
    mut r: Reservation,
    state: ReservationState,
    sold: u32,
    ended_at: LogTime,
) -> u32 {
    let mut to_sell = sold;
    for a in &r.allocations {
        let sell = to_sell.min(a.quantity);
        to_sell -= sell;
        let (held, sell) = (u64::from(a.quantity), u64::from(sell));
        // Checked: a hold can only return what its rows reserved (I1); if it cannot, the
        // entry fails its checks instead of wrapping.
        ctx.update_stock(&r.id.sku, &a.warehouse, |l| {
            l.reserved = l.reserved.checked_sub(held)?;
            l.on_hand = l.on_hand.checked_sub(sell)?;
            l.sold = l.sold.checked_add(sell)?;
            Some(())
        });
    }
    ctx.state.remove_timer(TimerKey::expire(r.expires_at, &r.id));
    r.state = state;
    r.purchased = sold;
    r.ended_at = Some(ended_at);
    let forget_at = ended_at.plus_ms(ctx.config.reservation_retention_ms);
    let forget = Timer::ForgetReservation { reservation: r.id.clone() };
    ctx.state.add_timer(TimerKey::forget_reservation(forget_at, &r.id), forget);
    let returned = r.quantity - sold;
    ctx.state.put_reservation(r);
    returned
}
