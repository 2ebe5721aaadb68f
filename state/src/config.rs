//! The state machine's configuration. It is part of the machine's input: replaying a
//! log with a different configuration may give different answers, so a deployment
//! changes it deliberately (and invariant I6, state equals replay, holds per configuration).

/// Bounds and windows, all in milliseconds of log time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineConfig {
    /// Hold time of a reservation that asks for none.
    pub default_ttl_ms: u64,
    /// Longest hold a reserve or extend may ask for.
    pub max_ttl_ms: u64,
    /// How long a command id is remembered for idempotency, from when it was applied.
    pub dedup_window_ms: u64,
    /// How long a finished reservation stays readable before it is forgotten.
    pub reservation_retention_ms: u64,
    /// Most units one reserve may ask for.
    pub max_quantity: u32,
    /// Most units a stock row may have on hand (and have sold). With `max_warehouses`
    /// it bounds every sum the machine takes: `max_stock × max_warehouses` must fit in
    /// a u64, which [`MachineConfig::validate`] checks.
    pub max_stock: u64,
    /// Most warehouses (stock rows) one SKU may have, and a priority order may name.
    pub max_warehouses: u32,
}

/// A configuration whose bounds do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("max_stock × max_warehouses ({max_stock} × {max_warehouses}) does not fit in a u64")]
    StockSumOverflows { max_stock: u64, max_warehouses: u32 },
    #[error("{name} must be greater than zero")]
    Zero { name: &'static str },
    #[error("default_ttl_ms {default_ttl_ms} is above max_ttl_ms {max_ttl_ms}")]
    DefaultTtlAboveMax { default_ttl_ms: u64, max_ttl_ms: u64 },
}

impl MachineConfig {
    /// Refuse bounds that would let a sum overflow or make every command a rejection.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("default_ttl_ms", self.default_ttl_ms),
            ("max_ttl_ms", self.max_ttl_ms),
            ("max_quantity", u64::from(self.max_quantity)),
            ("max_stock", self.max_stock),
            ("max_warehouses", u64::from(self.max_warehouses)),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero { name });
            }
        }
        if self.default_ttl_ms > self.max_ttl_ms {
            return Err(ConfigError::DefaultTtlAboveMax {
                default_ttl_ms: self.default_ttl_ms,
                max_ttl_ms: self.max_ttl_ms,
            });
        }
        if self.max_stock.checked_mul(u64::from(self.max_warehouses)).is_none() {
            return Err(ConfigError::StockSumOverflows {
                max_stock: self.max_stock,
                max_warehouses: self.max_warehouses,
            });
        }
        Ok(())
    }
}

impl Default for MachineConfig {
    fn default() -> Self {
        Self {
            default_ttl_ms: 10 * 60 * 1000,
            max_ttl_ms: topics::DEFAULT_MAX_TTL_MS,
            dedup_window_ms: 24 * 60 * 60 * 1000,
            reservation_retention_ms: 24 * 60 * 60 * 1000,
            max_quantity: 1_000_000,
            max_stock: topics::DEFAULT_MAX_STOCK,
            max_warehouses: topics::DEFAULT_MAX_WAREHOUSES,
        }
    }
}
