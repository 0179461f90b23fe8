//! Arbitrary bytes as a subscription's feed message; the harness and its
//! invariants are `mux_core::fuzzing::feed_message`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = mux_core::fuzzing::feed_message(data) {
        panic!("{violation:?}");
    }
});
