//! A client and a server `Connection` wired together, driven by arbitrary
//! operations; the harness and its invariants are `mux_core::fuzzing::run_pair`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|ops: Vec<mux_core::fuzzing::Op>| {
    if let Err(violation) = mux_core::fuzzing::run_pair(ops) {
        panic!("{violation:?}");
    }
});
