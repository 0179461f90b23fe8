//! [`Client`] and [`ClientBuilder`]: start the loop thread, hand it calls
//! and streams, and stop it; [`Opener`] is what the pattern helpers keep to
//! reopen their streams after a reconnect.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_core::rpc::{BodyCheck, RequestHead};
use mux_runtime::{
    deadline_after, AddressError, Addresses, EventLoop, IntoAddresses, LoopConfig, LoopHandle,
    ThreadScheduling, TlsClient, TrySendError,
};

use crate::app::ClientApp;
use crate::call::{Call, CallRequest, Upload};
use crate::command::{Callback, Command, PendingCall, PushHandler, PushMessage, Sink};
use crate::completion::completion;
use crate::credit::Credit;
use crate::error::CallError;
use crate::inbox::Inbox;
use crate::message_stream::MessageStream;
use crate::pool::Policy;
use crate::reply::Reply;

/// Commands queued for the loop at most; a full queue blocks the caller.
const COMMAND_QUEUE: usize = 4096;

/// Configures a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    /// The server's addresses, or why they did not parse (reported by `start`).
    addresses: Result<Addresses, AddressError>,
    policy: Policy,
    config: LoopConfig,
    default_timeout: Option<Duration>,
    push_handler: Option<PushHandler>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("addresses", &self.addresses)
            .field("policy", &self.policy)
            .field("push_handler", &self.push_handler.is_some())
            .finish()
    }
}

