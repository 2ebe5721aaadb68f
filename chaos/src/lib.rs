//! Workload generator, fault injector and auditor of invariants I1–I7 for operators who
//! want to prove them on their own deployment. Today: the auditor ([`audit`]) over
//! everything a deployment wrote ([`log`]).

pub mod audit;
pub mod log;

pub use audit::{Report, Violation, audit};
pub use log::Log;
