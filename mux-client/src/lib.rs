//! mux-client: calls a mux server over a pool of connections driven by a
//! hand-written `mio` event loop on a thread of its own.
//!
//! Every call exists in three styles, so that callers need no particular
//! async runtime:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = mux_client::Client::connect("127.0.0.1:7878".parse()?)?;
//! let reply = client.call("echo", "hi")?;                      // blocks
//! let call = client.call_async("echo", "hi");                   // a std Future...
//! let reply = call.wait()?;                                     // ...or a handle to wait on or poll
//! client.call_with_callback(mux_client::CallRequest::new("echo", "hi"), |result| {
//!     println!("{result:?}");                                   // runs on the loop thread
//! });
//! # Ok(()) }
//! ```
//!
//! Dropping a [`Call`] before it completes cancels it: its stream is reset
//! with `CANCEL`. Calls carry an optional deadline, sent to the server and
//! enforced here. When a connection ends, the pool reconnects with
//! exponential backoff; calls the server refused without processing
//! (`REFUSED_STREAM`) are retried.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod app;
mod credit;
mod feed;
mod patterns;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
pub use mux_core as core;
use mux_core::frame::Metadata;
use mux_core::rpc::RequestHead;
pub use mux_core::rpc::Status;
use mux_core::ErrorCode;
use mux_runtime::{completion, Completion, EventLoop, LoopHandle};
pub use mux_runtime::{LoopConfig, SocketOptions};

use std::sync::Arc;

pub use app::PushMessage;
use app::{ClientApp, Command, Policy, PushHandler, Sink};
use credit::Credit;
use mux_runtime::Piece;
pub use patterns::{
    Delivery, Event, EventStream, LongPoller, MessageStream, NextMessage, Poller, Publisher,
    Resume, Session, Subscription,
};

/// Bytes an upload may have handed to the loop that its connection has not
/// accepted yet; beyond, `Upload::write` blocks. 1 MiB, the size of a
/// stream's send buffer: together they keep a fast link busy.
const UPLOAD_CREDIT: usize = 1 << 20;

/// Commands queued for the loop at most; a full queue blocks the caller.
const COMMAND_QUEUE: usize = 4096;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No connection could be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection ended while the call was in flight; it may or may not have run.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The server reset the call's stream.
    #[error("the server reset the call with {0}")]
    Reset(ErrorCode),
    /// The deadline passed first.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The caller cancelled it.
    #[error("cancelled")]
    Cancelled,
    /// The response was larger than the client's limit.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The request or response did not follow the format.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Too many calls are waiting for a connection.
    #[error("too many calls waiting for a connection")]
    Busy,
    /// The client is shut down.
    #[error("the client is shut down")]
    Closed,
    /// The server answered with a failure status (a stream pattern's request was refused).
    #[error("the server refused with status {}: {message}", status.0)]
    Rejected {
        /// The status.
        status: Status,
        /// The server's message.
        message: String,
    },
}

impl From<CallError> for io::Error {
    fn from(err: CallError) -> Self {
        let kind = match err {
            CallError::Connect(_) => io::ErrorKind::ConnectionRefused,
            CallError::ConnectionLost(_) | CallError::Reset(_) => io::ErrorKind::ConnectionReset,
            CallError::DeadlineExceeded => io::ErrorKind::TimedOut,
            CallError::Cancelled | CallError::Closed => io::ErrorKind::Interrupted,
            CallError::Busy => io::ErrorKind::WouldBlock,
            CallError::TooLarge(_) | CallError::Malformed(_) => io::ErrorKind::InvalidData,
            CallError::Rejected { .. } => io::ErrorKind::Other,
        };
        Self::new(kind, err)
    }
}

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status.
    pub status: Status,
    /// The server's metadata.
    pub metadata: Metadata,
    /// The body.
    pub body: Bytes,
}

/// A call to make: route, body, metadata and deadline.
#[derive(Debug, Clone)]
pub struct CallRequest {
    head: RequestHead,
    body: Bytes,
    timeout: Option<Duration>,
}

impl CallRequest {
    /// A call of `route` with `body`.
    pub fn new(route: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            head: RequestHead::new(route),
            body: body.into(),
            timeout: None,
        }
    }

    /// The same call with a metadata entry.
    pub fn header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.head.metadata.push((name.into(), value.into()));
        self
    }

    /// The same call with a deadline `timeout` from when it is started.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Configures a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    policy: Policy,
    config: LoopConfig,
    default_timeout: Option<Duration>,
    push_handler: Option<PushHandler>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("policy", &self.policy)
            .field("push_handler", &self.push_handler.is_some())
            .finish()
    }
}

