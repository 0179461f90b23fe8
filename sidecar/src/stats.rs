//! Counters of a sidecar, shared with other threads.

use std::sync::atomic::{AtomicU64, Ordering};

/// Tunnel counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Tunnels open now.
    pub active: AtomicU64,
    /// Tunnels opened since start.
    pub opened: AtomicU64,
    /// Bytes from the local TCP clients toward the upstreams, of finished tunnels.
    pub bytes_up: AtomicU64,
    /// Bytes from the upstreams toward the local TCP clients, of finished tunnels.
    pub bytes_down: AtomicU64,
    /// Tunnels refused or failed.
    pub errors: AtomicU64,
    /// Local side: 1 while the mux connection to the remote side is up.
    pub connected: AtomicU64,
}

impl Stats {
    /// A one-line summary, as logged periodically.
    pub fn line(&self) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        format!(
            "stats: {} active, {} opened, {} bytes up, {} bytes down, {} errors",
            get(&self.active),
            get(&self.opened),
            get(&self.bytes_up),
            get(&self.bytes_down),
            get(&self.errors)
        )
    }
}
