//! [`Ctx`]: what an [`App`](super::App) callback may do: reach a connection's
//! state machine, open and close connections, set timers, stop accepting.
//! The plain-socket half of `Ctx` lives in [`super::plain`].

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::{Interest, Registry};
use mux_core::{Connection, Side};
use slab::Slab;

use super::app::{ConnKey, LoopConfig};
use super::conn_token;
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

    /// Starts a client connection to `addr`; [`App::on_open`] follows once
    /// the TCP handshake completes, or [`App::on_closed`] if it fails.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnKey> {
        let mut stream = socket::connect(addr, &self.config.socket)?;
        let entry = self.conns.vacant_entry();
        let index = entry.key();
        self.registry
            .register(&mut stream, conn_token(index), Interest::WRITABLE)?;
        *self.generations += 1;
        let conn = Connection::new(Side::Client, self.config.conn.clone(), self.now);
        let mut io = ConnIo::new(stream, conn, true, *self.generations);
        io.interest = Interest::WRITABLE;
        let generation = io.generation;
        io.flush_queued = true;
        entry.insert(io);
        self.dirty.push(index);
        Ok(ConnKey { index, generation })
    }

    /// Asks for [`App::on_timer`] with `token` at `at`.
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
