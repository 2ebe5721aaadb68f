//! The operators' harness: run a checkout workload against a deployment, break it on a
//! schedule, and judge the result from the client's own history.
//!
//! - [`scenario`]: the TOML file (target, workload, faults, steady-state hypothesis);
//! - [`cluster`]: a local deployment of child processes the harness starts and breaks;
//! - [`workload`] and [`driver`]: the seeded open-loop load, sent over HTTP;
//! - [`nemesis`]: the faults, applied and healed on schedule ([`proxy`] for the network,
//!   [`k8s`] on a Kubernetes cluster through kubectl and Chaos Mesh);
//! - [`history`] and [`check`]: what the client saw, judged by an independent model;
//! - [`audit`] over [`log`]: the second opinion, from everything the deployment wrote;
//! - [`report`] and [`run`]: the timeline, verdicts, JSON and HTML.

pub mod audit;
pub mod check;
pub mod cluster;
pub mod driver;
pub mod history;
pub mod ingest_client;
pub mod k8s;
pub mod log;
pub mod nemesis;
pub mod proxy;
pub mod report;
pub mod run;
pub mod scenario;
pub mod workload;

pub use audit::{Report, Violation, audit};
pub use log::Log;
