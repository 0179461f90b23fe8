//! Data the application handed over for a stream but the stream's send
//! buffer could not take yet; written as `Event::Writable` announces room.
//! Shared by the server (response bodies) and the client (request bodies).
//!
//! It holds only what the application already gave (a body in memory), so it
//! adds no unbounded buffering: the state machine's send buffer stays capped.
//!
//! Spec §9 and §12: what the outbox writes goes through the state
//! machine, which sends it as the windows and the fair scheduler allow.

use std::collections::VecDeque;

use bytes::Bytes;
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
}

impl Outbox {
    /// Writes `piece` on stream `id`, keeping what the stream cannot take
    /// now. Returns how many bytes the state machine accepted.
    pub fn write(
        &mut self,
        conn: &mut Connection,
        key: ConnKey,
        id: StreamId,
        piece: Piece,
    ) -> Result<usize, WriteError> {
        if let Some(queue) = self.pending.get_mut(key, id) {
            queue.push_back(piece);
            return Ok(0);
        }
        let mut queue = VecDeque::from([piece]);
        let accepted = Self::drain(conn, id, &mut queue)?;
        if !queue.is_empty() {
            self.pending.insert(key, id, queue);
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
        if queue.is_empty() || result.is_err() {
            self.pending.remove(key, id);
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
                conn.send(id, piece.bytes.clone(), piece.end_message, piece.end_stream)?;
            total += accepted;
            if accepted == len {
                queue.pop_front();
            } else {
                let _ = piece.bytes.split_to(accepted);
                return Ok(total);
            }
        }
        Ok(total)
    }

    /// Drops a stream's pending output (it was reset).
    pub fn forget(&mut self, key: ConnKey, id: StreamId) {
        self.pending.remove(key, id);
    }

    /// Drops a connection's pending output (it closed).
    pub fn forget_conn(&mut self, key: ConnKey) {
        self.pending.remove_conn(key);
    }
}