impl ClientBuilder {
    /// A client of the server at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            policy: Policy {
                addr,
                connections: 1,
                connect_timeout: Duration::from_secs(5),
                backoff_initial: Duration::from_millis(50),
                backoff_max: Duration::from_secs(5),
                max_response: 64 << 20,
                max_waiting: 10_000,
                max_attempts: 3,
            },
            config: LoopConfig::default(),
            default_timeout: None,
            push_handler: None,
        }
    }

    /// Accepts pushes (spec §10) and hands each, once its body arrived, to
    /// `handler`, on the loop thread (it must return quickly). Without a
    /// handler, pushes are refused with `CANCEL`.
    pub fn on_push<F>(mut self, handler: F) -> Self
    where
        F: Fn(PushMessage) + Send + Sync + 'static,
    {
        self.push_handler = Some(Arc::new(handler));
        self
    }

    /// Tells the server not to push at all (MAX_CONCURRENT_STREAMS 0, spec §6.4.3).
    pub fn refuse_pushes(mut self) -> Self {
        self.config.conn.max_concurrent_streams = 0;
        self
    }

    /// Connections in the pool (default 1); calls go to the least loaded.
    pub fn connections(mut self, n: usize) -> Self {
        self.policy.connections = n.max(1);
        self
    }

    /// How long a connect may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.policy.connect_timeout = timeout;
        self
    }

    /// Reconnect backoff: first delay and ceiling (default 50 ms doubling to 5 s).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.policy.backoff_initial = initial;
        self.policy.backoff_max = max.max(initial);
        self
    }

    /// Deadline of calls that set none (default: none).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// Largest response body accepted (default 64 MiB).
    pub fn max_response(mut self, bytes: usize) -> Self {
        self.policy.max_response = bytes;
        self
    }

    /// Calls that may wait for a connection or a free stream (default 10,000); beyond, [`CallError::Busy`].
    pub fn max_waiting(mut self, calls: usize) -> Self {
        self.policy.max_waiting = calls;
        self
    }

    /// Protocol limits of every connection.
    pub fn connection_config(mut self, config: mux_core::Config) -> Self {
        self.config.conn = config;
        self
    }

    /// Starts the loop and waits until one connection is ready (or fails).
    pub fn connect(self) -> io::Result<Client> {
        let client = self.start()?;
        let (completer, ready) = completion();
        client.opener.send(Command::WhenReady(completer))?;
        match ready.wait() {
            Ok(Ok(())) => Ok(client),
            Ok(Err((kind, message))) => Err(io::Error::new(kind, message)),
            Err(abandoned) => Err(io::Error::other(abandoned)),
        }
    }

    /// Starts the loop without waiting for a connection; calls wait for one.
    pub fn start(self) -> io::Result<Client> {
        let app = ClientApp::new(self.policy.clone(), self.push_handler.clone());
        let (event_loop, handle) = EventLoop::new(app, self.config, None, COMMAND_QUEUE)?;
        let thread = std::thread::Builder::new()
            .name("mux-client".into())
            .spawn(move || {
                if let Err(err) = event_loop.run() {
                    log::error!("client event loop failed: {err}");
                }
            })?;
        Ok(Client {
            opener: Opener {
                handle,
                next_id: Arc::new(AtomicU64::new(1)),
                default_timeout: self.default_timeout,
            },
            thread: Some(thread),
        })
    }
}

/// What starts calls on a client's loop: the client itself, and the pattern
/// helpers that reopen their streams after a reconnect.
#[derive(Debug, Clone)]
pub(crate) struct Opener {
    handle: LoopHandle<Command>,
    next_id: Arc<AtomicU64>,
    default_timeout: Option<Duration>,
}

/// A client: a pool of connections to one server and the loop driving them.
#[derive(Debug)]
pub struct Client {
    opener: Opener,
    thread: Option<JoinHandle<()>>,
}

impl Opener {
    fn send(&self, command: Command) -> Result<(), CallError> {
        self.handle.send(command).map_err(|_| CallError::Closed)
    }

