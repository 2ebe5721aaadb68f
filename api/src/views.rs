//! The read models the API serves: availability per SKU (from the availability topic)
//! and reservations (from the events topic). Both are fed in log order by a
//! [`Follower`](crate::follow::Follower) and tolerate a record seen twice.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use topics::codec::from_json;
use topics::{
    Allocation, Availability, Event, LogTime, ReservationId, ReservationState, Sku, TenantId,
};

use crate::follow::View;

/// Latest availability per SKU, and the highest command offset reflected per partition.
#[derive(Debug, Default)]
pub struct AvailabilityView {
    by_sku: RwLock<HashMap<Sku, Arc<Availability>>>,
}

impl AvailabilityView {
    pub fn get(&self, sku: &Sku) -> Option<Arc<Availability>> {
        self.by_sku.read().unwrap_or_else(|e| e.into_inner()).get(sku).cloned()
    }
}

impl View for AvailabilityView {
    fn apply(&self, _partition: i32, payload: Option<&[u8]>) {
        let Ok(envelope) = from_json::<Availability>(payload) else { return };
        let a = envelope.body;
        let mut map = self.by_sku.write().unwrap_or_else(|e| e.into_inner());
        match map.get(&a.sku) {
            Some(old) if old.position > a.position => {}
            _ => {
                map.insert(a.sku.clone(), Arc::new(a));
            }
        }
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

#[derive(Debug, Default)]
pub struct ReservationsView {
    by_id: RwLock<HashMap<ReservationId, ReservationView>>,
}

impl ReservationsView {
    pub fn get(&self, id: &ReservationId) -> Option<ReservationView> {
        self.by_id.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }
}

impl View for ReservationsView {
    fn apply(&self, _partition: i32, payload: Option<&[u8]>) {
        let Ok(envelope) = from_json::<Event>(payload) else { return };
        let mut map = self.by_id.write().unwrap_or_else(|e| e.into_inner());
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
                if let Some(r) = map.get_mut(&reservation).filter(|r| !r.state.is_final()) {
                    r.expires_at = r.expires_at.max(expires_at);
                }
            }
            Event::ReservationReleased { reservation, returned } => {
                end(&mut map, &reservation, ReservationState::Released, None, returned)
            }
            Event::ReservationExpired { reservation, returned, .. } => {
                end(&mut map, &reservation, ReservationState::Expired, None, returned)
            }
            Event::ReservationPurchased { reservation, quantity, returned } => {
                end(&mut map, &reservation, ReservationState::Purchased, Some(quantity), returned)
            }
            Event::StockChanged { .. } | Event::OutOfStock { .. } | Event::BackInStock { .. } => {}
        }
    }
}

/// A final state, once: a reservation that already ended keeps its first ending.
fn end(
    map: &mut HashMap<ReservationId, ReservationView>,
    id: &ReservationId,
    state: ReservationState,
    purchased: Option<u32>,
    returned: u32,
) {
    if let Some(r) = map.get_mut(id).filter(|r| !r.state.is_final()) {
        r.state = state;
        r.purchased = purchased;
        r.returned = Some(returned);
    }
}
