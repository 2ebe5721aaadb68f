//! Kafka record keys. Commands, events and availability are keyed by SKU so that one
//! SKU's records share a partition; replies by tenant and command id.

use crate::ids::{CommandId, Sku, TenantId};

pub fn command_key(sku: &Sku) -> &[u8] {
    sku.as_str().as_bytes()
}

pub fn reply_key(tenant: &TenantId, command_id: &CommandId) -> Vec<u8> {
    format!("{tenant}/{command_id}").into_bytes()
}
