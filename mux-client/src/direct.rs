//! [`DirectClient`]: blocking calls made on the caller's own thread, over
//! one connection that no other thread touches.
//!
//! [`Client`](crate::Client) hands every call to its loop thread, which
//! writes it, reads the answer and wakes the caller: two thread wake-ups
//! per call beside the server's. A `DirectClient` drives the `mux-core`
//! state machine itself, on the thread that calls: it writes the request,
//! then blocks in `read` on the socket until the response has arrived, as a
//! raw TCP client or an HTTP/2 client driving its own runtime would. On a
//! machine whose cores are busy, the thread hops it saves are most of a
//! small call's latency.
//!
//! What it gives up for that: one call at a time (`&mut self`), one
//! connection, no pushes (it refuses them with `MAX_CONCURRENT_STREAMS` 0,
//! spec §10.4), no TLS, and no work between calls: a PING or GOAWAY that
//! arrives while it is idle is read at the next call. A connection left
//! idle for a while is checked before use, and one the server closed
//! meanwhile (its idle or keepalive timeout, a restart) is replaced before
//! the request is sent. A request the server did not process (a GOAWAY
//! naming a lower stream, `REFUSED_STREAM`, spec §8.1, §11.3) is retried on
//! a new connection; one that may have run fails with
//! [`CallError::ConnectionLost`], never retried.

use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mux_core::frame::Metadata;
use mux_core::rpc::Status;
use mux_core::{Config, Connection, ErrorCode, Event, OpenError, Outgoing, Side, StreamId};
use mux_core::{ConnectionError, StreamState};
use mux_runtime::{AddressError, Addresses, IntoAddresses};

use crate::call::CallRequest;
use crate::error::CallError;
use crate::reader::StreamReader;
use crate::reply::Reply;

/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;

/// Pieces handed to one vectored write.
const WRITE_SLICES: usize = 64;

/// A connection idle longer than this is checked for what the server said
/// meanwhile (a GOAWAY, its end) before a request goes out on it; one used
/// more recently is trusted, and a GOAWAY that crossed the request still
/// says whether it was processed.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Configures a [`DirectClient`].
#[derive(Clone)]
pub struct DirectBuilder {
    addresses: Result<Addresses, AddressError>,
    connect_timeout: Duration,
    default_timeout: Option<Duration>,
    max_response: usize,
    max_attempts: u32,
    token: Option<String>,
}

impl std::fmt::Debug for DirectBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectBuilder")
            .field("addresses", &self.addresses)
            .field("connect_timeout", &self.connect_timeout)
            .field("default_timeout", &self.default_timeout)
            .field("max_response", &self.max_response)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl DirectBuilder {
    /// A client of the server at `addr` (the forms
    /// [`ClientBuilder::new`](crate::ClientBuilder::new) takes; a list is
    /// tried in order at each connection).
    pub fn new(addr: impl IntoAddresses) -> Self {
        Self {
            addresses: addr.into_addresses(),
            connect_timeout: Duration::from_secs(5),
            default_timeout: None,
            max_response: 64 << 20,
            max_attempts: 3,
            token: None,
        }
    }

    /// How long one connection attempt may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The deadline of calls that set none (default: none).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// The largest response body accepted (default 64 MiB); a larger one
    /// fails with [`CallError::TooLarge`].
    pub fn max_response(mut self, bytes: usize) -> Self {
        self.max_response = bytes;
        self
    }

    /// How many times a request is sent when the server did not process
    /// it (default 3; at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// A bearer token presented with `$auth` on each new connection
    /// (`spec/patterns.md` §8.1).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Connects (and authenticates, with a token) before returning.
    pub fn connect(self) -> io::Result<DirectClient> {
        let addresses = self
            .addresses
            .clone()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        let mut client = DirectClient {
            options: self,
            addresses,
            link: None,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        };
        client.ready_link(None)?;
        Ok(client)
    }
}

/// Blocking calls on the caller's thread, one at a time, over one
/// connection (see the module documentation for what it trades).
#[derive(Debug)]
pub struct DirectClient {
    options: DirectBuilder,
    addresses: Addresses,
    link: Option<Link>,
    /// Where each `read` lands before the state machine's buffer.
    scratch: Box<[u8]>,
}

/// Why an exchange failed, and whether the request may be sent again.
#[derive(Debug)]
enum Failure {
    /// The server did not process the request: it may be retried.
    Unprocessed(CallError),
    /// The request may have run, or failed on its own account.
    Final(CallError),
}

