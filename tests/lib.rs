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

/// A free loopback port: bound, then released for a child process to take.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[allow(missing_debug_implementations)]
/// A mux endpoint driven by hand over a blocking socket, with `mux-core`
/// directly: for peers that behave unlike our runtime (slow, abrupt).
pub struct RawPeer {
    /// The socket.
    pub stream: std::net::TcpStream,
    /// The protocol state machine.
    pub conn: mux_core::Connection,
    rx: bytes::BytesMut,
}

impl RawPeer {
    /// A server side on an accepted socket.
    pub fn server(stream: std::net::TcpStream, config: mux_core::Config) -> Self {
        let conn = mux_core::Connection::new(mux_core::Side::Server, config, Instant::now());
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        Self {
            stream,
            conn,
            rx: bytes::BytesMut::new(),
        }
    }

    /// Reads at most `max` bytes (waiting at most 20 ms), feeds them, writes
    /// every answer; returns the events. `Err` once the peer closed.
    pub fn pump(&mut self, max: usize) -> std::io::Result<Vec<mux_core::Event>> {
        use std::io::{Read, Write};
        let mut buf = vec![0u8; max.max(1)];
        match self.stream.read(&mut buf) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                self.rx.extend_from_slice(&buf[..n]);
                let _ = self.conn.handle_read(Instant::now(), &mut self.rx);
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(err) => return Err(err),
        }
        let mut out = bytes::BytesMut::new();
        while self.conn.poll_transmit(Instant::now(), &mut out) {}
        self.stream.write_all(&out)?;
        let mut events = Vec::new();
        while let Some(event) = self.conn.poll_event() {
            events.push(event);
        }
        Ok(events)
    }
}

/// FNV-1a, 64 bits: a dependency-free hash for data-integrity checks.
pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Deterministic pseudo-random bytes (xorshift), `len` of them from `seed`.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
