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

/// Bytes discarded at most per socket: a peer that keeps sending is cut off
/// sooner than [`LINGER_TIME`].
const MAX_DISCARDED: usize = 1 << 20;

/// Sockets lingering at most per loop; beyond, a connection closes at once.
/// Each holds a file descriptor, not a connection slot.
const MAX_LINGERING: usize = 1024;

/// The loop's lingering sockets.
#[derive(Debug, Default)]
pub(super) struct Lingering {
    sockets: Slab<Lingerer>,
    generations: u64,
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
        if self.sockets.len() >= MAX_LINGERING || socket.shutdown(Shutdown::Write).is_err() {
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
        Some((now + LINGER_TIME, TimerKind::Linger { index, generation }))
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

    pub(super) fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    fn close(&mut self, registry: &Registry, index: usize) {
        if let Some(mut lingerer) = self.sockets.try_remove(index) {
            let _ = registry.deregister(&mut lingerer.socket);
        }
    }
}
