//! The broker crate's integration tests, one binary: topic administration and the conformance suite behind `skuflow doctor`, on the real dev broker.

mod admin;
mod conformance;
