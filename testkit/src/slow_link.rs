//! A simulated long link on loopback: a TCP proxy that delays every byte by a
//! one-way latency and paces it at a bottleneck rate, in each direction.
//!
//! `tc netem` is not available on every kernel the tests run on, so the
//! round-trip time comes from here. The proxy reads only as fast as its
//! bottleneck drains (holding at most [`SlowLink::queue`] of queueing beyond
//! the bytes in flight), so a sender is paced by TCP's own backpressure, as
//! at a real bottleneck: plain TCP through it runs at the link's rate, and a
//! protocol with its own flow control runs at what its windows allow on a
//! path of that round-trip time. Used by the long-link tests and by the
//! benchmark's long-link workload.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes read from the sending side in one piece.
const PIECE: usize = 64 * 1024;

/// A link's shape: delay and bottleneck rate, the same in both directions.
#[derive(Debug, Clone, Copy)]
pub struct SlowLink {
    /// One-way delay (half the round-trip time).
    pub one_way: Duration,
    /// Bottleneck rate in bytes per second.
    pub bytes_per_second: u64,
    /// Queueing the bottleneck holds beyond the bytes in flight, as time at
    /// its rate (a router's buffer).
    pub queue: Duration,
}

impl SlowLink {
    /// A link of round-trip time `rtt` at `bytes_per_second`, with 10 ms of
    /// bottleneck queue.
    pub fn new(rtt: Duration, bytes_per_second: u64) -> Self {
        Self {
            one_way: rtt / 2,
            bytes_per_second,
            queue: Duration::from_millis(10),
        }
    }

    /// Starts a proxy on loopback port 0 that forwards every connection to
    /// `target` through this link.
    pub fn proxy_to(self, target: SocketAddr) -> std::io::Result<SlowLinkProxy> {
        let listener = TcpListener::bind(crate::any_local_address())?;
        let addr = listener.local_addr()?;
        let stopped = Arc::new(AtomicBool::new(false));
        let accept = {
            let stopped = Arc::clone(&stopped);
            std::thread::Builder::new()
                .name("slow-link-accept".into())
                .spawn(move || {
                    for client in listener.incoming() {
                        if stopped.load(Ordering::Acquire) {
                            break;
                        }
                        let Ok(client) = client else { continue };
                        let Ok(server) = TcpStream::connect(target) else {
                            continue;
                        };
                        for (from, to) in [(&client, &server), (&server, &client)] {
                            if let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) {
                                self.carry(from, to);
                            }
                        }
                    }
                })?
        };
        Ok(SlowLinkProxy {
            addr,
            stopped,
            accept: Some(accept),
        })
    }

    /// Carries one direction: a reader paced by the bottleneck, and a writer
    /// that releases each piece once its delay has passed.
    fn carry(self, mut from: TcpStream, mut to: TcpStream) {
        let (pieces, arrivals) = mpsc::channel::<(Instant, Vec<u8>)>();
        let _ = from.set_nodelay(true);
        let _ = to.set_nodelay(true);
        let reader = std::thread::Builder::new()
            .name("slow-link-read".into())
            .spawn(move || {
                let mut free_at = Instant::now();
                loop {
                    let mut piece = vec![0u8; PIECE];
                    let n = match from.read(&mut piece) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    piece.truncate(n);
                    let now = Instant::now();
                    let departs = free_at.max(now) + self.serialisation(n);
                    free_at = departs;
                    if pieces.send((departs + self.one_way, piece)).is_err() {
                        break;
                    }
                    // The bottleneck's buffer is full: stop reading until it
                    // drains, so that TCP pushes back on the sender.
                    let backlog = departs.saturating_duration_since(Instant::now());
                    if backlog > self.queue {
                        std::thread::sleep(backlog - self.queue);
                    }
                }
                let _ = from.shutdown(Shutdown::Read);
            });
        let writer = std::thread::Builder::new()
            .name("slow-link-write".into())
            .spawn(move || {
                for (arrives, piece) in arrivals {
                    let wait = arrives.saturating_duration_since(Instant::now());
                    if !wait.is_zero() {
                        std::thread::sleep(wait);
                    }
                    if to.write_all(&piece).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(Shutdown::Write);
            });
        // A thread that could not start leaves its direction closed, which
        // the endpoints see as a closed connection.
        drop((reader, writer));
    }

    fn serialisation(&self, len: usize) -> Duration {
        let nanos = (len as u128) * 1_000_000_000 / u128::from(self.bytes_per_second.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A running [`SlowLink`] proxy; stops accepting when dropped (connections
/// already carried run until their ends close).
#[derive(Debug)]
pub struct SlowLinkProxy {
    addr: SocketAddr,
    stopped: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl SlowLinkProxy {
    /// Where clients connect to reach the target through the link.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SlowLinkProxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}