impl DirectClient {
    /// Connects to `addr` with the default settings.
    pub fn connect(addr: impl IntoAddresses) -> io::Result<Self> {
        DirectBuilder::new(addr).connect()
    }

    /// A builder, for settings other than the defaults.
    pub fn builder(addr: impl IntoAddresses) -> DirectBuilder {
        DirectBuilder::new(addr)
    }

    /// Calls `route` with `body` and waits for the reply.
    pub fn call(&mut self, route: &str, body: impl Into<Bytes>) -> Result<Reply, CallError> {
        self.call_with(CallRequest::new(route, body))
    }

    /// Makes `request` and waits for the reply, up to its deadline.
    pub fn call_with(&mut self, request: CallRequest) -> Result<Reply, CallError> {
        let timeout = request.timeout.or(self.options.default_timeout);
        let deadline = timeout.map(|t| Instant::now() + t);
        let metadata = request
            .head(timeout, false)
            .and_then(|head| head.encode())
            .map_err(|err| CallError::Malformed(err.to_string()))?;
        let limit = self.options.max_response;
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.ready_link(deadline)?;
            let Some(link) = self.link.as_mut() else {
                return Err(CallError::Closed);
            };
            let outcome = link.exchange(
                metadata.clone(),
                request.body.clone(),
                deadline,
                limit,
                &mut self.scratch,
            );
            if !link.usable() {
                self.link = None;
            }
            match outcome {
                Ok(reply) => return Ok(reply),
                Err(Failure::Unprocessed(_)) if attempts < self.options.max_attempts => {
                    self.link = None; // a fresh connection for the retry
                }
                Err(Failure::Unprocessed(err) | Failure::Final(err)) => return Err(err),
            }
        }
    }

    /// Makes sure there is a connection: made (and authenticated) if there
    /// is none or the one there is ended while idle.
    fn ready_link(&mut self, deadline: Option<Instant>) -> Result<(), CallError> {
        if let Some(link) = self.link.as_mut() {
            link.check_if_idle(&mut self.scratch);
            if !link.usable() {
                self.link = None;
            }
        }
        if self.link.is_none() {
            let mut link = self.open_link(deadline)?;
            if let Some(token) = self.options.token.clone() {
                authenticate(&mut link, &token, deadline, &mut self.scratch)?;
            }
            self.link = Some(link);
        }
        Ok(())
    }

    /// Connects to the first address that answers and completes the
    /// handshake (spec §3): a peer that does not speak mux fails here.
    fn open_link(&mut self, deadline: Option<Instant>) -> Result<Link, CallError> {
        let mut last_error = None;
        let addresses = self.addresses.clone();
        for address in addresses.entries() {
            let resolved = match address.resolve() {
                Ok(resolved) => resolved,
                Err(err) => {
                    last_error = Some(format!("{address}: {err}"));
                    continue;
                }
            };
            for addr in resolved {
                let mut timeout = self.options.connect_timeout;
                if let Some(deadline) = deadline {
                    timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
                }
                if timeout.is_zero() {
                    return Err(CallError::DeadlineExceeded);
                }
                let mut link = match Link::connect(addr, timeout) {
                    Ok(link) => link,
                    Err(err) => {
                        last_error = Some(format!("{addr}: {err}"));
                        continue;
                    }
                };
                let handshake_deadline = Instant::now() + timeout;
                match link.handshake(handshake_deadline, &mut self.scratch) {
                    Ok(()) => return Ok(link),
                    Err(err) => last_error = Some(format!("{addr}: {err}")),
                }
            }
        }
        Err(CallError::Connect(
            last_error.unwrap_or_else(|| "no address to connect to".into()),
        ))
    }
}

