//! Group C of the driving contract: what the application asks of a
//! connection. Opening and pushing streams (spec §5.2, §10), queueing data
//! under the send buffers (spec §7, §13.1), reading it back with credit
//! returned on consumption (stream credit, spec §9.4.2), resets (spec §5.3) and PINGs
//! (spec §11.2).

use std::time::Instant;

use bytes::Bytes;

use super::config::Config;
use super::flow_control::{RecvWindow, Tick};
use super::payload::Payload;
use super::recv_queue::RecvQueue;
use super::stream::{Chunk, ChunkRef, RecvHalf, RecvState, SendHalf, SendState, Stream};
use super::{Connection, Phase, PingPurpose, MAX_OUTSTANDING_PINGS};
use crate::error::{ErrorCode, OpenError, ReadError, WriteError};
use crate::frame::{Frame, Metadata, Open, Ping, Push, Reset};
use crate::stream_id::{Side, StreamId};

impl Connection {
    /// Opens a stream (client) with `metadata`; `end_stream` if no data follows.
    pub fn open(&mut self, metadata: Metadata, end_stream: bool) -> Result<StreamId, OpenError> {
        if self.side != Side::Client {
            return Err(OpenError::WrongSide);
        }
        let id = self.reserve_local_stream(&metadata, 0)?;
        let send_state = if end_stream {
            SendState::Done
        } else {
            SendState::Open
        };
        self.insert_local_stream(id, send_state, RecvState::Open);
        self.control.push_back(Frame::Open(Open {
            stream: id,
            end_stream,
            metadata,
        }));
        Ok(id)
    }

    /// Pushes a stream to the client (server), unsolicited or tied to the
    /// client stream `associated` (spec §10).
    pub fn push(
        &mut self,
        associated: Option<StreamId>,
        metadata: Metadata,
        end_stream: bool,
    ) -> Result<StreamId, OpenError> {
        if self.side != Side::Server {
            return Err(OpenError::WrongSide);
        }
        if let Some(assoc) = associated {
            // Spec §10.3: the associated stream is a client stream that is open
            // or half-closed (remote) here.
            let open = self.streams.get(assoc).is_some_and(|s| {
                assoc.initiator() == Some(Side::Client) && s.send.state != SendState::Done
            });
            if !open {
                return Err(OpenError::BadAssociatedStream);
            }
        }
        let id = self.reserve_local_stream(&metadata, 4)?;
        if end_stream {
            // PUSH with END_STREAM: closed on both sides at once (spec §6.2.2).
            self.streams.consume_local_id(id);
        } else {
            self.insert_local_stream(id, SendState::Open, RecvState::Done);
        }
        self.control.push_back(Frame::Push(Push {
            promised: id,
            associated: associated.unwrap_or(StreamId::CONNECTION),
            end_stream,
            metadata,
        }));
        Ok(id)
    }

    /// Checks whether a stream may be opened now and returns its ID.
    fn reserve_local_stream(
        &self,
        metadata: &Metadata,
        overhead: usize,
    ) -> Result<StreamId, OpenError> {
        if self.phase == Phase::Closed {
            return Err(OpenError::Closed);
        }
        if !self.preface_queued {
            // Spec §3.3: a server sends nothing before the client's preface.
            return Err(OpenError::NotReady);
        }
        if self.goaway_sent.is_some() || self.goaway_received.is_some() {
            return Err(OpenError::GoingAway);
        }
        let (local_active, _) = self.streams.active();
        if local_active >= self.peer.max_concurrent_streams {
            return Err(OpenError::ConcurrencyLimit(
                self.peer.max_concurrent_streams,
            ));
        }
        let max = (self.peer.max_metadata_size as usize)
            .min((self.peer.max_frame_size as usize).saturating_sub(overhead));
        if metadata.encoded_len() > max {
            return Err(OpenError::MetadataTooLarge {
                len: metadata.encoded_len(),
                max,
            });
        }
        self.streams.next_local_id().ok_or(OpenError::IdsExhausted)
    }

    fn insert_local_stream(&mut self, id: StreamId, send: SendState, recv: RecvState) {
        // The peer saw our SETTINGS before this stream (we send SETTINGS
        // first), so it grants our configured window (spec §9.2.3).
        let window = self.config.initial_stream_window;
        let stream = self.new_stream(send, recv, window);
        self.streams.insert(id, stream, self.now);
        self.set_idle(false);
    }

