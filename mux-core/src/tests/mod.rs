//! Scenario tests of the connection state machine, one or more per rule of
//! the spec, over the deterministic harnesses of [`util`]. Each test names
//! the spec section it covers.
//!
//! Test code, compiled only under `#[cfg(test)]` (see `lib.rs`).

mod connection_management;
mod flow_control;
mod fuzz_seeds;
mod properties;
mod protections;
mod push;
mod settled;
mod streams;
pub(crate) mod util;
