//! mux-server: accepts TCP connections and drives `mux-core` over them on a
//! hand-written `mio` event loop (issue "mux-server and mux-client").
//!
//! Not built yet: this crate currently only re-exports the protocol core so that
//! the workspace layout is in place.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use mux_core as core;
