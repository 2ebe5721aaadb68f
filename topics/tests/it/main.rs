//! The topics crate's integration tests, one binary: golden bytes of the wire format and the Avro codec.

#[cfg(feature = "avro")]
mod avro;
mod golden;
mod support;
