//! `mux-conformance`: checks a mux endpoint against `spec/mux-v1.md`, rule
//! by rule, over raw bytes, in the manner of h2spec.
//!
//! - [`server_cases`]: the runner is a client; every case opens a
//!   connection of its own to the server under test.
//! - [`client_cases`]: the runner is a server; the client under test
//!   connects to it again and again (each case takes one connection).
//!
//! Every case names the section of the rule it checks and whether the rule
//! is a MUST or a SHOULD; the spec's test vectors (`spec/vectors/`, §14)
//! are replayed as cases of their own. The runner's codec ([`wire`]) is
//! written from the spec, not taken from mux-core.

pub mod case;
pub mod client_cases;
pub mod common_cases;
pub mod peer;
pub mod server_cases;
pub mod vectors;
pub mod wire;

pub use case::{Filter, Level, Outcome, Report};