    /// Hands a call to the loop; if the loop is gone, the call fails with
    /// [`CallError::Closed`] through its own sink.
    fn submit_call(&self, call: app::Call) {
        if let Err(Command::Call(call)) = self.handle.send(Command::Call(call)) {
            ClientApp::fail_call(call, CallError::Closed);
        }
    }

    fn submit_with(&self, request: CallRequest, sink: Sink, upload: Option<Arc<Credit>>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let timeout = request.timeout.or(self.default_timeout);
        let mut head = request.head;
        head.deadline = timeout;
        let call = app::Call {
            id,
            head,
            body: request.body,
            deadline: timeout.map(|t| Instant::now() + t),
            sink,
            attempts: 0,
            upload,
            queued: Vec::new(),
        };
        self.submit_call(call);
        id
    }

    pub(crate) fn start_call(&self, request: CallRequest) -> Call {
        let (completer, completion) = completion();
        let id = self.submit_with(request, Sink::Completion(completer), None);
        Call {
            completion: Some(completion),
            id: Some(id),
            handle: self.handle.clone(),
            failed: None,
        }
    }

    /// Opens a stream whose response is a sequence of messages.
    pub(crate) fn open_stream(&self, request: CallRequest) -> MessageStream {
        let shared = Arc::new(feed::FeedShared::default());
        let id = self.submit_with(request, Sink::Feed(Arc::clone(&shared)), None);
        MessageStream::new(shared, id, self.handle.clone())
    }
}

impl Client {
    /// Connects to `addr` with the defaults (one connection).
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        ClientBuilder::new(addr).connect()
    }

    /// A builder for `addr`.
    pub fn builder(addr: SocketAddr) -> ClientBuilder {
        ClientBuilder::new(addr)
    }

    pub(crate) fn opener(&self) -> &Opener {
        &self.opener
    }

    /// Calls `route` with `body` and waits for the reply.
    pub fn call(&self, route: &str, body: impl Into<Bytes>) -> Result<Reply, CallError> {
        self.call_with(CallRequest::new(route, body))
    }

    /// Makes `request` and waits for the reply.
    pub fn call_with(&self, request: CallRequest) -> Result<Reply, CallError> {
        self.start_call(request).wait()
    }

    /// Starts a call of `route`; the returned [`Call`] is a `Future` and a handle.
    pub fn call_async(&self, route: &str, body: impl Into<Bytes>) -> Call {
        self.start_call(CallRequest::new(route, body))
    }

    /// Starts `request`; the returned [`Call`] is a `Future` and a handle.
    pub fn start_call(&self, request: CallRequest) -> Call {
        self.opener.start_call(request)
    }

    /// Opens a call whose response is a stream of messages (the server
    /// sends a head, then messages, as they come). Reading pushes back on
    /// the server through flow control.
    pub fn open_stream(&self, request: CallRequest) -> MessageStream {
        self.opener.open_stream(request)
    }

    /// Opens a call whose request body is streamed with [`Upload::write`]
    /// (the `request`'s own body, if any, goes first). The server's route
    /// must be a streaming one to see the body before it ends.
    pub fn open_upload(&self, request: CallRequest) -> Upload {
        let (completer, completion) = completion();
        let credit = Arc::new(Credit::default());
        let id = self.opener.submit_with(
            request,
            Sink::Completion(completer),
            Some(Arc::clone(&credit)),
        );
        Upload {
            call: Some(Call {
                completion: Some(completion),
                id: Some(id),
                handle: self.opener.handle.clone(),
                failed: None,
            }),
            id,
            credit,
            handle: self.opener.handle.clone(),
        }
    }

    /// Starts `request`; `callback` gets the outcome on the loop thread, so it
    /// must return quickly.
    pub fn call_with_callback<F>(&self, request: CallRequest, callback: F)
    where
        F: FnOnce(Result<Reply, CallError>) + Send + 'static,
    {
        self.opener
            .submit_with(request, Sink::Callback(Box::new(callback)), None);
    }

    /// Measures the round-trip time to the server with a PING.
    pub fn ping(&self) -> Result<Duration, CallError> {
        let (completer, completion) = completion();
        self.opener.send(Command::Ping(completer))?;
        completion.wait().map_err(|_| CallError::Closed)?
    }

    /// Closes gracefully: calls in flight finish, new ones fail with [`CallError::Closed`].
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.opener.handle.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A call in flight: wait for it, poll it, or `.await` it. Dropping it
/// before it completes cancels the call.
#[derive(Debug)]
pub struct Call {
    completion: Option<Completion<Result<Reply, CallError>>>,
    id: Option<u64>,
    handle: LoopHandle<Command>,
    failed: Option<CallError>,
}

