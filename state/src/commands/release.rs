//! release: give a hold back before it expires; and expiry, which does the same on a
//! timer.

use topics::{
    Event, LogTime, Outcome, Rejection, Release, ReservationId, ReservationState, TenantId,
};

use super::{active_reservation, finish_reservation};
use crate::context::Ctx;

pub(super) fn apply(
    ctx: &mut Ctx<'_>,
    tenant: &TenantId,
    c: &Release,
) -> Result<Outcome, Rejection> {
    let r = active_reservation(ctx, tenant, &c.reservation)?;
    let returned = finish_reservation(ctx, r, ReservationState::Released, 0, ctx.now);
    ctx.events.push(Event::ReservationReleased { reservation: c.reservation.clone(), returned });
    Ok(Outcome::Released { reservation: c.reservation.clone(), returned })
}

/// The hold's timer fired at `at` (its `expires_at`): return its units.
pub(crate) fn expire(ctx: &mut Ctx<'_>, id: &ReservationId, at: LogTime) {
    let Some(r) =
        ctx.state.reservation(id).filter(|r| r.state == ReservationState::Active).cloned()
    else {
        // Timers of finished holds are removed with them; nothing else can fire here.
        return;
    };
    let returned = finish_reservation(ctx, r, ReservationState::Expired, 0, at);
    ctx.events.push(Event::ReservationExpired {
        reservation: id.clone(),
        expired_at: at,
        returned,
    });
}
