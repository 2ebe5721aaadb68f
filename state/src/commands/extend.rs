//! extend: move an active hold's expiry to `ttl` after now.

use topics::{Event, Extend, Outcome, Rejection, TenantId};

use super::active_reservation;
use crate::context::Ctx;
use crate::partition::{Timer, TimerKey};

pub(super) fn apply(
    ctx: &mut Ctx<'_>,
    tenant: &TenantId,
    c: &Extend,
) -> Result<Outcome, Rejection> {
    let mut r = active_reservation(ctx, tenant, &c.reservation)?;
    let ttl = super::checked_ttl(ctx, Some(c.ttl_ms))?;
    let expires_at = ctx.now.plus_ms(ttl);
    ctx.state.remove_timer(TimerKey::expire(r.expires_at, &r.id));
    ctx.state.add_timer(
        TimerKey::expire(expires_at, &r.id),
        Timer::Expire { reservation: r.id.clone() },
    );
    r.expires_at = expires_at;
    ctx.state.put_reservation(r);
    ctx.events.push(Event::ReservationExtended { reservation: c.reservation.clone(), expires_at });
    Ok(Outcome::Extended { reservation: c.reservation.clone(), expires_at })
}