impl ClientBuilder {
    /// A client of the server at `addr`: a [`SocketAddr`](std::net::SocketAddr), a list of them,
    /// or text naming one or more `host:port` (`"localhost:7878"`,
    /// `"db-1:7878,db-2:7878"`). Names are resolved at each connection
    /// attempt; with a list, the pool's connections spread over it and an
    /// entry that is down is failed over to the next. Text that does not
    /// parse makes [`connect`](Self::connect) fail with `InvalidInput`.
    pub fn new(addr: impl IntoAddresses) -> Self {
        Self {
            addresses: addr.into_addresses(),
            policy: Policy {
                connections: 1,
                connect_timeout: Duration::from_secs(5),
                backoff_initial: Duration::from_millis(50),
                backoff_max: Duration::from_secs(5),
                max_response: 64 << 20,
                max_waiting: 10_000,
                max_attempts: 3,
                wait_for_ready: Duration::from_secs(2),
                token: None,
            },
            config: LoopConfig {
                scheduling: ThreadScheduling::Batch,
                ..LoopConfig::default()
            },
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

    /// Reconnect backoff: first delay and ceiling (default 50 ms doubling to 5 s;
    /// each delay is drawn from its upper half, so that clients do not all
    /// come back at once).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.policy.backoff_initial = initial;
        self.policy.backoff_max = max.max(initial);
        self
    }

    /// How long a call without a deadline waits for a connection while the
    /// client reconnects to a server it was connected to (default 2 s,
    /// about five attempts with the default backoff), like gRPC's
    /// wait-for-ready: such a call is carried by the next successful attempt
    /// within the limit, and fails with [`CallError::Connect`] after it. A call
    /// with a deadline waits until its deadline. Before the client was ever
    /// connected, the first failed attempt fails the waiting calls: the
    /// server may not exist. Only calls that may have run fail with
    /// [`CallError::ConnectionLost`].
    pub fn wait_for_ready(mut self, limit: Duration) -> Self {
        self.policy.wait_for_ready = limit;
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

    /// When the client's loop polls without sleeping before blocking: by default
    /// (`SpinPolicy::ADAPTIVE`) up to 200 µs, only while work has almost
    /// always come back that soon; `SpinPolicy::OFF` never.
    pub fn spin(mut self, policy: mux_runtime::SpinPolicy) -> Self {
        self.config.spin = policy;
        self
    }

    /// The scheduling class of the client's loop thread: by default
    /// [`ThreadScheduling::Batch`] (Linux's `SCHED_BATCH`), so that the loop,
    /// woken by a thread that hands it a call, does not preempt that thread
    /// before it blocks waiting for the answer; with the caller still
    /// runnable, the server's thread the request wakes was sent to the
    /// other core, about every other call at one call per millisecond
    /// (measurements: `mux_runtime::event_loop`'s
    /// `scheduling` module). [`ThreadScheduling::Inherited`] keeps the class
    /// the thread was started with.
    pub fn thread_scheduling(mut self, scheduling: ThreadScheduling) -> Self {
        self.config.scheduling = scheduling;
        self
    }

    /// Authenticates every connection with this bearer token
    /// (`spec/patterns.md` §8.1): a `$auth` request goes first, and the
    /// connection carries calls only once the server accepted it. A refusal
    /// fails [`ClientBuilder::connect`] (and waiting calls) with the
    /// server's reason. The token is never logged.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.policy.token = Some(token.into());
        self
    }

    /// Connects over TLS (spec §16) instead of plaintext:
    /// [`TlsClient::with_ca_file`] or [`TlsClient::with_system_roots`], with
    /// a certificate of our own for mutual TLS. The server is verified
    /// against the address connected to unless [`TlsClient::server_name`]
    /// says otherwise.
    pub fn tls(mut self, tls: TlsClient) -> Self {
        self.config.tls_client = Some(tls);
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

    /// [`connect`](Self::connect) as a future, for any executor: it
    /// resolves once one connection is ready (or the first attempts failed),
    /// without blocking the thread.
    pub async fn connect_async(self) -> io::Result<Client> {
        let client = self.start()?;
        let (completer, ready) = completion();
        let closed = || io::Error::other("the client's loop stopped");
        client
            .opener
            .handle
            .send_async(Command::WhenReady(completer))
            .await
            .map_err(|_| closed())?;
        match ready.await {
            Ok(Ok(())) => Ok(client),
            Ok(Err((kind, message))) => Err(io::Error::new(kind, message)),
            Err(_) => Err(closed()),
        }
    }

    /// Starts the loop without waiting for a connection; calls wait for one.
    pub fn start(self) -> io::Result<Client> {
        let addresses = self
            .addresses
            .clone()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        let app = ClientApp::new(self.policy.clone(), addresses, self.push_handler.clone());
        let (mut event_loop, handle) = EventLoop::new(app, self.config, None, COMMAND_QUEUE)?;
        event_loop.app_mut().set_handle(handle.clone());
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
                max_response: self.policy.max_response,
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
    /// The largest response body (or stream message) accepted.
    max_response: usize,
}

/// A client: a pool of connections to one server and the loop driving them.
#[derive(Debug)]
pub struct Client {
    opener: Opener,
    thread: Option<JoinHandle<()>>,
}

impl Opener {
    /// The largest response body (or stream message) the client accepts.
    pub(crate) fn max_response(&self) -> usize {
        self.max_response
    }

    fn send(&self, command: Command) -> Result<(), CallError> {
        self.handle.send(command).map_err(|_| CallError::Closed)
    }

    /// Hands a call to the loop; if the loop is gone, the call fails with
    /// [`CallError::Closed`] through its own sink.
    fn submit_call(&self, call: PendingCall) {
        call.send_blocking(&self.handle);
    }

    /// Serves a call on this thread if the loop sleeps (no hop to the
    /// loop's thread: [`LoopHandle::try_serve`]); otherwise hands it over
    /// as [`Opener::offer_call`] does.
    fn serve_or_offer(&self, call: PendingCall) -> Option<PendingCall> {
        match self.handle.try_serve(Command::Call(call)) {
            Ok(()) => None,
            Err(Command::Call(call)) => self.offer_call(call),
            // The command given back is the one given.
            Err(_) => None,
        }
    }

    /// Hands a call to the loop if its queue has room; gives it back if not.
    fn offer_call(&self, call: PendingCall) -> Option<PendingCall> {
        match self.handle.try_send(Command::Call(call)) {
            Ok(()) => None,
            Err(TrySendError::Full(Command::Call(call))) => Some(call),
            Err(TrySendError::Disconnected(Command::Call(call))) => {
                call.fail(CallError::Closed);
                None
            }
            Err(_) => None,
        }
    }

    fn submit_with(&self, request: CallRequest, sink: Sink, upload: Option<Arc<Credit>>) -> u64 {
        let (id, call) = self.prepare(request, sink, upload);
        if let Some(call) = call {
            self.submit_call(call);
        }
        id
    }

    /// The loop's form of a call, or `None` if it failed before (its sink
    /// learnt why).
    fn prepare(
        &self,
        request: CallRequest,
        sink: Sink,
        upload: Option<Arc<Credit>>,
    ) -> (u64, Option<PendingCall>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let timeout = request.timeout.or(self.default_timeout);
        let (head, invalid) = match request.head(timeout, upload.is_some()) {
            Ok(head) => (head, None),
            Err(err) => (RequestHead::new(request.route.clone()), Some(err)),
        };
        let call = PendingCall {
            id,
            head,
            body: request.body,
            deadline: timeout.and_then(deadline_after),
            sink,
            attempts: 0,
            waiting_since: None,
            submitted: Instant::now(),
            upload,
            queued: Vec::new(),
        };
        match invalid {
            // Nothing to send: the caller learns it through the call itself.
            Some(err) => {
                call.fail(CallError::Malformed(err.to_string()));
                (id, None)
            }
            None => (id, Some(call)),
        }
    }

    /// A call, handed to the loop if its queue has room; otherwise the
    /// [`Call`] holds it until it is awaited (without blocking) or waited
    /// for (blocking).
    pub(crate) fn start_call(&self, request: CallRequest) -> Call {
        let (completer, completion) = completion();
        let (id, call) = self.prepare(request, Sink::Completion(completer), None);
        Call {
            completion: Some(completion),
            id: Some(id),
            handle: self.handle.clone(),
            failed: None,
            unsent: call.and_then(|call| self.serve_or_offer(call)),
        }
    }

    /// Opens a stream whose response is a sequence of messages.
    /// The stream's call is handed to the loop if its queue has room;
    /// otherwise the stream holds it until it is first read (sent then,
    /// blocking or as a future, whichever way it is read).
    pub(crate) fn open_stream(&self, request: CallRequest) -> MessageStream {
        let inbox = Arc::new(Inbox::default());
        let (id, call) = self.prepare(request, Sink::Inbox(Arc::clone(&inbox)), None);
        let unsent = call.and_then(|call| self.offer_call(call));
        MessageStream::new(inbox, id, self.handle.clone(), unsent)
    }
}

impl Client {
    /// Connects to `addr` with the defaults (one connection); `addr` as in
    /// [`ClientBuilder::new`].
    pub fn connect(addr: impl IntoAddresses) -> io::Result<Self> {
        ClientBuilder::new(addr).connect()
    }

    /// [`Client::connect`] as a future, for any executor: it never blocks
    /// the thread.
    pub async fn connect_async(addr: impl IntoAddresses) -> io::Result<Self> {
        let builder = ClientBuilder::new(addr);
        builder.connect_async().await
    }

    /// A builder for `addr` (as in [`ClientBuilder::new`]).
    pub fn builder(addr: impl IntoAddresses) -> ClientBuilder {
        ClientBuilder::new(addr)
    }

    pub(crate) fn opener(&self) -> &Opener {
        &self.opener
    }

    /// Calls `route` with `body` and waits for the reply.
    ///
    /// While the client's loop sleeps (no call of its own in progress,
    /// a spin that does not pay), the call is written on this thread,
    /// under the lock of the loop's state, instead of handed to the loop
    /// and its thread woken: one wake-up less on the way out
    /// (`mux_runtime::LoopHandle::try_serve`). The same holds for
    /// [`Client::call_async`] and [`Client::start_call`].
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
        let mut check = BodyCheck::new(request.length);
        let declared_too_short = check.add(request.body.len()).err();
        let (id, prepared) = self.opener.prepare(
            request,
            Sink::Completion(completer),
            Some(Arc::clone(&credit)),
        );
        let mut call = Call {
            completion: Some(completion),
            id: Some(id),
            handle: self.opener.handle.clone(),
            failed: None,
            // Sent with the first write if the queue has no room now.
            unsent: prepared.and_then(|call| self.opener.offer_call(call)),
        };
        if let Some(mismatch) = declared_too_short {
            call.fail_now(mismatch.into());
        }
        Upload {
            call: Some(call),
            id,
            credit,
            handle: self.opener.handle.clone(),
            check,
            queued: None,
            ended: false,
        }
    }

    /// Starts `request`; `callback` gets the outcome on the loop thread, so
    /// it must return quickly. (Should a connection fail while the client
    /// writes another thread's call on that thread, the callbacks of the
    /// calls that fail with it run there: see [`Client::call`].)
    pub fn call_with_callback<F>(&self, request: CallRequest, callback: F)
    where
        F: FnOnce(Result<Reply, CallError>) + Send + 'static,
    {
        self.opener.submit_with(
            request,
            Sink::Callback(Box::new(callback) as Callback),
            None,
        );
    }

    /// Measures the round-trip time to the server with a PING.
    pub fn ping(&self) -> Result<Duration, CallError> {
        let (completer, completion) = completion();
        self.opener.send(Command::Ping(completer))?;
        completion.wait().map_err(|_| CallError::Closed)?
    }

    /// [`Client::ping`] as a future, for any executor.
    pub async fn ping_async(&self) -> Result<Duration, CallError> {
        let (completer, completion) = completion();
        self.opener
            .handle
            .send_async(Command::Ping(completer))
            .await
            .map_err(|_| CallError::Closed)?;
        completion.await.map_err(|_| CallError::Closed)?
    }

    /// Closes gracefully and returns once every connection is closed:
    ///
    /// - the client's own message streams (subscriptions, event streams,
    ///   long polls, session feeds) end at once: each is reset with `CANCEL`
    ///   and its reader gets [`CallError::Closed`];
    /// - calls and uploads in flight may finish, for at most the drain
    ///   timeout ([`mux_core::Config::drain_timeout`], 30 s by default), after
    ///   which the connection closes under them;
    /// - calls still waiting for a connection, and new ones, fail with
    ///   [`CallError::Closed`].
    ///
    /// With nothing in flight it returns within a round trip. Dropping the
    /// client does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.opener.handle.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            // Dropped inside one of its own callbacks, on the loop thread or
            // on a thread serving the loop's command while it slept: the loop
            // stops once the callback returns; it cannot wait for itself.
            let in_callback = thread.thread().id() == std::thread::current().id()
                || self.opener.handle.is_serving_here();
            if !in_callback {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}
