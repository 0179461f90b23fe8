//! Data the application handed over for a stream but the stream's send
//! buffer could not take yet; written as `Event::Writable` announces room.
//! Shared by the server (response bodies) and the client (request bodies).
//!
//! It holds only what the application already gave (a body in memory), and
//! counts it per connection ([`Outbox::pending_bytes`]) so that the
//! application can bound it: the server refuses new streams on a connection
//! whose peer does not read (spec §13.1, §13.2.3). Everything written goes
//! through the state machine, which sends it as the windows and the fair
//! scheduler allow (spec §9, §12).

use std::collections::VecDeque;

use bytes::Bytes;
use foldhash::HashMap;
use mux_core::{Connection, StreamId, WriteError};

use crate::event_loop::ConnKey;
use crate::stream_map::StreamMap;

/// One piece of a stream's output.
#[derive(Debug, Clone)]
pub struct Piece {
    /// The bytes.
    pub bytes: Bytes,
    /// A message ends after them.
    pub end_message: bool,
    /// The stream's direction ends after them.
    pub end_stream: bool,
}

/// Pending output per stream.
#[derive(Debug, Default)]
pub struct Outbox {
    pending: StreamMap<VecDeque<Piece>>,
    /// Bytes pending per connection.
    bytes: HashMap<ConnKey, usize>,
    /// Bytes pending in all.
    total: usize,
}

impl Outbox {
    /// Writes `piece` on stream `id`, keeping what the stream cannot take
    /// now. Returns how many bytes the state machine accepted.
    pub fn write(
        &mut self,
        conn: &mut Connection,
        key: ConnKey,
        id: StreamId,
        mut piece: Piece,
    ) -> Result<usize, WriteError> {
        if let Some(queue) = self.pending.get_mut(key, id) {
            let len = piece.bytes.len();
            queue.push_back(piece);
            self.add(key, len);
            return Ok(0);
        }
        // Nothing queued ahead: the state machine usually takes it all, and
        // a queue is made only for what it leaves.
        let accepted =
            conn.send_front(id, &mut piece.bytes, piece.end_message, piece.end_stream)?;
        if !piece.bytes.is_empty() {
            self.add(key, piece.bytes.len());
            self.pending.insert(key, id, VecDeque::from([piece]));
        }
        Ok(accepted)
    }

    /// Continues writing stream `id` after `Event::Writable`; returns how
    /// many bytes the state machine accepted.
    pub fn resume(
        &mut self,
        conn: &mut Connection,
        key: ConnKey,
        id: StreamId,
    ) -> Result<usize, WriteError> {
        let Some(queue) = self.pending.get_mut(key, id) else {
            return Ok(0);
        };
        let result = Self::drain(conn, id, queue);
        let done = queue.is_empty() || result.is_err();
        self.sub(key, *result.as_ref().unwrap_or(&0));
        if done {
            self.forget(key, id);
        }
        result
    }

    fn drain(
        conn: &mut Connection,
        id: StreamId,
        queue: &mut VecDeque<Piece>,
    ) -> Result<usize, WriteError> {
        let mut total = 0;
        while let Some(piece) = queue.front_mut() {
            let len = piece.bytes.len();
            let accepted =
                conn.send_front(id, &mut piece.bytes, piece.end_message, piece.end_stream)?;
            total += accepted;
            if accepted == len {
                queue.pop_front();
            } else {
                return Ok(total);
            }
        }
        Ok(total)
    }

    /// Drops a stream's pending output (it was reset).
    pub fn forget(&mut self, key: ConnKey, id: StreamId) {
        if let Some(queue) = self.pending.remove(key, id) {
            self.sub(key, queue.iter().map(|p| p.bytes.len()).sum());
        }
    }

    /// Drops a connection's pending output (it closed).
    pub fn forget_conn(&mut self, key: ConnKey) {
        self.pending.remove_conn(key);
        if let Some(bytes) = self.bytes.remove(&key) {
            self.total -= bytes;
        }
    }

    /// Whether stream `id` has output its send buffer has not taken yet.
    pub fn is_pending(&self, key: ConnKey, id: StreamId) -> bool {
        self.pending.contains(key, id)
    }

    /// Bytes waiting for connection `key`'s streams to take them.
    pub fn pending_bytes(&self, key: ConnKey) -> usize {
        self.bytes.get(&key).copied().unwrap_or(0)
    }

    /// Bytes waiting on every connection.
    pub fn total_pending_bytes(&self) -> usize {
        self.total
    }

    fn add(&mut self, key: ConnKey, len: usize) {
        if len > 0 {
            *self.bytes.entry(key).or_default() += len;
            self.total += len;
        }
    }

    fn sub(&mut self, key: ConnKey, len: usize) {
        if let Some(bytes) = self.bytes.get_mut(&key) {
            let len = len.min(*bytes);
            *bytes -= len;
            self.total -= len;
            if *bytes == 0 {
                self.bytes.remove(&key);
            }
        }
    }
}
