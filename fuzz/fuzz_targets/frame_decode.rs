//! Arbitrary bytes as a stream of frames; the harness and its invariants are
//! `mux_core::fuzzing::decode_stream`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = mux_core::fuzzing::decode_stream(data) {
        panic!("{violation:?}");
    }
});
