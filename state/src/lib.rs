//! The reservation domain: a pure, deterministic state machine ([`Machine`]) over one
//! partition's state ([`PartitionState`]), and the RocksDB [`store`] that persists it.
//!
//! The machine reads no clock, draws no random numbers and does no IO: time is the log
//! time carried by each entry, ids come from the log, and every outcome (including
//! every rejection) is a value. Replaying the same log therefore yields the same state,
//! replies and events, byte for byte (invariant I6).

mod commands;
pub mod config;
mod context;
pub mod machine;
pub mod partition;

pub use config::{ConfigError, MachineConfig};
pub use machine::{ApplyError, Effects, LogEntry, Machine};
pub use partition::{
    DedupKey, DedupRecord, EntityKey, PartitionState, Snapshot, Timer, TimerKey, TimerKind,
};
pub mod store;
