//! `skuflow` run as child processes against the real dev broker, so that they can really
//! be killed, frozen and fenced; every test ends with the auditor (I1-I7).

mod abuse;
mod api;
mod avro;
mod chaos;
mod http;
mod kill_cycles;
mod processor;
mod support;
mod trace;