impl Call {
    /// Blocks until the reply arrives.
    pub fn wait(mut self) -> Result<Reply, CallError> {
        if let Some(err) = self.failed.take() {
            return Err(err);
        }
        let completion = self.completion.take().ok_or(CallError::Closed)?;
        completion.wait().map_err(|_| CallError::Closed)?
    }

    /// The reply if it has arrived, without blocking.
    pub fn try_result(&mut self) -> Option<Result<Reply, CallError>> {
        if let Some(err) = self.failed.take() {
            return Some(Err(err));
        }
        let completion = self.completion.as_mut()?;
        match completion.try_take() {
            Ok(Some(result)) => {
                self.completion = None;
                Some(result)
            }
            Ok(None) => None,
            Err(_) => {
                self.completion = None;
                Some(Err(CallError::Closed))
            }
        }
    }

    /// Blocks until the reply arrives or `timeout` passes (`None`; the call goes on).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<Reply, CallError>> {
        if let Some(err) = self.failed.take() {
            return Some(Err(err));
        }
        let completion = self.completion.as_mut()?;
        match completion.wait_timeout(timeout) {
            Ok(Some(result)) => {
                self.completion = None;
                Some(result)
            }
            Ok(None) => None,
            Err(_) => {
                self.completion = None;
                Some(Err(CallError::Closed))
            }
        }
    }

    /// Cancels the call now (dropping it does the same).
    pub fn cancel(mut self) {
        self.send_cancel();
    }

    fn send_cancel(&mut self) {
        if let (Some(completion), Some(id)) = (self.completion.take(), self.id) {
            if !completion.is_ready() {
                let _ = self.handle.try_send(Command::Cancel(id));
            }
        }
    }
}

impl Future for Call {
    type Output = Result<Reply, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(err) = self.failed.take() {
            return Poll::Ready(Err(err));
        }
        let Some(completion) = self.completion.as_mut() else {
            return Poll::Ready(Err(CallError::Closed));
        };
        match Pin::new(completion).poll(cx) {
            Poll::Ready(result) => {
                self.completion = None;
                Poll::Ready(result.unwrap_or(Err(CallError::Closed)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.send_cancel();
    }
}

/// A call whose request body is being streamed. Writes block (or, with
/// [`Upload::try_write`], report) while the connection cannot take more, so
/// a slow server slows the writer down end to end.
#[derive(Debug)]
pub struct Upload {
    call: Option<Call>,
    id: u64,
    credit: Arc<Credit>,
    handle: LoopHandle<Command>,
}

impl Upload {
    fn push(
        &mut self,
        bytes: Bytes,
        end_message: bool,
        end_stream: bool,
        wait: bool,
    ) -> Result<bool, CallError> {
        if !self.credit.acquire(bytes.len(), UPLOAD_CREDIT, wait)? {
            return Ok(false);
        }
        let piece = Piece {
            bytes,
            end_message,
            end_stream,
        };
        self.handle
            .send(Command::Write {
                call: self.id,
                piece,
            })
            .map_err(|_| CallError::Closed)?;
        Ok(true)
    }

    /// Writes bytes, blocking while the connection pushes back.
    pub fn write(&mut self, bytes: impl Into<Bytes>) -> Result<(), CallError> {
        self.push(bytes.into(), false, false, true).map(|_| ())
    }

    /// Writes one message (spec §7), blocking while the connection pushes back.
    pub fn write_message(&mut self, bytes: impl Into<Bytes>) -> Result<(), CallError> {
        self.push(bytes.into(), true, false, true).map(|_| ())
    }

    /// Writes bytes if the connection can take them now; `Ok(false)` means
    /// try again later (nothing was written).
    pub fn try_write(&mut self, bytes: impl Into<Bytes>) -> Result<bool, CallError> {
        self.push(bytes.into(), false, false, false)
    }

    /// Ends the body; the returned [`Call`] yields the reply.
    pub fn finish(mut self) -> Result<Call, CallError> {
        self.push(Bytes::new(), false, true, true)?;
        self.call.take().ok_or(CallError::Closed)
    }
}
