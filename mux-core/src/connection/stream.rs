//! Per-stream state (spec §6.2): the two directions of a stream, their
//! buffers and windows.

use bytes::Bytes;

use super::flow_control::{RecvWindow, SendWindow};
use super::recv_queue::RecvQueue;
use super::send_queue::SendQueue;

/// A stream's state as the spec's diagram names it (spec §6.2).
///
/// ```text
///                              +--------+
///                      recv P  |        |  send P
///                     ,--------+  idle  +--------.
///                    /         |        |         \
///                   |          +---+----+          |
///                   |              | send O /      |
///                   |              | recv O        |
///                   |              v               |
///                   |          +--------+          |
///                   |  send ES |        | recv ES  |
///                   |  ,-------+  open  +------.   |
///                   |  |       |        |      |   |
///                   v  v       +---+----+      v   v
///           +-----------+          |         +-----------+
///           |   half-   |          |         |   half-   |
///           |  closed   |          | send R/ |  closed   |
///           |  (local)  |          | recv R  | (remote)  |
///           +-----+-----+          |         +-----+-----+
///                 |                |               |
///                 | recv ES /      |     send ES / |
///                 | send R /       v      send R / |
///                 | recv R     +--------+  recv R  |
///                 `----------->|        |<---------'
///                              | closed |
///                              +--------+
///
///   O: OPEN   P: PUSH   R: RESET   ES: END_STREAM
/// ```
///
/// Idle streams have no state in memory (spec §6.5.2), and closed streams
/// leave it as soon as the application has read what they delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Both directions open.
    Open,
    /// This endpoint's direction has ended (END_STREAM sent, or a pushed
    /// stream on the client).
    HalfClosedLocal,
    /// The peer's direction has ended.
    HalfClosedRemote,
    /// Both directions have ended; unread data may remain for the application.
    Closed,
}

/// A contiguous piece of a stream's received data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The bytes, possibly empty when the chunk only carries a flag.
    pub bytes: Bytes,
    /// The last byte of `bytes` ends a message (spec §7).
    pub end_message: bool,
    /// This is the last chunk of the peer's direction (END_STREAM).
    pub fin: bool,
}

/// A chunk lent by [`Connection::read_with`](super::Connection::read_with):
/// the same as a [`Chunk`], its bytes borrowed from the stream's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef<'a> {
    /// The bytes, possibly empty when the chunk only carries a flag.
    pub bytes: &'a [u8],
    /// The last byte of `bytes` ends a message (spec §7).
    pub end_message: bool,
    /// This is the last chunk of the peer's direction (END_STREAM).
    pub fin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendState {
    /// The application may still write.
    Open,
    /// The application finished; END_STREAM waits behind the queued data.
    Finishing,
    /// END_STREAM was sent, or this endpoint never sends on the stream.
    Done,
}

#[derive(Debug)]
pub(crate) struct SendHalf {
    pub(crate) state: SendState,
    pub(crate) window: SendWindow,
    /// Queued data with its END_MESSAGE flags, in order.
    pub(crate) queue: SendQueue,
}

impl SendHalf {
    pub(crate) fn new(window: u32, state: SendState) -> Self {
        Self {
            state,
            window: SendWindow::new(window),
            queue: SendQueue::default(),
        }
    }

    /// Whether a DATA frame could be sent now, window permitting for data.
    pub(crate) fn has_sendable(&self) -> bool {
        match self.queue.front() {
            Some((len, end_message)) => len == 0 && end_message || self.window.available() > 0,
            None => self.state == SendState::Finishing,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecvState {
    /// The peer may still send.
    Open,
    /// END_STREAM arrived (it sits at the back of the queue until read).
    Finished,
    /// The application read the final chunk, or this endpoint never receives.
    Done,
}

#[derive(Debug)]
pub(crate) struct RecvHalf {
    pub(crate) state: RecvState,
    pub(crate) window: RecvWindow,
    /// Received and not yet consumed by the application.
    pub(crate) queue: RecvQueue,
    /// Consumed bytes whose stream credit `poll_transmit` has yet to process.
    pub(crate) window_consumed: u32,
    /// In the connection's credit queue.
    pub(crate) credit_queued: bool,
}

#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) send: SendHalf,
    pub(crate) recv: RecvHalf,
    /// Counted against a concurrency limit (open or half-closed on the wire).
    pub(crate) active: bool,
    /// In the DATA scheduler's round-robin queue.
    pub(crate) scheduled: bool,
    /// A write was refused for lack of buffer space; announce `Writable` when it frees.
    pub(crate) wants_writable: bool,
    /// The connection's count of stream openings once this one opened
    /// (wrapping): a different count means another stream came after it
    /// (spec §9.6.9).
    pub(crate) opening: u32,
}

impl Stream {
    /// The state the spec's diagram gives this stream.
    pub(crate) fn state(&self) -> StreamState {
        let local_done = self.send.state == SendState::Done;
        let remote_done = self.recv.state != RecvState::Open;
        match (local_done, remote_done) {
            (false, false) => StreamState::Open,
            (true, false) => StreamState::HalfClosedLocal,
            (false, true) => StreamState::HalfClosedRemote,
            (true, true) => StreamState::Closed,
        }
    }

    /// Marks the stream scheduled if it has something to send and is not in
    /// the send rotation yet; `true` if it must join it.
    pub(crate) fn claim_turn(&mut self) -> bool {
        if !self.scheduled && self.send.has_sendable() {
            self.scheduled = true;
            true
        } else {
            false
        }
    }

    /// Nothing is left for the protocol nor the application: forget it.
    pub(crate) fn is_finished(&self) -> bool {
        self.send.state == SendState::Done && self.recv.state == RecvState::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The goal (README, "Goals"): an idle stream costs well under 1 KiB. This is the state
    /// kept per stream, boxed (its map entry adds the key, a pointer and the
    /// hash table's empty slots).
    #[test]
    fn idle_stream_state_is_small() {
        let size = size_of::<Stream>();
        assert!(size <= 256, "a stream's state is {size} bytes");
    }
}
