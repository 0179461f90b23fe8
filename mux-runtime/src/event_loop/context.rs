//! [`Ctx`]: what an [`App`](super::App) callback may do: reach a connection's
//! state machine, open and close connections, set timers, stop accepting.
//! Plain sockets (for proxies) are kept in [`super::plain`]; `Ctx` is how
//! the application reaches them too.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::{Interest, Registry};
use mux_core::{Connection, Side};
use slab::Slab;

use super::config::LoopConfig;
use super::conn_token;
use super::keys::{ConnKey, PlainKey};
use super::plain::PlainSockets;
use crate::conn_io::ConnIo;
use crate::socket;
use crate::timer::{TimerKind, Timers};

/// What the app may do during a callback.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The time of this loop iteration.
    pub now: Instant,
    pub(super) conns: &'a mut Slab<ConnIo>,
    pub(super) registry: &'a Registry,
    pub(super) dirty: &'a mut Vec<usize>,
    pub(super) timers: &'a mut Timers,
    pub(super) config: &'a LoopConfig,
    pub(super) generations: &'a mut u64,
    pub(super) accepting: &'a mut AcceptState,
    pub(super) plain: &'a mut PlainSockets,
    /// The final counters of the connection whose close is being reported
    /// (lent: they are large, and a context is made for every event).
    pub(super) closed: Option<&'a (ConnKey, mux_core::Stats)>,
}

/// Whether the listener is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AcceptState {
    /// No listener.
    None,
    /// Registered and accepting.
    Accepting,
    /// Deregistered at capacity; re-registered below it.
    Paused,
    /// Deregistered for good (shutdown).
    Stopped,
}

