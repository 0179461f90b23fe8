//! Shared helpers for mux's integration tests (`tests/tests/`): servers on
//! loopback port 0, and bounded waits that fail with a clear message.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mux_server::{Response, Server, ServerBuilder};

/// Loopback, port 0: the kernel picks a free port.
pub fn any_local_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A builder bound to loopback port 0 with two loop threads and an echo route.
pub fn server_builder() -> ServerBuilder {
    Server::builder()
        .bind(any_local_address())
        .threads(2)
        .route("echo", |req| Ok(Response::ok(req.body().clone())))
}

/// Waits until `condition` holds, or panics after `limit` naming `what`.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(1));
    }
}
