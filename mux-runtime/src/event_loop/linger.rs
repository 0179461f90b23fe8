//! Lingering close (spec §11.3.4): a connection the loop ends while its peer
//! may still be sending is not closed at once. Its sending direction ends
//! (TCP FIN, after every byte written) and what arrives is read and
//! discarded until the peer ends its own, resets, or a bound passes.
//!
//! Closing a TCP socket that holds unread bytes makes the kernel answer
//! with a reset (RST) and throw away what it had not yet sent; the peer's
//! kernel may then drop what it had received but not handed over: the
//! last answer, a stream's RESET, the GOAWAY that says why. A peer that
//! sent one more PING or request as the connection ended is enough.

use std::io::{self, Read};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::timer::TimerKind;

/// Lingering sockets use `Token(LINGER_BASE + slab index)`.
pub(super) const LINGER_BASE: usize = 1 << 42;

/// The longest a socket lingers: a peer that neither closes nor resets by
/// then is cut off. Peers that close when told take one round trip.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// How long sockets may still linger once the loop has nothing else to do
/// (its server shut down or aborted): stopping waits for the peers' ends
/// at most this long.
pub(super) const LINGER_ON_EXIT: Duration = Duration::from_millis(100);

/// Bytes discarded at most per socket: a peer that keeps sending is cut off
/// sooner than [`LINGER_TIME`].
const MAX_DISCARDED: usize = 1 << 20;

/// Sockets lingering at most per loop; beyond, a connection closes at once.
/// Each holds a file descriptor, not a connection slot.
const MAX_LINGERING: usize = 1024;

/// The loop's lingering sockets.
#[derive(Debug)]
pub(super) struct Lingering {
    sockets: Slab<Lingerer>,
    generations: u64,
    /// [`MAX_LINGERING`], but in tests.
    limit: usize,
    /// Set once the loop is stopping: no socket lingers past it.
    stop_by: Option<Instant>,
}

impl Default for Lingering {
    fn default() -> Self {
        Self {
            sockets: Slab::new(),
            generations: 0,
            limit: MAX_LINGERING,
            stop_by: None,
        }
    }
}

#[derive(Debug)]
struct Lingerer {
    socket: TcpStream,
    generation: u64,
    discarded: usize,
}

impl Lingering {
    /// Ends `socket`'s sending direction and keeps it, registered for
    /// reading, until the peer ends (or the bounds pass). Returns the
    /// timer that ends its lingering; `None` if it closed at once (too
    /// many lingering, or the socket already failed).
    pub(super) fn start(
        &mut self,
        registry: &Registry,
        mut socket: TcpStream,
        now: Instant,
    ) -> Option<(Instant, TimerKind)> {
        if self.sockets.len() >= self.limit || socket.shutdown(Shutdown::Write).is_err() {
            return None;
        }
        let entry = self.sockets.vacant_entry();
        let index = entry.key();
        // Registering reports bytes already waiting.
        registry
            .register(&mut socket, Token(LINGER_BASE + index), Interest::READABLE)
            .ok()?;
        self.generations += 1;
        let generation = self.generations;
        entry.insert(Lingerer {
            socket,
            generation,
            discarded: 0,
        });
        let until = self
            .stop_by
            .map_or(now + LINGER_TIME, |stop| stop.min(now + LINGER_TIME));
        Some((until, TimerKind::Linger { index, generation }))
    }

