//! Connection configuration: the limits this endpoint advertises and enforces
//! (spec §5.4.1, §13), with defaults and the reason for each.

use std::time::Duration;

use super::flood::FloodLimits;

/// Configuration of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// MAX_FRAME_SIZE we advertise. 64 KiB: bulk senders of other
    /// implementations may use large frames, while the memory it commits per
    /// frame stays small; our own sender uses 16 KiB quanta when streams compete.
    pub max_frame_size: u32,
    /// MAX_CONCURRENT_STREAMS we advertise: streams the peer may have active.
    /// On a client this bounds pushes, and 0 disables them (spec §10.2).
    /// 100 is HTTP/2's recommended minimum, and the spec's default.
    pub max_concurrent_streams: u32,
    /// INITIAL_STREAM_WINDOW we advertise. 256 KiB: a 64-byte request never
    /// waits for credit, and a bulk stream starts at 4 times HTTP/2's default
    /// before auto-tuning (spec §9.6) takes over.
    pub initial_stream_window: u32,
    /// Ceiling of a stream window under auto-tuning. 32 MiB: with credit
    /// returned in quarter-window steps (seven eighths of the window in use),
    /// one stream at 1 Gbit/s up to about 230 ms of RTT, or 2.5 Gbit/s up to
    /// 90 ms. Auto-tuning grows a window only on paths that need it (spec
    /// §9.6.4): on loopback it stopped at 2 MiB in an instrumented run.
    pub max_stream_window: u32,
    /// Connection receive window we grant at start (spec §9.2.1). Its credit
    /// returns on receipt (§9.4.2), so it bounds bytes in flight, not
    /// buffered. 1 MiB: four streams at their initial window in flight.
    pub initial_connection_window: u32,
    /// Ceiling of the connection window under auto-tuning, and the budget
    /// the streams' receive targets together grow within (spec §9.6.8): what
    /// a peer can make us buffer beyond the initial windows. 64 MiB: a few
    /// streams at their ceiling at once.
    pub max_connection_window: u32,
    /// MAX_METADATA_SIZE we advertise. 16 KiB, the spec's default: route
    /// names and a few headers, with room to spare.
    pub max_metadata_size: u32,
    /// Data the application may queue on one stream before writes are refused
    /// (spec §13.2.3). 1 MiB keeps a fast stream busy between wake-ups.
    pub stream_send_buffer: usize,
    /// Data the application may queue on the whole connection. 8 MiB.
    pub connection_send_buffer: usize,
    /// How long our SETTINGS may stay unacknowledged (spec §5.4.2.4). 10 s, as recommended.
    pub settings_timeout: Duration,
    /// How long the peer may take to send its preface and SETTINGS (spec §11.4.1). 10 s.
    pub handshake_timeout: Duration,
    /// Send a PING after this long without receiving anything (spec
    /// §11.2.3); `None` disables. 30 s, the spec's recommendation: a dead
    /// peer (a host gone without a FIN) is noticed within 50 s, at the cost
    /// of one small frame per quiet half-minute.
    pub keepalive_interval: Option<Duration>,
    /// How long a keepalive PING may stay unanswered before the connection
    /// is declared dead. 20 s, the spec's recommendation: far above any
    /// round trip, well below TCP's own minutes-long retransmission limit.
    pub keepalive_timeout: Duration,
    /// Close gracefully after this long with no active stream (spec
    /// §11.2.4); `None` disables. 5 minutes, the spec's recommendation: long
    /// enough that a pooled client keeps its connection between bursts,
    /// short enough that idle connections do not pile up on a server
    /// (spec §13.2.4).
    pub idle_timeout: Option<Duration>,
    /// How long a graceful shutdown may take before it turns into an abort (spec §11.3.3). 30 s.
    pub drain_timeout: Duration,
    /// Flood budgets (spec §13.2).
    pub floods: FloodLimits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 64 * 1024,
            max_concurrent_streams: 100,
            initial_stream_window: 256 * 1024,
            max_stream_window: 32 * 1024 * 1024,
            initial_connection_window: 1024 * 1024,
            max_connection_window: 64 * 1024 * 1024,
            max_metadata_size: 16 * 1024,
            stream_send_buffer: 1024 * 1024,
            connection_send_buffer: 8 * 1024 * 1024,
            settings_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(20),
            idle_timeout: Some(Duration::from_secs(300)),
            drain_timeout: Duration::from_secs(30),
            floods: FloodLimits::default(),
        }
    }
}
