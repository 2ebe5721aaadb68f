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

/// This package's directory, as cargo says when it runs the tests: the one compiled in
/// is another checkout's when that checkout built this binary into the shared target
/// directory (CI and a working copy share it).
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from)
}
