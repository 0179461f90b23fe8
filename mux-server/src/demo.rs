//! The demo routes that `mux-server` serves with no arguments and that the
//! tour exercises; defined once, here.
//!
//! Implements no rule of the spec: routes are application code.

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use bytes::Bytes;

use mux_core::rpc::Status;

use crate::request::{BodySink, BodySource, HandlerError, HandlerResult, Response};
use crate::server::{Server, ServerBuilder, ServerHandle};

/// FNV-1a, 64 bits, fed piece by piece: the `upload` route's integrity
/// hash, which clients and tests compute the same way ([`fnv1a`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// Hashes `bytes` after what came before.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0 = bytes.iter().fold(self.0, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        });
    }

    /// The hash of everything so far.
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// FNV-1a, 64 bits, of `data`.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut hash = Fnv1a::default();
    hash.update(data);
    hash.finish()
}

/// Counts and hashes a streamed body; answers `"<bytes> <hash>"`.
#[derive(Debug, Default)]
struct Digest {
    bytes: u64,
    hash: Fnv1a,
}

impl BodySink for Digest {
    fn data(&mut self, bytes: &Bytes, _end_message: bool) {
        self.bytes += bytes.len() as u64;
        self.hash.update(bytes);
    }

    fn end(self: Box<Self>) -> HandlerResult {
        Ok(Response::ok(format!(
            "{} {:016x}",
            self.bytes,
            self.hash.finish()
        )))
    }
}

/// Counts a streamed body without touching its bytes; answers the count.
/// What throughput measurements put behind a route, so that they measure
/// the transport rather than the handler.
#[derive(Debug, Default)]
pub struct ByteCounter(u64);

impl BodySink for ByteCounter {
    fn data(&mut self, bytes: &Bytes, _end_message: bool) {
        self.0 += bytes.len() as u64;
    }

    fn end(self: Box<Self>) -> HandlerResult {
        Ok(Response::ok(self.0.to_string()))
    }
}

/// The size of the `source` route's messages.
pub const SOURCE_MESSAGE: usize = 64 * 1024;

static ZEROS: [u8; SOURCE_MESSAGE] = [0; SOURCE_MESSAGE];

/// Streams `left` zero bytes in messages of [`SOURCE_MESSAGE`] (the last
/// one shorter), without allocating: every message is the same static slice.
#[derive(Debug)]
pub struct ZeroSource {
    left: u64,
}

impl ZeroSource {
    /// A source of `bytes` zero bytes.
    pub fn new(bytes: u64) -> Self {
        Self { left: bytes }
    }
}

impl BodySource for ZeroSource {
    fn next_message(&mut self) -> Option<Bytes> {
        if self.left == 0 {
            return None;
        }
        let len =
            usize::try_from(self.left).map_or(SOURCE_MESSAGE, |left| left.min(SOURCE_MESSAGE));
        self.left -= len as u64;
        Some(Bytes::from_static(&ZEROS[..len]))
    }

    fn length(&self) -> Option<u64> {
        Some(self.left)
    }
}

/// Adds the demo routes:
///
/// - `echo` (inline): answers the body;
/// - `status` (inline): answers the status given as the body;
/// - `sleep` (blocking, worker pool): sleeps the milliseconds given as the body;
/// - `upload` (streaming): answers the byte count and FNV-1a hash of the
///   body, for integrity checks (the hash costs about a core per GB/s);
/// - `sink` (streaming): answers the byte count of the body and touches
///   nothing else, for measuring the transport one way;
/// - `source` (inline, streaming response): answers the number of zero
///   bytes given as the body (decimal), in messages of 64 KiB, for the other
///   way; `400` if the body is not a number.
pub fn routes(builder: ServerBuilder) -> ServerBuilder {
    builder
        .route("echo", |req| Ok(Response::ok(req.into_body())))
        .route("status", |req| {
            let code = std::str::from_utf8(req.body())
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(200);
            Ok(Response::with_status(Status(code), "status as asked"))
        })
        .route_blocking("sleep", |req| {
            let millis = std::str::from_utf8(req.body())
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(100u64)
                .min(60_000);
            std::thread::sleep(Duration::from_millis(millis));
            Ok(Response::ok(format!("slept {millis} ms")))
        })
        .route_streaming("upload", |_| Box::new(Digest::default()))
        .route_streaming("sink", |_| Box::new(ByteCounter::default()))
        .route("source", |req| {
            let bytes = std::str::from_utf8(req.body())
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    HandlerError::new(Status::BAD_REQUEST, "the body must be a byte count")
                })?;
            Ok(Response::streaming(ZeroSource::new(bytes)))
        })
}

