//! Shared helpers for mux's integration tests (`tests/tests/`).

#![forbid(unsafe_code)]
