//! The read models the API serves: availability per SKU (from the availability topic)
//! and reservations (from the events topic). Both are fed in log order by a
//! [`Follower`](ingest::follow::Follower) and tolerate a record seen twice.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use topics::codec::{DecodeError, Format};
use topics::{
    Allocation, Availability, Event, LogTime, ReservationId, ReservationState, Sku, TenantId,
};

use ingest::follow::View;

/// Latest availability per SKU, with its JSON rendered once when it arrives (reads
/// outnumber writes by far; a read then copies no more than a reference).
#[derive(Debug, Default)]
pub struct AvailabilityView {
    by_sku: RwLock<HashMap<Sku, Arc<Rendered>>>,
    format: Format,
}

#[derive(Debug)]
pub struct Rendered {
    pub availability: Availability,
    pub json: actix_web::web::Bytes,
}

impl AvailabilityView {
    /// An empty view of records encoded in `format`.
    pub fn new(format: Format) -> Self {
        Self { by_sku: RwLock::default(), format }
    }

    pub fn get(&self, sku: &Sku) -> Option<Arc<Rendered>> {
        self.by_sku.read().unwrap_or_else(|e| e.into_inner()).get(sku).cloned()
    }
}

impl View for AvailabilityView {
    fn apply(&self, _partition: i32, payload: Option<&[u8]>) -> Result<(), DecodeError> {
        let a = self.format.decode::<Availability>(payload)?.body;
        // Serialising a decoded value cannot fail (no maps with non-string keys).
        let json = serde_json::to_vec(&a).unwrap_or_default();
        let mut map = self.by_sku.write().unwrap_or_else(|e| e.into_inner());
        match map.get(&a.sku) {
            Some(old) if old.availability.position > a.position => {}
            _ => {
                let rendered = Rendered { json: json.into(), availability: a };
                map.insert(rendered.availability.sku.clone(), Arc::new(rendered));
            }
        }
        Ok(())
    }
}

/// A reservation as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReservationView {
    pub id: ReservationId,
    #[serde(skip)]
    pub tenant: TenantId,
    pub quantity: u32,
    pub allocations: Vec<Allocation>,
    pub state: ReservationState,
    pub expires_at: LogTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purchased: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub returned: Option<u32>,
}

/// Reservations by id. Active ones are bounded by the stock they hold; finished ones are
/// kept up to `keep_finished`, oldest ending first out (a poll for one long gone is 404).
#[derive(Debug)]
pub struct ReservationsView {
    inner: RwLock<Reservations>,
    keep_finished: usize,
    format: Format,
}

#[derive(Debug, Default)]
struct Reservations {
    by_id: HashMap<ReservationId, ReservationView>,
    finished: std::collections::VecDeque<ReservationId>,
}

impl ReservationsView {
    /// An empty view of events encoded in `format`.
    pub fn new(keep_finished: usize, format: Format) -> Self {
        Self { inner: RwLock::default(), keep_finished, format }
    }

    pub fn get(&self, id: &ReservationId) -> Option<ReservationView> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).by_id.get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl View for ReservationsView {
    fn apply(&self, _partition: i32, payload: Option<&[u8]>) -> Result<(), DecodeError> {
        let envelope = self.format.decode::<Event>(payload)?;
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let Reservations { by_id: map, finished } = &mut *inner;
        match envelope.body {
            Event::ReservationCreated {
                reservation,
                tenant,
                quantity,
                allocations,
                expires_at,
            } => {
                map.entry(reservation.clone()).or_insert(ReservationView {
                    id: reservation,
                    tenant,
                    quantity,
                    allocations,
                    state: ReservationState::Active,
                    expires_at,
                    purchased: None,
                    returned: None,
                });
            }
            Event::ReservationExtended { reservation, expires_at } => {
                // The latest extend wins, also one that shortens the hold (events of a
                // partition arrive in log order).
                if let Some(r) = map.get_mut(&reservation).filter(|r| !r.state.is_final()) {
                    r.expires_at = expires_at;
                }
            }
            Event::ReservationReleased { reservation, returned } => {
                end(map, finished, &reservation, ReservationState::Released, None, returned)
            }
            Event::ReservationExpired { reservation, returned, .. } => {
                end(map, finished, &reservation, ReservationState::Expired, None, returned)
            }
            Event::ReservationPurchased { reservation, quantity, returned } => end(
                map,
                finished,
                &reservation,
                ReservationState::Purchased,
                Some(quantity),
                returned,
            ),
            Event::StockChanged { .. } | Event::OutOfStock { .. } | Event::BackInStock { .. } => {}
        }
        while finished.len() > self.keep_finished {
            if let Some(old) = finished.pop_front() {
                map.remove(&old);
            }
        }
        Ok(())
    }
}