impl Ctx<'_> {
    /// The address of connection `key`'s peer.
    pub fn peer_addr(&self, key: ConnKey) -> Option<SocketAddr> {
        let io = self
            .conns
            .get(key.index)
            .filter(|io| io.generation == key.generation)?;
        io.socket.peer_addr().ok()
    }

    /// The names in the certificate connection `key`'s peer presented over
    /// TLS and the handshake verified (empty without one): see
    /// [`certificate_names`](crate::tls::certificate_names).
    pub fn peer_certificate_names(&self, key: ConnKey) -> Vec<String> {
        self.conns
            .get(key.index)
            .filter(|io| io.generation == key.generation)
            .and_then(|io| io.peer_certificates())
            .and_then(|chain| chain.first())
            .map(crate::tls::certificate_names)
            .unwrap_or_default()
    }

    /// The state machine of connection `key`; the loop flushes it after the callback.
    pub fn conn(&mut self, key: ConnKey) -> Option<&mut Connection> {
        let io = self
            .conns
            .get_mut(key.index)
            .filter(|io| io.generation == key.generation)?;
        queue_flush(io, self.dirty, key.index);
        Some(&mut io.conn)
    }

    /// Closes connection `key` (gracefully with `NO_ERROR`, see `Connection::close`).
    pub fn close(&mut self, key: ConnKey, code: mux_core::ErrorCode, reason: &str) {
        let now = self.now;
        if let Some(conn) = self.conn(key) {
            conn.close(now, code, reason);
        }
    }

    /// Closes every connection of this loop.
    pub fn close_all(&mut self, code: mux_core::ErrorCode, reason: &str) {
        for key in self.keys() {
            self.close(key, code, reason);
        }
    }

    /// Keys of every connection of this loop.
    pub fn keys(&self) -> Vec<ConnKey> {
        self.conns
            .iter()
            .map(|(index, io)| ConnKey {
                index,
                generation: io.generation,
            })
            .collect()
    }

    /// Connections this loop holds.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Starts a client connection to `addr`; [`App::on_open`](super::App::on_open) follows once
    /// the TCP handshake completes, or [`App::on_closed`](super::App::on_closed) if it fails.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnKey> {
        self.connect_named(addr, None)
    }

    /// Like [`Ctx::connect`], for a server reached through the host name
    /// `host` (resolved to `addr`): over TLS, its certificate is verified
    /// against that name (unless a server name was configured).
    pub fn connect_named(&mut self, addr: SocketAddr, host: Option<&str>) -> io::Result<ConnKey> {
        let mut stream = socket::connect(addr, &self.config.socket)?;
        let entry = self.conns.vacant_entry();
        let index = entry.key();
        self.registry
            .register(&mut stream, conn_token(index), Interest::WRITABLE)?;
        *self.generations += 1;
        let conn = Connection::new(Side::Client, self.config.conn.clone(), self.now);
        let mut io = ConnIo::new(stream, conn, true, *self.generations, self.now);
        log::debug!("connection {index}: connecting to {addr}");
        if let Some(tls) = &self.config.tls_client {
            let session = tls
                .session(addr, host)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
            io = io.with_tls(session);
        }
        io.interest = Interest::WRITABLE;
        let generation = io.generation;
        io.flush_queued = true;
        entry.insert(io);
        self.dirty.push(index);
        Ok(ConnKey { index, generation })
    }

    /// Listens for plain TCP connections on `addr`; accepted sockets arrive in
    /// [`App::on_plain_accept`](super::App::on_plain_accept) with the
    /// returned listener number.
    pub fn listen_plain(&mut self, addr: SocketAddr) -> io::Result<(usize, SocketAddr)> {
        self.plain.listen(self.registry, addr, &self.config.socket)
    }

    /// Accepts plain TCP connections from a listening socket made elsewhere,
    /// for example one whose copies every loop of a server accepts from;
    /// they arrive in [`App::on_plain_accept`](super::App::on_plain_accept)
    /// with the returned listener number.
    pub fn adopt_plain_listener(&mut self, listener: mio::net::TcpListener) -> io::Result<usize> {
        self.plain.adopt_listener(self.registry, listener)
    }

    /// Stops accepting on plain listener `listener` (this loop's copy).
    pub fn close_plain_listener(&mut self, listener: usize) {
        self.plain.close_listener(self.registry, listener);
    }

    /// The peer address of a plain socket, while it is open.
    pub fn plain_peer_addr(&self, key: PlainKey) -> Option<SocketAddr> {
        self.plain.peer_addr(key)
    }

    /// The final counters of `key`'s state machine, during
    /// [`App::on_closed`](super::App::on_closed) for it (the connection is
    /// gone by then, so [`Ctx::conn`] no longer reaches it).
    pub fn closed_stats(&self, key: ConnKey) -> Option<mux_core::Stats> {
        self.closed
            .filter(|(k, _)| *k == key)
            .map(|(_, stats)| *stats)
    }

    /// Watches an accepted or connecting plain socket.
    pub(super) fn insert_plain(&mut self, socket: mio::net::TcpStream) -> io::Result<PlainKey> {
        *self.generations += 1;
        self.plain.insert(self.registry, socket, *self.generations)
    }

    /// Starts a plain TCP connection to `addr`; [`App::on_plain`](super::App::on_plain)
    /// reports it writable once connected (check [`Ctx::plain_connected`]).
    pub fn connect_plain(&mut self, addr: SocketAddr) -> io::Result<PlainKey> {
        let socket = socket::connect(addr, &self.config.socket)?;
        self.insert_plain(socket)
    }

    /// Whether a plain connect completed (`Err` if it failed).
    pub fn plain_connected(&mut self, key: PlainKey) -> io::Result<bool> {
        self.plain.connected(key)
    }

    /// Reads from a plain socket (`WouldBlock` when drained, `Ok(0)` at end of file).
    pub fn plain_read(&mut self, key: PlainKey, buf: &mut [u8]) -> io::Result<usize> {
        self.plain.read(key, buf)
    }

    /// Writes to a plain socket (`WouldBlock` when full).
    pub fn plain_write(&mut self, key: PlainKey, buf: &[u8]) -> io::Result<usize> {
        self.plain.write(key, buf)
    }

    /// Ends the write side of a plain socket (half-close).
    pub fn plain_shutdown_write(&mut self, key: PlainKey) -> io::Result<()> {
        self.plain.shutdown_write(key)
    }

    /// Closes a plain socket, abortively (RST) when `abort`.
    pub fn plain_close(&mut self, key: PlainKey, abort: bool) {
        self.plain.close(self.registry, key, abort);
    }

    /// Plain sockets open.
    pub fn plain_count(&self) -> usize {
        self.plain.len()
    }

    /// Asks for [`App::on_timer`](super::App::on_timer) with `token` at `at`.
    pub fn set_timer(&mut self, at: Instant, token: u64) {
        self.timers.insert(at, TimerKind::App(token));
    }

    /// Stops accepting connections for good (the first step of a graceful shutdown).
    pub fn stop_accepting(&mut self) {
        if *self.accepting != AcceptState::None {
            *self.accepting = AcceptState::Stopped;
        }
    }

    /// Whether this loop still accepts connections.
    pub fn is_accepting(&self) -> bool {
        matches!(
            *self.accepting,
            AcceptState::Accepting | AcceptState::Paused
        )
    }
}

/// Adds a connection to this iteration's flush list, once.
pub(super) fn queue_flush(io: &mut ConnIo, dirty: &mut Vec<usize>, index: usize) {
    if !io.flush_queued {
        io.flush_queued = true;
        dirty.push(index);
    }
}
