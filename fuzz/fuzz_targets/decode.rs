//! Arbitrary bytes as a command record: decoding never panics, a failure is a value, and
//! the lenient sender read used for `refused` replies never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use topics::LogCommand;
use topics::codec::{from_json, requester, to_json};

fuzz_target!(|data: &[u8]| {
    let _ = requester(Some(data));
    if let Ok(envelope) = from_json::<LogCommand>(Some(data)) {
        // What decodes encodes again and decodes to the same value.
        let bytes = to_json(&envelope).expect("a decoded command encodes");
        let again = from_json::<LogCommand>(Some(&bytes)).expect("re-encoded bytes decode");
        assert_eq!(again.body, envelope.body);
    }
});
