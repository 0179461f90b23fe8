//! Plain (non-mux) TCP sockets and listeners that a loop watches for its
//! application: what a proxy such as the sidecar needs to carry ordinary TCP
//! connections beside mux ones on the same thread. Tokens of plain sockets
//! and listeners live in ranges of their own, far above the connections'.
//! The application reaches them through `Ctx::plain_*`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use mio::{Interest, Registry, Token};
use slab::Slab;

use super::keys::PlainKey;
use crate::socket::{self, SocketOptions};

/// Plain sockets use `Token(PLAIN_BASE + slab index)`, and plain listeners
/// `Token(PLAIN_LISTEN_BASE + slab index)`: far apart, so the ranges never meet.
pub(super) const PLAIN_BASE: usize = 1 << 40;
pub(super) const PLAIN_LISTEN_BASE: usize = 1 << 41;

/// A plain TCP socket the loop watches for the application.
#[derive(Debug)]
struct Plain {
    socket: mio::net::TcpStream,
    generation: u64,
}

/// The plain sockets and listeners of one loop.
#[derive(Debug, Default)]
pub(super) struct PlainSockets {
    sockets: Slab<Plain>,
    listeners: Slab<mio::net::TcpListener>,
}

impl PlainSockets {
    /// Listens on `addr`; returns the listener's number and address.
    pub(super) fn listen(
        &mut self,
        registry: &Registry,
        addr: SocketAddr,
        options: &SocketOptions,
    ) -> io::Result<(usize, SocketAddr)> {
        let listener = socket::listen(addr, false, options)?;
        let local = listener.local_addr()?;
        let index = self.adopt_listener(registry, listener)?;
        Ok((index, local))
    }

    /// Watches a listening socket made elsewhere (one shared by several
    /// loops, each accepting from it); returns its number.
    pub(super) fn adopt_listener(
        &mut self,
        registry: &Registry,
        mut listener: mio::net::TcpListener,
    ) -> io::Result<usize> {
        let entry = self.listeners.vacant_entry();
        let index = entry.key();
        registry.register(
            &mut listener,
            Token(PLAIN_LISTEN_BASE + index),
            Interest::READABLE,
        )?;
        entry.insert(listener);
        Ok(index)
    }

    /// Stops watching listener `listener` and closes this loop's copy of it.
    pub(super) fn close_listener(&mut self, registry: &Registry, listener: usize) {
        if let Some(mut socket) = self.listeners.try_remove(listener) {
            let _ = registry.deregister(&mut socket);
        }
    }

    /// The address of the peer of a plain socket.
    pub(super) fn peer_addr(&self, key: PlainKey) -> Option<SocketAddr> {
        self.sockets
            .get(key.index)
            .filter(|p| p.generation == key.generation)
            .and_then(|p| p.socket.peer_addr().ok())
    }

    /// Accepts one connection on listener `listener` (`WouldBlock` when none waits).
    pub(super) fn accept(&self, listener: usize) -> io::Result<mio::net::TcpStream> {
        match self.listeners.get(listener) {
            Some(socket) => socket.accept().map(|(stream, _peer)| stream),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    /// Watches `socket`, whose generation is `generation`.
    pub(super) fn insert(
        &mut self,
        registry: &Registry,
        mut socket: mio::net::TcpStream,
        generation: u64,
    ) -> io::Result<PlainKey> {
        let entry = self.sockets.vacant_entry();
        let index = entry.key();
        registry.register(
            &mut socket,
            Token(PLAIN_BASE + index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(Plain { socket, generation });
        Ok(PlainKey { index, generation })
    }

    /// The key of the socket in slot `index`, if any.
    pub(super) fn key_at(&self, index: usize) -> Option<PlainKey> {
        self.sockets.get(index).map(|plain| PlainKey {
            index,
            generation: plain.generation,
        })
    }

    fn socket(&mut self, key: PlainKey) -> io::Result<&mut mio::net::TcpStream> {
        self.sockets
            .get_mut(key.index)
            .filter(|p| p.generation == key.generation)
            .map(|p| &mut p.socket)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "plain socket closed"))
    }

    /// Whether a connect completed (`Err` if it failed).
    pub(super) fn connected(&mut self, key: PlainKey) -> io::Result<bool> {
        let socket = self.socket(key)?;
        if let Some(err) = socket.take_error()? {
            return Err(err);
        }
        match socket.peer_addr() {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(err) => Err(err),
        }
    }

    pub(super) fn read(&mut self, key: PlainKey, buf: &mut [u8]) -> io::Result<usize> {
        self.socket(key)?.read(buf)
    }

    pub(super) fn write(&mut self, key: PlainKey, buf: &[u8]) -> io::Result<usize> {
        self.socket(key)?.write(buf)
    }

    pub(super) fn shutdown_write(&mut self, key: PlainKey) -> io::Result<()> {
        self.socket(key)?.shutdown(std::net::Shutdown::Write)
    }

    /// Stops watching a socket and closes it, abortively (RST) when `abort`.
    pub(super) fn close(&mut self, registry: &Registry, key: PlainKey, abort: bool) {
        if self
            .sockets
            .get(key.index)
            .is_none_or(|p| p.generation != key.generation)
        {
            return;
        }
        let mut plain = self.sockets.remove(key.index);
        let _ = registry.deregister(&mut plain.socket);
        if abort {
            let _ = socket2::SockRef::from(&plain.socket).set_linger(Some(Duration::ZERO));
        }
    }

    /// Sockets open.
    pub(super) fn len(&self) -> usize {
        self.sockets.len()
    }
}
