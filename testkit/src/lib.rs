//! What mux's integration tests, examples, tour and benchmark share, written
//! once: servers on loopback port 0, bounded waits that fail with a clear
//! message, deterministic data and its hash, a minimal executor, a raw mux
//! peer ([`RawPeer`]), a raw-frame attacker ([`Attacker`]), plain-TCP
//! upstreams ([`upstream`]), a delaying, rate-limiting proxy ([`SlowLink`]), a
//! frame-damaging proxy ([`mangler`]),
//! launchers of external programs ([`programs`]) and test certificates ([`pki`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attacker;
pub mod http;
pub mod mangler;
pub mod pki;
pub mod programs;
mod raw_peer;
mod slow_link;
pub mod upstream;
pub mod webdriver;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

pub use mux_server::demo::fnv1a;
use mux_server::{Response, Server, ServerBuilder};

pub use self::attacker::Attacker;
pub use self::raw_peer::RawPeer;
pub use self::slow_link::{SlowLink, SlowLinkProxy};

/// A streamed request body's sink that answers the body's FNV-1a hash
/// (`route_streaming(name, |_| Box::<HashingSink>::default())`).
#[derive(Debug, Default)]
pub struct HashingSink(mux_server::demo::Fnv1a);

impl mux_server::BodySink for HashingSink {
    fn data(&mut self, bytes: &bytes::Bytes, _end_message: bool) {
        self.0.update(bytes);
    }

    fn end(self: Box<Self>) -> mux_server::HandlerResult {
        Ok(Response::ok(self.0.finish().to_string()))
    }
}

/// A listener on loopback that answers its first connection like an HTTP
/// server (`400 Bad Request`) and then closes: a peer that is not mux.
/// Join the handle once the client has given up.
pub fn not_mux_peer() -> (SocketAddr, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(any_local_address()).expect("bind");
    let addr = listener.local_addr().expect("local address");
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    (addr, peer)
}

/// Loopback, port 0: the kernel picks a free port.
pub fn any_local_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A builder bound to loopback port 0 with two loop threads and an echo route.
pub fn server_builder() -> ServerBuilder {
    Server::builder()
        .bind(any_local_address())
        .threads(2)
        .route("echo", |req| Ok(Response::ok(req.into_body())))
}

/// The server a probe works against: `remote` if given (one started by
/// `mux-bench serve mux`, say), else the demo routes on a server of this
/// process, set up by `setup` and bound to loopback port 0; the second
/// value keeps that server running.
pub fn remote_or_demo(
    remote: Option<SocketAddr>,
    setup: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> (SocketAddr, Option<Server>) {
    if let Some(addr) = remote {
        return (addr, None);
    }
    let builder = setup(Server::builder().bind(any_local_address()));
    let server = mux_server::demo::routes(builder)
        .start()
        .expect("the demo server starts");
    (server.local_addr(), Some(server))
}

/// Runs `work` on a thread of its own and waits at most `limit` for its
/// result, or panics naming `what`: for tests of calls that could hang.
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    outcome
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
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

/// Raises this process's soft limit of open files towards `want` (up to the
/// hard limit); returns the limit now in force. Tests with thousands of
/// sockets call it, then size themselves to what they got.
pub fn raise_open_files(want: u64) -> u64 {
    rlimit::increase_nofile_limit(want).unwrap_or(1024)
}

/// Raises the open-file limit towards `want`, as [`raise_open_files`], and
/// sizes this process's descriptor table for `want` at once, so that
/// opening sockets later never grows it; returns the limit now in force.
/// Call it while the process has a single thread (before `main`, or first
/// thing in `main`).
///
/// Why: growing the table (at the 65th, 129th, 257th... descriptor) in a
/// process with several threads waits for an RCU grace period, and on a
/// loaded two-core VM the kernel's grace-period thread has been seen starved
/// for 59 s (`rcu_preempt kthread starved` in the kernel log): a `socket`,
/// `accept` or `open` at such a descriptor blocked that long, stalling the
/// attack tests and the server loop that accepted. With one thread the
/// kernel skips the wait.
pub fn reserve_file_descriptors(want: u64) -> u64 {
    let limit = raise_open_files(want);
    let highest = i32::try_from(limit.min(want).saturating_sub(1)).unwrap_or(i32::MAX);
    // Duplicating a descriptor to the highest number wanted (within the limit)
    // makes the kernel size the table for it; closing it keeps the size.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        use nix::fcntl::{fcntl, FcntlArg};
        if let Ok(high) = fcntl(&null, FcntlArg::F_DUPFD_CLOEXEC(highest)) {
            let _ = nix::unistd::close(high);
        }
    }
    limit
}

/// CPU time process `pid` has used, all its threads, user and system, in
/// seconds; 0 if unknown. Read from the process's CPU-time clock, to the
/// nanosecond: `/proc/PID/stat` counts 10 ms ticks, too coarse for a few
/// thousand calls of a few microseconds each.
pub fn cpu_seconds(pid: u32) -> f64 {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(0));
    nix::time::clock_getcpuclockid(pid)
        .and_then(|clock| clock.now())
        .map_or(0.0, |time| Duration::from(time).as_secs_f64())
}

/// Resident memory of process `pid` in KiB (`VmRSS`), 0 if unknown.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
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

/// A minimal executor: polls `future` on the calling thread and parks
/// between wake-ups. Enough to show that mux's futures are plain
/// `std::future::Future`s that need no particular runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        // A wake-up unparks at once; the timeout only bounds a lost one.
        std::thread::park_timeout(Duration::from_millis(50));
    }
}
