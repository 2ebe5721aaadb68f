//! The chaos crate's integration tests: the checker on hand-made histories, and the
//! Kubernetes driver offline.

mod checker;
mod k8s;
mod scenarios;
