//! The state crate's integration tests, one binary: the machine's behaviour, the property tests against the contract's model (`model`) and an independent reference (`reference`), and the RocksDB store.

mod machine;
mod model;
mod reference;
mod store;
mod support;
