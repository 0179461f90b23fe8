//! One HTTP edge connection: what it has read, what waits to be written,
//! and what it is doing (`spec/patterns.md` §9). Writing goes straight to
//! the socket while it takes bytes; the rest waits here, bounded by the
//! caller (a feed that would queue past its bound is handled by the feed's
//! policy, never by growing this).

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use mux_core::rpc::BodyCheck;
use mux_runtime::{Ctx, PlainKey};

use super::parse::Head;
use crate::request::Source;

/// What a connection is doing.
pub(super) enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// The head is read; waiting for its body.
    Body(Box<Head>),
    /// A route's handler runs; its answer comes back by request number.
    Calling,
    /// A call's streamed body, sent in chunks as the socket takes them.
    Streaming {
        source: Box<Source>,
        check: BodyCheck,
    },
    /// An event stream of a log (`GET /events/…`).
    Events { last_id: u64, epoch: u64 },
    /// A subscription (`GET /topics/…`), with publications it lost.
    Topic { lost: u64 },
    /// A parked long poll (`GET /poll/…`), answered by an entry or its timer.
    Poll { log: String, after: u64, timer: u64 },
}

impl Phase {
    /// Whether the connection is waiting for a request (its header timer runs).
    pub(super) fn reads_request(&self) -> bool {
        matches!(self, Self::Head | Self::Body(_))
    }

    /// Whether it carries an event stream (heartbeats go to it).
    pub(super) fn is_feed(&self) -> bool {
        matches!(self, Self::Events { .. } | Self::Topic { .. })
    }
}

pub(super) struct HttpConn {
    pub(super) key: PlainKey,
    pub(super) peer: Option<SocketAddr>,
    /// Bytes read and not yet taken by a request.
    pub(super) input: Vec<u8>,
    /// What waits to be written, coalesced: a burst of small events leaves
    /// in one write.
    output: BytesMut,
    pub(super) phase: Phase,
    /// Requests begun on this connection; an answer names its number.
    pub(super) seq: u64,
    /// When a request that has not arrived whole is given up (408, or a
    /// quiet close between requests).
    pub(super) deadline: Instant,
    /// The connection closes once `output` is written.
    pub(super) closing: bool,
    pub(super) keep_alive: bool,
    pub(super) last_write: Instant,
    /// Since when `output` has not been empty.
    unwritten_since: Instant,
    /// Waiting in the edge's list of connections to flush at the pass's end.
    pub(super) flush_queued: bool,
}

impl HttpConn {
    pub(super) fn new(key: PlainKey, peer: Option<SocketAddr>, deadline: Instant) -> Self {
        Self {
            key,
            peer,
            input: Vec::new(),
            output: BytesMut::new(),
            phase: Phase::Head,
            seq: 0,
            deadline,
            closing: false,
            keep_alive: true,
            last_write: deadline,
            unwritten_since: deadline,
            flush_queued: false,
        }
    }

    /// Bytes waiting to be written.
    pub(super) fn queued(&self) -> usize {
        self.output.len()
    }

    /// How long the oldest byte waiting to be written has waited, at most:
    /// since when something has always waited.
    pub(super) fn waited(&self, now: Instant) -> std::time::Duration {
        if self.output.is_empty() {
            return std::time::Duration::ZERO;
        }
        now.saturating_duration_since(self.unwritten_since)
    }

    /// Queues `bytes` after what waits (written by [`HttpConn::flush`]).
    pub(super) fn queue(&mut self, bytes: Bytes) {
        if self.output.is_empty() {
            self.unwritten_since = Instant::now();
        }
        self.output.extend_from_slice(&bytes);
    }

    /// Writes what waits while the socket takes it. `Err` when the socket
    /// failed (the connection is to be closed).
    pub(super) fn flush(&mut self, ctx: &mut Ctx<'_>, now: Instant) -> io::Result<()> {
        while !self.output.is_empty() {
            match ctx.plain_write(self.key, &self.output) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.last_write = now;
                    self.output.advance(n);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}