    pub(super) fn new_stream(&self, send: SendState, recv: RecvState, granted: u32) -> Stream {
        Stream {
            send: SendHalf::new(self.peer.initial_stream_window, send),
            recv: RecvHalf {
                state: recv,
                window: RecvWindow::new(
                    granted,
                    self.config.initial_stream_window,
                    self.config.max_stream_window,
                    Tick::since(self.epoch, self.now),
                ),
                queue: RecvQueue::default(),
                window_consumed: 0,
                credit_queued: false,
            },
            active: true,
            scheduled: false,
            wants_writable: false,
            opening: 0,
        }
    }

    pub(super) fn capacity_of(&self, stream: &Stream) -> usize {
        send_room(&self.config, self.conn_queued, stream.send.queue.len())
    }

    /// Queues `data` on stream `id`; `end_message` marks a message boundary
    /// after it (spec §7), `end_stream` ends our direction (spec §6.2).
    ///
    /// Returns how many bytes were accepted: all of them, a prefix when the
    /// send buffers (not the peer's window) are nearly full, or 0 when they are
    /// full. The flags apply only if every byte was accepted. When fewer were
    /// accepted, an [`Event::Writable`](super::Event::Writable) follows once
    /// room frees up.
    pub fn send(
        &mut self,
        id: StreamId,
        data: Bytes,
        end_message: bool,
        end_stream: bool,
    ) -> Result<usize, WriteError> {
        let len = data.len();
        let prefix = |accepted| Payload::Shared(data).prefix(accepted);
        self.queue_send(id, len, prefix, end_message, end_stream)
    }

    /// As [`send`](Self::send), with the bytes lent rather than handed
    /// over: what is accepted is copied. For a small message that many
    /// streams share (a publication fanned out), this spares the shared
    /// buffer's reference count an update per stream.
    pub fn send_copy(
        &mut self,
        id: StreamId,
        data: &[u8],
        end_message: bool,
        end_stream: bool,
    ) -> Result<usize, WriteError> {
        let prefix = |accepted| Payload::Borrowed(data).prefix(accepted);
        self.queue_send(id, data.len(), prefix, end_message, end_stream)
    }

    /// As [`send`](Self::send), taking what is accepted from the front of
    /// `data` and leaving the rest there for a later call: keeping the
    /// remainder costs no clone of the buffer's handle (which, for bytes
    /// made from a `Vec`, would allocate a sharing record).
    pub fn send_front(
        &mut self,
        id: StreamId,
        data: &mut Bytes,
        end_message: bool,
        end_stream: bool,
    ) -> Result<usize, WriteError> {
        let len = data.len();
        let front = |accepted: usize| {
            if accepted < data.len() {
                Payload::Shared(data.split_to(accepted))
            } else {
                Payload::Shared(std::mem::take(data))
            }
        };
        self.queue_send(id, len, front, end_message, end_stream)
    }

