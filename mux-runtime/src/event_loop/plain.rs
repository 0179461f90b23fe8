//! Plain (non-mux) TCP sockets and listeners that a loop watches for its
//! application: what a proxy such as the sidecar needs to carry ordinary TCP
//! connections beside mux ones on the same thread. Tokens of plain sockets
//! and listeners live in ranges of their own, far above the connections'.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Interest, Token};
use slab::Slab;

use super::context::Ctx;
use super::{App, EventLoop};
use crate::socket;

/// Plain sockets use `Token(PLAIN_BASE + slab index)`, and plain listeners
/// `Token(PLAIN_LISTEN_BASE + slab index)`: far apart, so the ranges never meet.
pub(super) const PLAIN_BASE: usize = 1 << 40;
pub(super) const PLAIN_LISTEN_BASE: usize = 1 << 41;

/// A plain TCP socket's handle (for proxies such as the sidecar): its slab
/// index and generation, like [`ConnKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlainKey {
    pub(super) index: usize,
    pub(super) generation: u64,
}

/// A plain TCP socket the loop watches for the application.
#[derive(Debug)]
pub(super) struct Plain {
    pub(super) socket: mio::net::TcpStream,
    pub(super) generation: u64,
}

/// The plain sockets and listeners of one loop.
#[derive(Debug, Default)]
pub(super) struct PlainSockets {
    pub(super) sockets: Slab<Plain>,
    pub(super) listeners: Slab<mio::net::TcpListener>,
}

impl Ctx<'_> {
    /// Listens for plain TCP connections on `addr`; accepted sockets arrive in
    /// [`App::on_plain_accept`] with the returned listener number.
    pub fn listen_plain(&mut self, addr: SocketAddr) -> io::Result<(usize, SocketAddr)> {
        let mut listener = socket::listen(addr, false, &self.config.socket)?;
        let local = listener.local_addr()?;
        let entry = self.plain.listeners.vacant_entry();
        let index = entry.key();
        self.registry.register(
            &mut listener,
            Token(PLAIN_LISTEN_BASE + index),
            Interest::READABLE,
        )?;
        entry.insert(listener);
        Ok((index, local))
    }

    pub(super) fn insert_plain(&mut self, mut socket: mio::net::TcpStream) -> io::Result<PlainKey> {
        let entry = self.plain.sockets.vacant_entry();
        let index = entry.key();
        self.registry.register(
            &mut socket,
            Token(PLAIN_BASE + index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        *self.generations += 1;
        let generation = *self.generations;
        entry.insert(Plain { socket, generation });
        Ok(PlainKey { index, generation })
    }

    /// Starts a plain TCP connection to `addr`; [`App::on_plain`] reports it
    /// writable once connected (check [`Ctx::plain_connected`]).
    pub fn connect_plain(&mut self, addr: SocketAddr) -> io::Result<PlainKey> {
        let socket = socket::connect(addr, &self.config.socket)?;
        self.insert_plain(socket)
    }

    fn plain_socket(&mut self, key: PlainKey) -> io::Result<&mut mio::net::TcpStream> {
        self.plain
            .sockets
            .get_mut(key.index)
            .filter(|p| p.generation == key.generation)
            .map(|p| &mut p.socket)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "plain socket closed"))
    }

    /// Whether a plain connect completed (`Err` if it failed).
    pub fn plain_connected(&mut self, key: PlainKey) -> io::Result<bool> {
        let socket = self.plain_socket(key)?;
        if let Some(err) = socket.take_error()? {
            return Err(err);
        }
        match socket.peer_addr() {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Reads from a plain socket (`WouldBlock` when drained, `Ok(0)` at end of file).
    pub fn plain_read(&mut self, key: PlainKey, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Read;
        self.plain_socket(key)?.read(buf)
    }

    /// Writes to a plain socket (`WouldBlock` when full).
    pub fn plain_write(&mut self, key: PlainKey, buf: &[u8]) -> io::Result<usize> {
        use std::io::Write;
        self.plain_socket(key)?.write(buf)
    }

    /// Ends the write side of a plain socket (half-close).
    pub fn plain_shutdown_write(&mut self, key: PlainKey) -> io::Result<()> {
        self.plain_socket(key)?.shutdown(std::net::Shutdown::Write)
    }

    /// Closes a plain socket, abortively (RST) when `abort`.
    pub fn plain_close(&mut self, key: PlainKey, abort: bool) {
        if self
            .plain
            .sockets
            .get(key.index)
            .is_none_or(|p| p.generation != key.generation)
        {
            return;
        }
        let mut plain = self.plain.sockets.remove(key.index);
        let _ = self.registry.deregister(&mut plain.socket);
        if abort {
            let _ = socket2::SockRef::from(&plain.socket).set_linger(Some(Duration::ZERO));
        }
    }

    /// Plain sockets open.
    pub fn plain_count(&self) -> usize {
        self.plain.sockets.len()
    }
}

impl<A: App> EventLoop<A> {
    /// A readiness event on a plain socket or listener token.
    pub(super) fn serve_plain(
        &mut self,
        now: Instant,
        token: usize,
        event: &mio::event::Event,
        dirty: &mut Vec<usize>,
    ) {
        if token >= PLAIN_LISTEN_BASE {
            return self.accept_plain(now, token - PLAIN_LISTEN_BASE, dirty);
        }
        let index = token - PLAIN_BASE;
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        let writable = event.is_writable() || event.is_write_closed() || event.is_error();
        if let Some(plain) = self.plain.sockets.get(index) {
            let key = PlainKey {
                index,
                generation: plain.generation,
            };
            let (mut ctx, app) = self.split(now, dirty);
            app.on_plain(&mut ctx, key, readable, writable);
        }
    }

    /// Accepts plain connections until `WouldBlock`.
    fn accept_plain(&mut self, now: Instant, listener: usize, dirty: &mut Vec<usize>) {
        loop {
            let Some(socket) = self.plain.listeners.get(listener) else {
                return;
            };
            let (stream, _peer) = match socket.accept() {
                Ok(accepted) => accepted,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    log::warn!("plain accept failed: {err}");
                    return;
                }
            };
            let _ = socket::configure(&stream, &self.config.socket);
            let (mut ctx, app) = self.split(now, dirty);
            if let Ok(key) = ctx.insert_plain(stream) {
                app.on_plain_accept(&mut ctx, listener, key);
            }
        }
    }
}