/// Presents `token` with `$auth` on a new connection.
fn authenticate(
    link: &mut Link,
    token: &str,
    deadline: Option<Instant>,
    scratch: &mut [u8],
) -> Result<(), CallError> {
    let request = CallRequest::new(mux_core::patterns::AUTH, "").header(
        Bytes::from_static(mux_core::patterns::AUTHORIZATION),
        mux_core::patterns::bearer_authorization(token),
    );
    let metadata = request
        .head(None, false)
        .and_then(|head| head.encode())
        .map_err(|err| CallError::Malformed(err.to_string()))?;
    let reply = link
        .exchange(metadata, Bytes::new(), deadline, 4096, scratch)
        .map_err(CallError::from)?;
    if reply.status == Status::OK {
        return Ok(());
    }
    Err(CallError::Rejected {
        status: reply.status,
        message: String::from_utf8_lossy(&reply.body).into_owned(),
    })
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
struct Link {
    socket: TcpStream,
    conn: Connection,
    input: BytesMut,
    output: Outgoing,
    /// The socket's receive timeout as last set (`None`: blocks).
    read_timeout: Option<Duration>,
    /// When the last exchange ended.
    idle_since: Instant,
    /// The transport failed or ended: the link is dropped.
    broken: bool,
}

impl Link {
    fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let socket = TcpStream::connect_timeout(&addr, timeout)?;
        socket.set_nodelay(true)?;
        let config = Config {
            // Pushes cannot be served between calls: refused (spec §10.4).
            max_concurrent_streams: 0,
            // Nothing runs between calls to keep a connection alive or time
            // it out; the server's own timeouts close one left idle.
            keepalive_interval: None,
            idle_timeout: None,
            ..Config::default()
        };
        let now = Instant::now();
        Ok(Self {
            socket,
            conn: Connection::new(Side::Client, config, now),
            input: BytesMut::new(),
            output: Outgoing::new(),
            read_timeout: None,
            idle_since: now,
            broken: false,
        })
    }

    /// Sends our preface and SETTINGS and waits for the server's (spec §3.2).
    fn handshake(&mut self, deadline: Instant, scratch: &mut [u8]) -> Result<(), String> {
        loop {
            self.flush(Some(deadline)).map_err(|err| err.to_string())?;
            while let Some(event) = self.conn.poll_event() {
                match event {
                    Event::Connected => return Ok(()),
                    Event::Closed { error } => {
                        let _ = self.flush(None);
                        return Err(match error {
                            Some(err) => err.to_string(),
                            None => "the server closed the connection".into(),
                        });
                    }
                    _ => {}
                }
            }
            self.read_some(Some(deadline), scratch)
                .map_err(|err| err.to_string())?;
        }
    }

    fn usable(&self) -> bool {
        !self.broken && !self.conn.is_closed()
    }

    /// Reads what the server sent while the connection sat idle (answering
    /// its PINGs, learning of its GOAWAY or its end), without waiting.
    fn check_if_idle(&mut self, scratch: &mut [u8]) {
        if self.idle_since.elapsed() < IDLE_CHECK || self.socket.set_nonblocking(true).is_err() {
            return;
        }
        loop {
            match self.socket.read(scratch) {
                Ok(0) => {
                    self.conn.handle_eof(Instant::now());
                    break;
                }
                Ok(n) => self.feed(&scratch[..n]),
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
        let _ = self.flush(None);
    }

    /// One request and its response.
    fn exchange(
        &mut self,
        metadata: Metadata,
        body: Bytes,
        deadline: Option<Instant>,
        limit: usize,
        scratch: &mut [u8],
    ) -> Result<Reply, Failure> {
        let result = self.run_exchange(metadata, body, deadline, limit, scratch);
        self.idle_since = Instant::now();
        result
    }

    fn run_exchange(
        &mut self,
        metadata: Metadata,
        body: Bytes,
        deadline: Option<Instant>,
        limit: usize,
        scratch: &mut [u8],
    ) -> Result<Reply, Failure> {
        let id = match self.conn.open(metadata, body.is_empty()) {
            Ok(id) => id,
            Err(OpenError::MetadataTooLarge { len, max }) => {
                let message = format!("request metadata of {len} bytes above the server's {max}");
                return Err(Failure::Final(CallError::Malformed(message)));
            }
            // Closed, going away, at the server's stream limit: nothing was
            // sent, so a new connection may take it.
            Err(err) => {
                self.broken = true;
                return Err(Failure::Unprocessed(CallError::ConnectionLost(
                    err.to_string(),
                )));
            }
        };
        let mut unsent = body;
        self.send_body(id, &mut unsent);
        let mut reader = StreamReader::call();
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
                            return self.finish(id, result);
                        }
                    }
                    Event::Writable { id: writable } if writable == id => {
                        self.send_body(id, &mut unsent);
                    }
                    Event::StreamReset { id: reset, code } if reset == id => {
                        // REFUSED_STREAM: not processed (spec §8.1).
                        let error = CallError::Reset(code);
                        return Err(if code == ErrorCode::REFUSED_STREAM {
                            Failure::Unprocessed(error)
                        } else {
                            Failure::Final(error)
                        });
                    }
                    Event::PushReceived { id: push, .. } => {
                        let _ = self.conn.reset(push, ErrorCode::CANCEL);
                    }
                    Event::GoAway { last_stream, .. } if last_stream < id => {
                        // The server will not process it (spec §11.3).
                        self.broken = true;
                        return Err(Failure::Unprocessed(CallError::ConnectionLost(
                            "the server is going away".into(),
                        )));
                    }
                    Event::Closed { error } => {
                        self.broken = true;
                        return Err(Failure::Final(lost(error)));
                    }
                    _ => {}
                }
            }
            if let Err(err) = self.read_some(deadline, scratch) {
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
        let _ = self.flush(None);
        result.map_err(Failure::Final)
    }

    /// Ends the call on a wait that failed: the deadline (the stream is
    /// reset, the connection kept) or the transport (the connection goes).
    fn fail(&mut self, id: StreamId, error: Wait) -> Failure {
        match error {
            Wait::Deadline => {
                let _ = self.conn.reset(id, ErrorCode::CANCEL);
                let _ = self.flush(None);
                Failure::Final(CallError::DeadlineExceeded)
            }
            Wait::Transport(err) => {
                self.broken = true;
                Failure::Final(CallError::ConnectionLost(err.to_string()))
            }
        }
    }

    /// Hands the state machine as much of the body as the stream takes now.
    fn send_body(&mut self, id: StreamId, unsent: &mut Bytes) {
        if unsent.is_empty() {
            return;
        }
        if let Ok(accepted) = self.conn.send(id, unsent.clone(), true, true) {
            let _ = unsent.split_to(accepted.min(unsent.len()));
        }
    }

    /// Feeds bytes read to the state machine.
    fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        // A connection error queues a GOAWAY and an `Event::Closed`.
        let _ = self.conn.handle_read(Instant::now(), &mut self.input);
    }

    /// Writes everything the state machine has to send; a transport that
    /// fails breaks the link.
    fn flush(&mut self, deadline: Option<Instant>) -> Result<(), Wait> {
        let result = self.write_all(deadline);
        if matches!(result, Err(Wait::Transport(_))) {
            self.broken = true;
        }
        result
    }

    fn write_all(&mut self, deadline: Option<Instant>) -> Result<(), Wait> {
        while self.conn.poll_transmit(Instant::now(), &mut self.output) {}
        if self.output.is_empty() {
            return Ok(());
        }
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(Wait::Deadline);
        }
        self.socket
            .set_write_timeout(timeout)
            .map_err(Wait::Transport)?;
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
            while self.conn.poll_transmit(Instant::now(), &mut self.output) {}
        }
        Ok(())
    }

    /// Waits for bytes (up to the deadline, or the state machine's next
    /// timer, which then runs) and feeds them in.
    fn read_some(&mut self, deadline: Option<Instant>, scratch: &mut [u8]) -> Result<(), Wait> {
        let now = Instant::now();
        if deadline.is_some_and(|d| d <= now) {
            return Err(Wait::Deadline);
        }
        let wake = match (deadline, self.conn.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.set_read_timeout(wake.map(|at| at.saturating_duration_since(now)))?;
        match self.socket.read(scratch) {
            Ok(0) => {
                self.conn.handle_eof(Instant::now());
                Ok(())
            }
            Ok(n) => {
                self.feed(&scratch[..n]);
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

    /// Sets the socket's receive timeout to about `wanted`, with a system
    /// call only when the one in force could oversleep it or wake far too
    /// early: a steady stream of calls with the same deadline costs none.
    fn set_read_timeout(&mut self, wanted: Option<Duration>) -> Result<(), Wait> {
        // A zero timeout means "block" to the socket: wait a microsecond instead.
        let wanted = wanted.map(|w| w.max(Duration::from_micros(1)));
        let fits = match (self.read_timeout, wanted) {
            (None, None) => true,
            (Some(set), Some(wanted)) => set <= wanted && set >= wanted / 2,
            _ => false,
        };
        if !fits {
            self.socket
                .set_read_timeout(wanted)
                .map_err(Wait::Transport)?;
            self.read_timeout = wanted;
        }
        Ok(())
    }
}

/// Why waiting on the socket stopped short.
#[derive(Debug)]
enum Wait {
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

fn lost(error: Option<ConnectionError>) -> CallError {
    CallError::ConnectionLost(match error {
        Some(err) => err.to_string(),
        None => "the server closed the connection".into(),
    })
}