/// A final state, once: a reservation that already ended keeps its first ending.
fn end(
    map: &mut HashMap<ReservationId, ReservationView>,
    finished: &mut std::collections::VecDeque<ReservationId>,
    id: &ReservationId,
    state: ReservationState,
    purchased: Option<u32>,
    returned: u32,
) {
    if let Some(r) = map.get_mut(id).filter(|r| !r.state.is_final()) {
        r.state = state;
        r.purchased = purchased;
        r.returned = Some(returned);
        finished.push_back(id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topics::codec::to_json;
    use topics::{Envelope, RecordId};

    fn event(e: Event) -> Vec<u8> {
        to_json(&Envelope::output(RecordId { partition: 0, offset: 0, index: 1 }, &e)).unwrap()
    }

    fn created(seq: u64) -> (ReservationId, Vec<u8>) {
        let id = ReservationId::new(Sku::new("s").unwrap(), seq);
        let e = Event::ReservationCreated {
            reservation: id.clone(),
            tenant: TenantId::new("t").unwrap(),
            quantity: 1,
            allocations: vec![],
            expires_at: LogTime(10),
        };
        (id, event(e))
    }

    #[test]
    fn an_undecodable_record_is_an_error_and_changes_nothing() {
        let view = ReservationsView::new(2, Format::Json);
        let (id, bytes) = created(0);
        view.apply(0, Some(&bytes)).unwrap();
        for garbage in [&b"{not json"[..], b"{\"v\":99,\"body\":{}}", b""] {
            assert!(view.apply(0, Some(garbage)).is_err(), "{garbage:?}");
        }
        assert!(view.apply(0, None).is_err());
        assert_eq!(view.get(&id).map(|r| r.state), Some(ReservationState::Active));
        let availability = AvailabilityView::new(Format::Json);
        assert!(availability.apply(0, Some(b"[1, 2]")).is_err());
    }

    #[test]
    fn a_reservation_ends_once_and_finished_ones_are_bounded() {
        let view = ReservationsView::new(2, Format::Json);
        let mut ids = Vec::new();
        for seq in 0..4 {
            let (id, bytes) = created(seq);
            view.apply(0, Some(&bytes)).unwrap();
            ids.push(id);
        }
        let released = |id: &ReservationId| {
            event(Event::ReservationReleased { reservation: id.clone(), returned: 1 })
        };
        let expired = event(Event::ReservationExpired {
            reservation: ids[0].clone(),
            expired_at: LogTime(10),
            returned: 1,
        });
        view.apply(0, Some(&released(&ids[0]))).unwrap();
        view.apply(0, Some(&expired)).unwrap();
        assert_eq!(
            view.get(&ids[0]).unwrap().state,
            ReservationState::Released,
            "the first ending stays"
        );
        for id in &ids[1..3] {
            view.apply(0, Some(&released(id))).unwrap();
        }
        assert!(view.get(&ids[0]).is_none(), "the oldest finished one is forgotten");
        assert_eq!(view.get(&ids[3]).unwrap().state, ReservationState::Active, "active ones stay");
        assert_eq!(view.len(), 3);
    }

    #[test]
    fn an_extend_that_shortens_a_hold_shows_the_new_expiry() {
        let view = ReservationsView::new(2, Format::Json);
        let (id, bytes) = created(1);
        view.apply(0, Some(&bytes)).unwrap();
        for at in [50, 5] {
            let extended =
                Event::ReservationExtended { reservation: id.clone(), expires_at: LogTime(at) };
            view.apply(0, Some(&event(extended))).unwrap();
            assert_eq!(view.get(&id).unwrap().expires_at, LogTime(at));
        }
    }
}