/// The version of the demo's `config` resource; `config.set` bumps it.
static CONFIG_VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Adds the demo routes of the patterns:
///
/// - `config` (inline): a resource with a version, for conditional polling:
///   answers `304` without a body when `:if-none-match` is the current version;
/// - `config.set` (inline): changes it;
/// - `counter` (inline, session): increments a counter kept in the caller's
///   session and pushes the new value to the session's feed;
/// - `enqueue` (blocking): appends the body to the long-poll log `jobs`;
/// - `announce` (blocking): appends the body to the event stream `news` (type `news`).
///
/// Publish/subscribe needs no route: clients use `chat.lobby` and the like directly.
pub fn pattern_routes(builder: ServerBuilder) -> ServerBuilder {
    use std::sync::atomic::Ordering;
    builder
        .route("config", |req| {
            let version = CONFIG_VERSION.load(Ordering::Relaxed).to_string();
            let seen = req
                .header(":if-none-match")
                .map(|v| v == version.as_bytes())
                .unwrap_or(false);
            let response = if seen {
                Response::with_status(Status::NOT_MODIFIED, Bytes::new())
            } else {
                Response::ok(format!("config version {version}"))
            };
            response
                .metadata([(mux_core::patterns::ETAG, version.as_bytes())])
                .map_err(|e| e.to_string().into())
        })
        .route("config.set", |_| {
            let version = CONFIG_VERSION.fetch_add(1, Ordering::Relaxed) + 1;
            Ok(Response::ok(version.to_string()))
        })
        .route("counter", |req| {
            let Some(session) = req.session() else {
                return Err(HandlerError::new(
                    Status::BAD_REQUEST,
                    "counter needs a session",
                ));
            };
            let count = session
                .get("count")
                .and_then(|v| {
                    std::str::from_utf8(&v)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                })
                .unwrap_or(0)
                + 1;
            session.set("count", Bytes::from(count.to_string()));
            session.push("count", Bytes::from(count.to_string()));
            Ok(Response::ok(count.to_string()))
        })
        // Blocking: with an event store shared over the network, an append
        // waits for the store's answer, which a loop must not.
        .route_blocking("enqueue", |req| append(&req, "jobs", "job"))
        .route_blocking("announce", |req| append(&req, "news", "news"))
}

/// Appends the request's body to `log`; answers the entry's id (503 when
/// the event store cannot take it).
fn append(req: &crate::Request, log: &str, kind: &str) -> HandlerResult {
    let Some(server) = req.server() else {
        return Err("server not started".into());
    };
    server
        .append_event(log, kind, req.body().clone())
        .map(|id| Response::ok(id.to_string()))
        .map_err(|err| HandlerError::new(Status::UNAVAILABLE, err.to_string()))
}

/// The event log the demo clock appends a `tick` to every second.
pub const TICKS: &str = "ticks";

/// The demo page the web edge serves at `/` (when the demo server has an
/// HTTP edge): a live event stream, a topic and a long-polled value.
pub const PAGE: &str = include_str!("demo_page.html");

/// Every `every`, until the returned guard is dropped: pushes the time to
/// every client, appends a `tick` to the event log [`TICKS`], and publishes
/// the time on the topic `clock.tick`. Between ticks the thread sleeps for
/// the whole period (it wakes early only to stop).
pub fn start_clock(server: ServerHandle, every: Duration) -> ClockGuard {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("mux-demo-clock".into())
        .spawn(move || {
            let start = std::time::Instant::now();
            let mut tick = 0u64;
            loop {
                let now = format!("{:.1} s since start", start.elapsed().as_secs_f64());
                let _ = server.push_all([(&b"kind"[..], &b"clock"[..])], now.clone());
                // For the web edge's page (and anyone): the same tick as an
                // event, a publication and a long-polled log entry.
                tick += 1;
                let _ = server.append_event(TICKS, "tick", format!("tick {tick} at {now}"));
                let _ = server.publish("clock.tick", now);
                // The guard's drop disconnects the channel: stop at once.
                if stopped.recv_timeout(every) != Err(RecvTimeoutError::Timeout) {
                    return;
                }
            }
        })
        .ok();
    ClockGuard {
        stop: Some(stop),
        thread,
    }
}

/// Stops the demo clock when dropped.
#[derive(Debug)]
pub struct ClockGuard {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ClockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the whole demo server (every demo route, and the clock) on `addr`.
pub fn start(
    addr: std::net::SocketAddr,
    threads: Option<usize>,
    connection: mux_core::Config,
) -> std::io::Result<(Server, ClockGuard)> {
    let mut builder = Server::builder().bind(addr).connection_config(connection);
    if let Some(threads) = threads {
        builder = builder.threads(threads);
    }
    start_with(builder)
}

/// Starts the whole demo server (every demo route, and the clock) from a
/// builder already configured (address, threads, TLS...).
pub fn start_with(builder: ServerBuilder) -> std::io::Result<(Server, ClockGuard)> {
    let server = pattern_routes(routes(builder)).http_page(PAGE).start()?;
    let clock = start_clock(server.handle(), Duration::from_secs(1));
    Ok((server, clock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_stops_when_its_guard_is_dropped_without_waiting_out_its_period() {
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let server = Server::builder()
            .bind(loopback)
            .threads(1)
            .start()
            .expect("a server");
        let guard = start_clock(server.handle(), Duration::from_secs(3600));
        let (done, dropped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(guard);
            let _ = done.send(());
        });
        assert!(
            dropped.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the clock thread kept sleeping through its hour after the guard's drop"
        );
    }
}
