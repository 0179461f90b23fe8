//! The one connection of a [`DirectClient`](super::DirectClient) or a
//! [`DirectSubscription`](super::DirectSubscription): its socket, the
//! `mux-core` state machine and the buffers between them, driven by the
//! thread that uses it: write everything due, then block in `read` until
//! bytes, the caller's deadline or the state machine's next timer.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_core::frame::Metadata;
use mux_core::{Config, Connection, ErrorCode, Event, OpenError, Outgoing, Side, StreamId};
use mux_core::{ConnectionError, StreamState};
use mux_runtime::read_buffer::ReadBuffer;

use crate::error::CallError;
use crate::reader::StreamReader;
use crate::reply::Reply;

/// Bytes read per `read` call: the size of the link's scratch buffer.
const READ_CHUNK: usize = mux_runtime::read_buffer::READ_SIZE;

/// How late a wait may wake for a deadline or timer rather than pay a
/// system call to set the socket's timeout anew.
const OVERSLEEP: Duration = Duration::from_millis(1);

/// How long a write that the outcome does not wait for (credit returned
/// after an answer, a reset, a goodbye) may wait for the socket: a server
/// that stops reading cannot hold the caller.
const BRIEF_WRITE: Duration = Duration::from_millis(100);

/// Pieces handed to one vectored write.
const WRITE_SLICES: usize = 64;

/// A connection idle longer than this is checked for what the server said
/// meanwhile (a GOAWAY, its end) before a request goes out on it; one used
/// more recently is trusted, and a GOAWAY that crossed the request still
/// says whether it was processed.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Why an exchange failed, and whether the request may be sent again.
#[derive(Debug)]
pub(super) enum Failure {
    /// The server did not process the request: it may be retried.
    Unprocessed(CallError),
    /// The request may have run, or failed on its own account.
    Final(CallError),
}

impl From<Failure> for CallError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unprocessed(err) | Failure::Final(err) => err,
        }
    }
}

/// The one connection: socket, state machine and buffers.
#[derive(Debug)]
pub(super) struct Link {
    socket: TcpStream,
    pub(super) conn: Connection,
    input: ReadBuffer,
    output: Outgoing,
    /// The socket's receive and send timeouts as last set (`None`: block).
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// When bytes last arrived from the server.
    last_heard: Instant,
    /// No new request goes on this link: the transport failed or ended, or
    /// the server sent GOAWAY. It is dropped.
    broken: bool,
    /// Where each `read` lands before the state machine's buffer.
    scratch: Box<[u8]>,
}

impl Link {
    pub(super) fn connect(addr: SocketAddr, timeout: Duration, config: Config) -> io::Result<Self> {
        let socket = TcpStream::connect_timeout(&addr, timeout)?;
        socket.set_nodelay(true)?;
        let config = Config {
            // Pushes cannot be served between calls: refused (spec §10.4).
            max_concurrent_streams: 0,
            // Nothing runs between calls to keep a connection alive or time
            // it out; the server's own timeouts close one left idle.
            keepalive_interval: None,
            idle_timeout: None,
            ..config
        };
        let now = Instant::now();
        Ok(Self {
            socket,
            conn: Connection::new(Side::Client, config, now),
            input: ReadBuffer::new(),
            output: Outgoing::new(),
            read_timeout: None,
            write_timeout: None,
            last_heard: now,
            broken: false,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        })
    }

