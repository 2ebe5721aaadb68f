//! The topics crate's integration tests, one binary: golden bytes of the wire format and the Avro codec.

#[cfg(feature = "avro")]
mod avro;
mod golden;
mod support;

/// This package's directory, as cargo says when it runs the tests: the one compiled in
/// is another checkout's when that checkout built this binary into the shared target
/// directory (CI and a working copy share it).
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from)
}
