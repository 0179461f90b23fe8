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
    /// Local side: the mux connections to the remote side that are up.
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

    /// The counters as text, one `name value` line each (Prometheus' text
    /// format, untyped), with the bytes of tunnels still open (`live`,
    /// up and down) counted in: the answer to a stats request.
    pub fn text(&self, live: (u64, u64)) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        format!(
            "mux_sidecar_tunnels_active {}\n\
             mux_sidecar_tunnels_opened_total {}\n\
             mux_sidecar_tunnel_errors_total {}\n\
             mux_sidecar_bytes_up_total {}\n\
             mux_sidecar_bytes_down_total {}\n\
             mux_sidecar_links_ready {}\n",
            get(&self.active),
            get(&self.opened),
            get(&self.errors),
            get(&self.bytes_up) + live.0,
            get(&self.bytes_down) + live.1,
            get(&self.connected),
        )
    }
}