    /// Sends our preface and SETTINGS and waits for the server's (spec §3.2).
    pub(super) fn handshake(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            self.flush(Some(deadline)).map_err(|err| err.to_string())?;
            while let Some(event) = self.conn.poll_event() {
                match event {
                    Event::Connected => return Ok(()),
                    Event::Closed { error } => {
                        self.flush_briefly();
                        return Err(match error {
                            Some(err) => err.to_string(),
                            None => "the server closed the connection".into(),
                        });
                    }
                    _ => {}
                }
            }
            self.read_some(Some(deadline))
                .map_err(|err| err.to_string())?;
        }
    }

    /// Takes no new request after this one (the server sent GOAWAY).
    pub(super) fn retire(&mut self) {
        self.broken = true;
    }

    pub(super) fn usable(&self) -> bool {
        !self.broken && !self.conn.is_closed()
    }

    /// Reads what the server sent while the connection sat idle (answering
    /// its PINGs, learning of its GOAWAY or its end), without waiting.
    pub(super) fn check_if_idle(&mut self) {
        if self.last_heard.elapsed() < IDLE_CHECK || self.socket.set_nonblocking(true).is_err() {
            return;
        }
        loop {
            match self.read_once() {
                Ok(0) => {
                    self.conn.handle_eof(Instant::now());
                    break;
                }
                Ok(_) => self.feed(),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.broken = true;
                    break;
                }
            }
        }
        if self.socket.set_nonblocking(false).is_err() {
            self.broken = true;
        }
        while self.conn.poll_event().is_some() {}
        self.flush_briefly();
    }

    /// One request and its response.
    pub(super) fn exchange(
        &mut self,
        metadata: Metadata,
        body: Bytes,
        deadline: Option<Instant>,
        limit: usize,
    ) -> Result<Reply, Failure> {
        let id = self.open(metadata, body.is_empty())?;
        let mut reader = StreamReader::call();
        let mut unsent = body;
        let until = Until::Reply { limit };
        match self.drive(id, &mut unsent, &mut reader, until, deadline)? {
            Some(reply) => Ok(reply),
            None => Err(Failure::Final(CallError::Closed)), // not reached: `Until::Reply`
        }
    }

    /// Opens a stream with `metadata`.
    pub(super) fn open(
        &mut self,
        metadata: Metadata,
        end_stream: bool,
    ) -> Result<StreamId, Failure> {
        match self.conn.open(metadata, end_stream) {
            Ok(id) => Ok(id),
            Err(OpenError::MetadataTooLarge { len, max }) => {
                let message = format!("request metadata of {len} bytes above the server's {max}");
                Err(Failure::Final(CallError::Malformed(message)))
            }
            // Closed, going away, at the server's stream limit: nothing was
            // sent, so a new connection may take it.
            Err(err) => {
                self.broken = true;
                Err(Failure::Unprocessed(CallError::ConnectionLost(
                    err.to_string(),
                )))
            }
        }
    }

    /// Drives stream `id`: hands `unsent` to it (as the end of a message
    /// and of the stream if `until` is a reply) as flow control allows, and reads its response with
    /// `reader`. Returns the reply once it is complete, or, with
    /// [`Until::Sent`], `None` as soon as `unsent` is all written to the
    /// socket (a reply that came first, an early answer, is returned
    /// instead).
    pub(super) fn drive(
        &mut self,
        id: StreamId,
        unsent: &mut Bytes,
        reader: &mut StreamReader,
        until: Until,
        deadline: Option<Instant>,
    ) -> Result<Option<Reply>, Failure> {
        let (limit, end_message, end_stream) = match until {
            Until::Reply { limit } => (limit, true, true),
            Until::Sent { limit, end_message } => (limit, end_message, false),
        };
        self.send_message(id, unsent, end_message, end_stream);
        loop {
            if let Err(err) = self.flush(deadline) {
                return Err(self.fail(id, err));
            }
            while let Some(event) = self.conn.poll_event() {
                match event {
                    Event::Readable { id: readable } if readable == id => {
                        if let Some(result) =
                            reader.read(&mut self.conn, id, limit, &mut Vec::new())
                        {
                            return self.finish(id, result).map(Some);
                        }
                    }
                    Event::Writable { id: writable } if writable == id => {
                        self.send_message(id, unsent, end_message, end_stream);
                    }
                    Event::StreamReset { id: reset, code } if reset == id => {
                        // REFUSED_STREAM: not processed (spec §8.1); mux-core
                        // also refuses so the streams a GOAWAY leaves out.
                        if code != ErrorCode::REFUSED_STREAM {
                            return Err(Failure::Final(CallError::Reset(code)));
                        }
                        return Err(Failure::Unprocessed(if self.broken {
                            CallError::ConnectionLost("the server is going away".into())
                        } else {
                            CallError::Reset(code)
                        }));
                    }
                    Event::PushReceived { id: push, .. } => {
                        let _ = self.conn.reset(push, ErrorCode::CANCEL);
                    }
                    // No new stream will be taken here (spec §11.3): the next
                    // request goes to a new connection.
                    Event::GoAway { .. } => self.retire(),
                    Event::Closed { error } => {
                        self.broken = true;
                        return Err(Failure::Final(lost(error)));
                    }
                    _ => {}
                }
            }
            // Sent means on the wire: bytes the state machine holds for want
            // of credit wait for the server's WINDOW_UPDATE, read below.
            let all_sent = unsent.is_empty() && self.conn.queued_send_bytes() == 0;
            if matches!(until, Until::Sent { .. }) && all_sent {
                return Ok(None);
            }
            if let Err(err) = self.read_some(deadline) {
                return Err(self.fail(id, err));
            }
        }
    }

    /// The call's outcome once its response ended (or failed): a stream
    /// still open (an early answer, a failed read) is reset, so that the
    /// server stops sending.
    fn finish(&mut self, id: StreamId, result: Result<Reply, CallError>) -> Result<Reply, Failure> {
        if matches!(
            self.conn.stream_state(id),
            Some(StreamState::Open | StreamState::HalfClosedRemote)
        ) {
            let _ = self.conn.reset(id, ErrorCode::CANCEL);
        }
        // Credit returned while reading, a reset: sent now, not at the next call.
        self.flush_briefly();
        result.map_err(Failure::Final)
    }

    /// Ends the call on a wait that failed: the deadline (the stream is
    /// reset, the connection kept) or the transport (the connection goes).
    fn fail(&mut self, id: StreamId, error: Wait) -> Failure {
        match error {
            Wait::Deadline => {
                let _ = self.conn.reset(id, ErrorCode::CANCEL);
                self.flush_briefly();
                Failure::Final(CallError::DeadlineExceeded)
            }
            Wait::Transport(err) => {
                self.broken = true;
                Failure::Final(CallError::ConnectionLost(err.to_string()))
            }
        }
    }

    /// Hands the state machine as much of `unsent` as the stream takes now.
    pub(super) fn send_message(
        &mut self,
        id: StreamId,
        unsent: &mut Bytes,
        end_message: bool,
        end_stream: bool,
    ) {
        if unsent.is_empty() {
            return;
        }
        let _ = self.conn.send_front(id, unsent, end_message, end_stream);
    }

    /// Reads the socket once into the input buffer.
    fn read_once(&mut self) -> io::Result<usize> {
        self.input.read_with(&mut self.scratch, &mut self.socket)
    }

    /// Feeds what was read to the state machine.
    fn feed(&mut self) {
        self.last_heard = Instant::now();
        // A connection error queues a GOAWAY and an `Event::Closed`.
        let _ = self
            .conn
            .handle_read(self.last_heard, self.input.received());
    }

    /// Ends our side and waits for the server to end its own, discarding
    /// what it sends meanwhile (spec §11.3.4). A socket closed with unread
    /// bytes (an answer to our PING, a late WINDOW_UPDATE) aborts with a
    /// TCP RST, and the server's kernel then drops what we wrote and it had
    /// not read yet: the last reset, the GOAWAY. The wait is the caller's,
    /// so it is bounded by [`BRIEF_WRITE`] rather than the spec's
    /// recommended 2 seconds; a mux server ends its side in a round trip.
    fn linger(&mut self) {
        if self.socket.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let deadline = Instant::now() + BRIEF_WRITE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.socket.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.socket.read(&mut self.scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// [`Link::flush`] for what no outcome waits on, within [`BRIEF_WRITE`];
    /// what the socket did not take stays queued for the next write.
    pub(super) fn flush_briefly(&mut self) {
        let _ = self.flush(Some(Instant::now() + BRIEF_WRITE));
    }

    /// Writes everything the state machine has to send; a transport that
    /// fails breaks the link.
    pub(super) fn flush(&mut self, deadline: Option<Instant>) -> Result<(), Wait> {
        let result = self.write_all(deadline);
        if matches!(result, Err(Wait::Transport(_))) {
            self.broken = true;
        }
        result
    }

    fn write_all(&mut self, deadline: Option<Instant>) -> Result<(), Wait> {
        let now = Instant::now();
        while self.conn.poll_transmit(now, &mut self.output) {}
        if self.output.is_empty() {
            return Ok(());
        }
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(Wait::Deadline);
        }
        if !fits(self.write_timeout, timeout) {
            self.socket
                .set_write_timeout(timeout)
                .map_err(Wait::Transport)?;
            self.write_timeout = timeout;
        }
        while !self.output.is_empty() {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let count = self.output.io_slices(&mut slices);
            match self.socket.write_vectored(&slices[..count]) {
                Ok(0) => return Err(Wait::Transport(io::ErrorKind::WriteZero.into())),
                Ok(written) => self.output.advance(written),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if is_timeout(&err) => return Err(Wait::Deadline),
                Err(err) => return Err(Wait::Transport(err)),
            }
            let now = Instant::now();
            while self.conn.poll_transmit(now, &mut self.output) {}
        }
        Ok(())
    }

    /// Waits for bytes (up to the deadline, or the state machine's next
    /// timer, which then runs) and feeds them in.
    pub(super) fn read_some(&mut self, deadline: Option<Instant>) -> Result<(), Wait> {
        let now = Instant::now();
        if deadline.is_some_and(|d| d <= now) {
            return Err(Wait::Deadline);
        }
        let wake = match (deadline, self.conn.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.set_read_timeout(wake.map(|at| at.saturating_duration_since(now)))?;
        match self.read_once() {
            Ok(0) => {
                self.conn.handle_eof(Instant::now());
                Ok(())
            }
            Ok(_) => {
                self.feed();
                Ok(())
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(err) if is_timeout(&err) => {
                self.conn.handle_timeout(Instant::now());
                Ok(())
            }
            Err(err) => Err(Wait::Transport(err)),
        }
    }

    /// Sets the socket's receive timeout to about `wanted` (see [`fits`]).
    fn set_read_timeout(&mut self, wanted: Option<Duration>) -> Result<(), Wait> {
        // A zero timeout means "block" to the socket: wait a microsecond instead.
        let wanted = wanted.map(|w| w.max(Duration::from_micros(1)));
        if !fits(self.read_timeout, wanted) {
            self.socket
                .set_read_timeout(wanted)
                .map_err(Wait::Transport)?;
            self.read_timeout = wanted;
        }
        Ok(())
    }
}

impl Drop for Link {
    /// Says goodbye with GOAWAY `NO_ERROR` (spec §11.3), if the server is
    /// still there to read it; waits at most 100 ms for the socket to take
    /// it, and 100 ms more for the server's end (spec §11.3.4).
    fn drop(&mut self) {
        if self.usable() {
            self.conn.close(Instant::now(), ErrorCode::NO_ERROR, "");
            self.flush_briefly();
        }
        if self.output.is_empty() {
            self.linger();
        }
    }
}

/// Whether a socket timeout `set` serves for `wanted`: it may oversleep by
/// at most [`OVERSLEEP`] and must not wake far too early. Then waits in a
/// row toward the same deadline, and calls in a row with the same timeout,
/// cost no system call to set it anew.
fn fits(set: Option<Duration>, wanted: Option<Duration>) -> bool {
    match (set, wanted) {
        (None, None) => true,
        (Some(set), Some(wanted)) => set <= wanted + OVERSLEEP && set >= wanted / 2,
        _ => false,
    }
}

/// Where [`Link::drive`] stops, and the largest response it accepts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Until {
    /// The response is complete.
    Reply { limit: usize },
    /// The bytes are written, ending a message if `end_message` (or the
    /// response came first).
    Sent { limit: usize, end_message: bool },
}

/// Why waiting on the socket stopped short.
#[derive(Debug)]
pub(super) enum Wait {
    Deadline,
    Transport(io::Error),
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Deadline => f.write_str("timed out"),
            Self::Transport(err) => err.fmt(f),
        }
    }
}

/// `SO_RCVTIMEO` / `SO_SNDTIMEO` expiring shows as `WouldBlock` on Linux and
/// `TimedOut` elsewhere.
fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub(super) fn lost(error: Option<ConnectionError>) -> CallError {
    CallError::ConnectionLost(match error {
        Some(err) => err.to_string(),
        None => "the server closed the connection".into(),
    })
}