    /// Reads and discards what arrived on the socket at `token`; closes it
    /// at the peer's end, an error, or [`MAX_DISCARDED`].
    pub(super) fn on_readable(&mut self, registry: &Registry, token: usize, scratch: &mut [u8]) {
        let index = token - LINGER_BASE;
        let Some(lingerer) = self.sockets.get_mut(index) else {
            return;
        };
        loop {
            match lingerer.socket.read(scratch) {
                Ok(0) => break,
                Ok(n) => {
                    lingerer.discarded += n;
                    if lingerer.discarded > MAX_DISCARDED {
                        break;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close(registry, index);
    }

    /// The lingering time of the socket at `index` ran out.
    pub(super) fn expire(&mut self, registry: &Registry, index: usize, generation: u64) {
        if self
            .sockets
            .get(index)
            .is_some_and(|lingerer| lingerer.generation == generation)
        {
            self.close(registry, index);
        }
    }

    /// The loop is stopping: no socket lingers past `at`. Returns the
    /// timers that end the lingering ones by then.
    pub(super) fn stop_by(&mut self, at: Instant) -> Vec<(Instant, TimerKind)> {
        self.stop_by = Some(at);
        self.sockets
            .iter()
            .map(|(index, lingerer)| {
                let generation = lingerer.generation;
                (at, TimerKind::Linger { index, generation })
            })
            .collect()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    fn close(&mut self, registry: &Registry, index: usize) {
        if let Some(mut lingerer) = self.sockets.try_remove(index) {
            let _ = registry.deregister(&mut lingerer.socket);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

    use mio::{Events, Poll};

    use super::*;

    /// A lingering socket (ours) and its peer's end of the connection.
    fn lingering_pair(lingering: &mut Lingering, poll: &Poll) -> (std::net::TcpStream, usize) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (ours, _) = listener.accept().expect("accept");
        ours.set_nonblocking(true).expect("nonblocking");
        let before = lingering.sockets.len();
        let (_, timer) = lingering
            .start(poll.registry(), TcpStream::from_std(ours), Instant::now())
            .expect("lingers");
        assert_eq!(lingering.sockets.len(), before + 1);
        let TimerKind::Linger { index, .. } = timer else {
            panic!("not a linger timer: {timer:?}");
        };
        (peer, index)
    }

    /// Serves readiness until the socket at `index` is gone, at most 100 polls.
    fn serve_until_closed(lingering: &mut Lingering, poll: &mut Poll, index: usize) {
        let mut events = Events::with_capacity(16);
        let mut scratch = vec![0; 64 * 1024];
        for _ in 0..100 {
            if !lingering.sockets.contains(index) {
                return;
            }
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .expect("poll");
            for event in &events {
                let registry = poll.registry();
                lingering.on_readable(registry, event.token().0, &mut scratch);
            }
        }
        panic!("the lingering socket was not closed");
    }

    #[test]
    fn our_end_is_a_fin_and_the_peers_end_closes_the_socket() {
        let (mut lingering, mut poll) = (Lingering::default(), Poll::new().expect("poll"));
        let (mut peer, index) = lingering_pair(&mut lingering, &poll);
        peer.write_all(b"one more request").expect("write");
        let mut buf = [0; 16];
        assert_eq!(peer.read(&mut buf).expect("our FIN"), 0);
        peer.shutdown(Shutdown::Write).expect("peer's FIN");
        serve_until_closed(&mut lingering, &mut poll, index);
        assert!(lingering.is_empty());
    }

    #[test]
    fn a_peer_that_keeps_sending_is_cut_off_after_the_byte_bound() {
        let (mut lingering, mut poll) = (Lingering::default(), Poll::new().expect("poll"));
        let (peer, index) = lingering_pair(&mut lingering, &poll);
        let writer = std::thread::spawn(move || {
            let mut peer = peer;
            let chunk = [0u8; 64 * 1024];
            // Ends in an error once the socket is cut off (reset), after
            // what the kernel buffers hold (a few MiB) beyond the bound.
            (0..1024).try_for_each(|_| peer.write_all(&chunk)).is_err()
        });
        serve_until_closed(&mut lingering, &mut poll, index);
        assert!(writer.join().expect("writer"), "64 MiB went through");
    }

    #[test]
    fn the_timer_ends_lingering_and_a_stale_timer_does_nothing() {
        let (mut lingering, poll) = (Lingering::default(), Poll::new().expect("poll"));
        let (_peer, index) = lingering_pair(&mut lingering, &poll);
        let generation = lingering.sockets[index].generation;
        lingering.expire(poll.registry(), index, generation + 1);
        assert!(!lingering.is_empty(), "a stale timer closed the socket");
        lingering.expire(poll.registry(), index, generation);
        assert!(lingering.is_empty());
    }

    #[test]
    fn a_stopping_loop_cuts_every_lingering_short() {
        let (mut lingering, poll) = (Lingering::default(), Poll::new().expect("poll"));
        let (_first_peer, first) = lingering_pair(&mut lingering, &poll);
        let stop = Instant::now() + LINGER_ON_EXIT;
        let timers = lingering.stop_by(stop);
        assert!(
            matches!(timers[..], [(at, TimerKind::Linger { index, .. })] if at == stop && index == first),
            "{timers:?}"
        );
        // A connection that closes afterwards lingers no longer either.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let _peer =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (ours, _) = listener.accept().expect("accept");
        let (until, _) = lingering
            .start(poll.registry(), TcpStream::from_std(ours), Instant::now())
            .expect("lingers");
        assert!(until <= stop);
    }

    #[test]
    fn beyond_the_count_bound_a_socket_closes_at_once() {
        let poll = Poll::new().expect("poll");
        let mut lingering = Lingering {
            limit: 3,
            ..Lingering::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut peers = Vec::new();
        for n in 0..=lingering.limit {
            peers.push(std::net::TcpStream::connect(addr).expect("connect"));
            let (ours, _) = listener.accept().expect("accept");
            let started =
                lingering.start(poll.registry(), TcpStream::from_std(ours), Instant::now());
            assert_eq!(started.is_some(), n < 3, "socket {n}");
        }
    }
}
