//! The state machine's configuration. It is part of the machine's input: replaying a
//! log with a different configuration may give different answers, so a deployment
//! changes it deliberately (and DESIGN.md's I6 holds per configuration).

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
}

impl Default for MachineConfig {
    fn default() -> Self {
        Self {
            default_ttl_ms: 10 * 60 * 1000,
            max_ttl_ms: 60 * 60 * 1000,
            dedup_window_ms: 24 * 60 * 60 * 1000,
            reservation_retention_ms: 24 * 60 * 60 * 1000,
        }
    }
}
