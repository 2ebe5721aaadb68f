//! The broker crate's integration tests, one binary: topic administration, the front that holds empty fetches and the conformance suite behind `skuflow doctor`, on the real dev broker.

mod admin;
mod conformance;
mod long_poll;
