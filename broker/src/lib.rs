//! Everything skuflow needs to know about the Kafka-protocol broker underneath it,
//! independent of the domain:
//!
//! - [`dev`] starts and stops the local development broker (the one `scripts/setup`
//!   installs) on a free loopback port; tests in every crate use it, and so do
//!   `skuflow broker` and `skuflow up`.
//! - [`long_poll`] sits in front of the dev broker and holds empty fetches as Kafka does.
//! - [`admin`] creates topics idempotently from specs the caller supplies.
//! - [`conformance`] is the suite behind `skuflow doctor`: it proves, against any
//!   bootstrap address, the broker behaviour that skuflow's exactly-once design relies on.
//!
//! Nothing here knows skuflow's topics or message formats (that is `topics`).

pub mod admin;
pub mod client;
pub mod conformance;
pub mod dev;
mod kafka;
pub mod long_poll;
pub mod read;
mod wire;

pub use dev::{DevBroker, DevBrokerConfig, DevBrokerError, Saved};
