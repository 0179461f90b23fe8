//! An arbitrary frame value, encoded and decoded; the harness and its
//! invariants are `mux_core::fuzzing::encode_frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: mux_core::frame::Frame| {
    if let Err(violation) = mux_core::fuzzing::encode_frame(frame) {
        panic!("{violation:?}");
    }
});