    /// Queues the first of `len` bytes that the send buffers take, made by
    /// `take` from how many that is (a closure, so that each way of handing
    /// bytes over is compiled on its own, with no dispatch on the way).
    fn queue_send<'a>(
        &mut self,
        id: StreamId,
        len: usize,
        take: impl FnOnce(usize) -> Payload<'a>,
        end_message: bool,
        end_stream: bool,
    ) -> Result<usize, WriteError> {
        if self.phase == Phase::Closed {
            return Err(WriteError::Closed);
        }
        let Some(stream) = self.streams.get_mut(id) else {
            return Err(WriteError::UnknownStream);
        };
        if stream.send.state != SendState::Open {
            return Err(WriteError::NotWritable);
        }
        let capacity = send_room(&self.config, self.conn_queued, stream.send.queue.len());
        let complete = len <= capacity;
        let accepted = if complete { len } else { capacity };
        let newly_blocked = !complete && !stream.wants_writable;
        if !complete {
            self.stats.writes_blocked += 1;
            stream.wants_writable = true;
        }
        if accepted > 0 || (complete && end_message) {
            stream
                .send
                .queue
                .push(take(accepted), complete && end_message);
            self.conn_queued += accepted;
        }
        if complete && end_stream {
            stream.send.state = SendState::Finishing;
        }
        if stream.claim_turn() {
            self.streams.ready.push_back(id);
        }
        if newly_blocked {
            self.streams.blocked_writers.push(id);
        }
        Ok(accepted)
    }

    /// Ends our direction of stream `id` after the data already queued.
    pub fn finish(&mut self, id: StreamId) -> Result<(), WriteError> {
        self.send(id, Bytes::new(), false, true).map(|_| ())
    }

    /// Reads up to `max` bytes of stream `id`, in order, returning the
    /// flow-control credit to the peer (spec §9.4.2).
    ///
    /// `Ok(None)` means nothing is available yet; an
    /// [`Event::Readable`](super::Event::Readable) follows when it is. The
    /// chunk with `fin` set is the last one.
    pub fn read(&mut self, id: StreamId, max: usize) -> Result<Option<Chunk>, ReadError> {
        self.read_by(id, |queue| {
            let chunk = queue.pop(max)?;
            let (len, fin) = (chunk.bytes.len(), chunk.fin);
            Some((chunk, len, fin))
        })
    }

    /// As [`read`](Self::read), but lends the chunk to `visit` (a slice of
    /// the stream's buffer, valid for the call) instead of handing out a
    /// [`Chunk`] that shares the buffer: a reader that copies or parses
    /// small messages in place takes no reference on the buffer per message.
    /// Returns what `visit` made; `Ok(None)` (and `visit` not called) when
    /// nothing is available yet.
    pub fn read_with<R>(
        &mut self,
        id: StreamId,
        max: usize,
        visit: impl FnOnce(ChunkRef<'_>) -> R,
    ) -> Result<Option<R>, ReadError> {
        self.read_by(id, |queue| {
            let mut fin = false;
            let (made, len) = queue.pop_with(max, |chunk| {
                fin = chunk.fin;
                visit(chunk)
            })?;
            Some((made, len, fin))
        })
    }

    /// Takes from stream `id`'s queue with `take` (what it made, how many
    /// bytes, whether they were the last) and returns their credit.
    fn read_by<R>(
        &mut self,
        id: StreamId,
        take: impl FnOnce(&mut RecvQueue) -> Option<(R, usize, bool)>,
    ) -> Result<Option<R>, ReadError> {
        let Some(stream) = self.streams.get_mut(id) else {
            return Err(ReadError::UnknownStream);
        };
        if stream.recv.state == RecvState::Done {
            return Err(ReadError::NotReadable);
        }
        let Some((made, len, fin)) = take(&mut stream.recv.queue) else {
            return Ok(None);
        };
        // Consumed bytes are credited in `poll_transmit`; the stream joins
        // the credit queue once.
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        let mut join_credit_queue = false;
        if len > 0 && stream.recv.state == RecvState::Open {
            stream.recv.window_consumed = stream.recv.window_consumed.saturating_add(len);
            join_credit_queue = !std::mem::replace(&mut stream.recv.credit_queued, true);
        }
        if fin {
            stream.recv.state = RecvState::Done;
        }
        if join_credit_queue {
            self.streams.credit_queue.push_back(id);
        }
        if fin {
            self.update_stream(id);
        }
        Ok(Some(made))
    }

    /// Resets stream `id` with `code` (spec §5.3): both directions end, queued
    /// data is dropped, unread data is discarded and its credit returned.
    pub fn reset(&mut self, id: StreamId, code: ErrorCode) -> Result<(), WriteError> {
        if self.phase == Phase::Closed {
            return Err(WriteError::Closed);
        }
        if self.remove_stream(id).is_none() {
            return Err(WriteError::UnknownStream);
        }
        self.control
            .push_back(Frame::Reset(Reset { stream: id, code }));
        Ok(())
    }

    /// Sends a PING; its RTT arrives as [`Event::PingAcked`](super::Event::PingAcked).
    /// Returns `false` if too many PINGs are already outstanding.
    pub fn ping(&mut self, now: Instant) -> bool {
        self.now = now;
        if self.pings.len() >= MAX_OUTSTANDING_PINGS
            || self.phase == Phase::Closed
            || !self.preface_queued
        {
            return false;
        }
        self.send_ping(now, PingPurpose::Application);
        true
    }

    pub(super) fn send_ping(&mut self, now: Instant, purpose: PingPurpose) {
        self.ping_counter += 1;
        self.pings.push_back((self.ping_counter, now, purpose));
        self.control.push_back(Frame::Ping(Ping {
            ack: false,
            payload: self.ping_counter.to_be_bytes(),
        }));
        if purpose == PingPurpose::Keepalive {
            self.refresh_keepalive_timer();
        }
    }

    /// Marks the connection idle (no active stream) or busy, moving the idle
    /// timer with it (spec §11.4.2).
    pub(super) fn set_idle(&mut self, idle: bool) {
        self.idle_since = if idle { Some(self.now) } else { None };
        self.refresh_idle_timer();
    }
}

/// Bytes a stream with `stream_queued` bytes queued may still queue, on a
/// connection with `conn_queued` queued in all (its send buffers' bounds).
fn send_room(config: &Config, conn_queued: usize, stream_queued: usize) -> usize {
    let stream_room = config.stream_send_buffer.saturating_sub(stream_queued);
    let conn_room = config.connection_send_buffer.saturating_sub(conn_queued);
    stream_room.min(conn_room)
}
