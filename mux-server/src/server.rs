//! [`Server`], its [`ServerBuilder`] and the [`ServerHandle`] that server
//! code uses to publish, append events, push and reach sessions: binds the
//! listener, starts the loops and the worker pool, and stops them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::HashMap;
use mux_core::frame::{Metadata, MetadataError};
use mux_core::patterns::{check_topic, TopicError};
use mux_runtime::{
    Balance, EventLoop, LoopConfig, LoopHandle, SocketOptions, SpinPolicy, TlsServer,
};

use crate::app::ServerApp;
use crate::auth::Authenticator;
use crate::authz::Authorizer;
use crate::broker::{Broker, BrokerError, MemoryBroker, SlowSubscriber};
use crate::budget::{Budget, Limits};
use crate::command::Command;
use crate::event_store::{EventStore, MemoryEvents, StoreError};
use crate::gate::Security;
use crate::handler::Handler;
use crate::http::{HttpConfig, HttpEdge};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::request::{BodySink, HandlerResult, Request};
use crate::reserved::FeedLimits;
use crate::sessions::{MemoryStore, SessionHandle, SessionStore};
use crate::workers::WorkerPool;

/// What one connection may make the server hold by default, beyond the
/// protocol's own buffers: twice the default largest request body, so that
/// one upload and the answers before it fit.
pub const DEFAULT_CONNECTION_MEMORY: usize = 32 << 20;

/// What one subscription, event stream or session feed may hold for a slow
/// subscriber by default.
pub const DEFAULT_FEED_QUEUE_BYTES: usize = 1 << 20;

/// How long a message may wait in a feed's queue for a slow subscriber by
/// default.
pub const DEFAULT_FEED_MAX_WAIT: Duration = Duration::from_secs(10);

/// What all connections may make the server hold by default.
pub const DEFAULT_SERVER_MEMORY: usize = 1 << 30;

/// The address the server binds when none is given: loopback, port 7878.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";

/// The largest request body a server takes by default (16 MiB).
pub const DEFAULT_MAX_REQUEST_BODY: usize = 16 << 20;

/// Commands a loop's queue holds; a full queue blocks the (worker or
/// application) thread that sends, never the loop.
/// 65,536: room for bursts of cross-loop pub/sub fan-out (see `Hub::register`).
const COMMAND_QUEUE: usize = 65_536;

/// Configures and starts a [`Server`].
#[derive(Debug)]
pub struct ServerBuilder {
    addr: SocketAddr,
    threads: usize,
    workers: usize,
    worker_queue: usize,
    max_request_body: usize,
    max_connection_memory: usize,
    max_server_memory: usize,
    config: LoopConfig,
    routes: HashMap<String, Handler>,
    broker: Option<Arc<dyn Broker>>,
    sessions: Option<Arc<dyn SessionStore>>,
    slow_subscriber: SlowSubscriber,
    feed_queue_bytes: usize,
    feed_max_wait: Duration,
    log_capacity: usize,
    authenticator: Option<Arc<dyn Authenticator>>,
    authorizer: Option<Arc<dyn Authorizer>>,
    http: Option<HttpConfig>,
    events: Option<Arc<dyn EventStore>>,
}

impl std::fmt::Debug for dyn Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Broker")
    }
}

impl std::fmt::Debug for dyn Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator")
    }
}

impl std::fmt::Debug for dyn Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authorizer")
    }
}

impl std::fmt::Debug for dyn EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventStore")
    }
}

impl std::fmt::Debug for dyn SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionStore")
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 7878)),
            threads: cores,
            workers: 4 * cores,
            worker_queue: 1024,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            max_connection_memory: DEFAULT_CONNECTION_MEMORY,
            max_server_memory: DEFAULT_SERVER_MEMORY,
            config: LoopConfig::default(),
            routes: HashMap::default(),
            broker: None,
            sessions: None,
            slow_subscriber: SlowSubscriber::default(),
            feed_queue_bytes: DEFAULT_FEED_QUEUE_BYTES,
            feed_max_wait: DEFAULT_FEED_MAX_WAIT,
            log_capacity: 1024,
            authenticator: None,
            authorizer: None,
            http: None,
            events: None,
        }
    }
}

impl ServerBuilder {
    /// The address to listen on ([`DEFAULT_ADDR`] by default; port 0 picks one).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Loop threads (default: the number of cores). The connections they
    /// accept are spread over them: a loop that accepts one while another
    /// holds fewer hands it over ([`Server::connections_per_loop`]).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Worker threads for blocking handlers (default: 4 per core).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Jobs waiting for a worker at most (default 1,024); beyond, `503`.
    pub fn worker_queue(mut self, jobs: usize) -> Self {
        self.worker_queue = jobs.max(1);
        self
    }

    /// Largest request body accepted (default 16 MiB); beyond, `413`.
    pub fn max_request_body(mut self, bytes: usize) -> Self {
        self.max_request_body = bytes;
        self
    }

    /// What one connection may make the server hold beyond the protocol's
    /// own buffers: request bodies being received and answers its peer has
    /// not taken (default 32 MiB, and never below the largest request body).
    /// Past it, the connection's new streams are refused with REFUSED_STREAM
    /// and its request bodies are no longer read (flow control stops the peer).
    pub fn max_connection_memory(mut self, bytes: usize) -> Self {
        self.max_connection_memory = bytes;
        self
    }

    /// What all connections together may make the server hold, the same way
    /// (default 1 GiB). Past it, every new stream is refused.
    pub fn max_server_memory(mut self, bytes: usize) -> Self {
        self.max_server_memory = bytes;
        self
    }

    /// Connections per loop thread at most (default 10,000).
    pub fn max_connections_per_thread(mut self, max: usize) -> Self {
        self.config.max_connections = max.max(1);
        self
    }

    /// Protocol limits of every connection.
    pub fn connection_config(mut self, config: mux_core::Config) -> Self {
        self.config.conn = config;
        self
    }

    /// When loops poll without sleeping before blocking: by default
    /// (`SpinPolicy::ADAPTIVE`) up to 200 µs, only while work has almost
    /// always come back that soon; `SpinPolicy::OFF` never.
    pub fn spin(mut self, policy: SpinPolicy) -> Self {
        self.config.spin = policy;
        self
    }

    /// Serves TLS (spec §16) instead of plaintext:
    /// [`TlsServer::from_pem_files`] for a certificate and key, with a client
    /// CA for mutual TLS. Plaintext clients are refused with GOAWAY
    /// `INADEQUATE_SECURITY`.
    pub fn tls(mut self, tls: TlsServer) -> Self {
        self.config.tls_server = Some(tls);
        self
    }

    /// Socket options.
    pub fn socket_options(mut self, options: SocketOptions) -> Self {
        self.config.socket = options;
        self
    }

    /// A route whose handler runs on the loop thread; it must not block.
    pub fn route<F>(mut self, name: &str, handler: F) -> Self
    where
        F: Fn(Request) -> HandlerResult + Send + Sync + 'static,
    {
        self.routes
            .insert(name.to_owned(), Handler::Inline(Arc::new(handler)));
        self
    }

    /// A route whose handler is async: `handler` makes the request's future,
    /// which is polled on the loop thread that owns the stream and woken
    /// through that loop, so it may await any `Send` future whatever
    /// executor or thread completes it (no runtime of ours, no thread per
    /// request). Between its awaits it runs on the loop: it must not block.
    /// A panic answers 500; a passed deadline 504 (the future is dropped),
    /// as does a reset of the stream or the end of its connection.
    ///
    /// ```no_run
    /// use std::future::poll_fn;
    /// use std::sync::{Arc, Mutex};
    /// use std::task::{Poll, Waker};
    /// use std::time::Duration;
    /// use mux_server::{Response, Server};
    ///
    /// /// A timer completed by a thread of its own, as any executor's
    /// /// future would be: it wakes whoever polled it last.
    /// async fn sleep(duration: Duration) {
    ///     let state = Arc::new(Mutex::new((false, None::<Waker>)));
    ///     let timer = Arc::clone(&state);
    ///     std::thread::spawn(move || {
    ///         std::thread::sleep(duration);
    ///         let mut state = timer.lock().unwrap();
    ///         state.0 = true;
    ///         if let Some(waker) = state.1.take() {
    ///             waker.wake();
    ///         }
    ///     });
    ///     poll_fn(|cx| {
    ///         let mut state = state.lock().unwrap();
    ///         if state.0 {
    ///             return Poll::Ready(());
    ///         }
    ///         state.1 = Some(cx.waker().clone());
    ///         Poll::Pending
    ///     })
    ///     .await
    /// }
    ///
    /// let server = Server::builder()
    ///     .route_async("slow-echo", |req| async move {
    ///         sleep(Duration::from_millis(10)).await;
    ///         Ok(Response::ok(req.into_body()))
    ///     })
    ///     .start()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn route_async<F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = HandlerResult> + Send + 'static,
    {
        let boxed: crate::tasks::AsyncHandlerFn =
            Arc::new(move |request| Box::pin(handler(request)) as crate::tasks::HandlerFuture);
        self.routes.insert(name.to_owned(), Handler::Async(boxed));
        self
    }

    /// A route whose handler may block; it runs on the worker pool.
    pub fn route_blocking<F>(mut self, name: &str, handler: F) -> Self
    where
        F: Fn(Request) -> HandlerResult + Send + Sync + 'static,
    {
        self.routes
            .insert(name.to_owned(), Handler::Blocking(Arc::new(handler)));
        self
    }

    /// A route that receives its request body as it arrives: `open` makes a
    /// [`BodySink`] per request (from its route and metadata); the sink's
    /// `end` gives the response. Runs on the loop thread.
    pub fn route_streaming<F>(mut self, name: &str, open: F) -> Self
    where
        F: Fn(&Request) -> Box<dyn BodySink> + Send + Sync + 'static,
    {
        self.routes
            .insert(name.to_owned(), Handler::Streaming(Arc::new(open)));
        self
    }

    /// Who may connect (`spec/patterns.md` §8): decides each connection's
    /// identity from what TLS verified and from `$auth` tokens. The default,
    /// [`LoopbackOnly`](crate::auth::LoopbackOnly), admits loopback peers
    /// only; see [`crate::auth`] for bearer tokens and mutual TLS.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// What each identity may do (`spec/patterns.md` §8.4); the default
    /// allows everything to every authenticated identity. See
    /// [`crate::authz::Rules`] for a rule file.
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.authorizer = Some(Arc::new(authorizer));
        self
    }

    /// The broker that carries publications (default: [`MemoryBroker`], this process only).
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// The session store (default: [`MemoryStore`], sessions live 5 minutes
    /// after last use and replay their last 1,024 events).
    pub fn session_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.sessions = Some(store);
        self
    }

    /// What happens to subscribers that cannot keep up (default: drop the oldest beyond 1,024).
    pub fn slow_subscriber_policy(mut self, policy: SlowSubscriber) -> Self {
        self.slow_subscriber = policy;
        self
    }

    /// Bytes a subscription, event stream or session feed may hold for a
    /// subscriber that does not keep up (default 1 MiB; the newest message is
    /// always kept). Past it the slow-subscriber policy applies, as past its
    /// message count.
    pub fn feed_queue_bytes(mut self, bytes: usize) -> Self {
        self.feed_queue_bytes = bytes;
        self
    }

    /// How long a message may wait in a subscription's, event stream's or
    /// session feed's queue for a subscriber that does not keep up (default
    /// 10 s). Past it the slow-subscriber policy applies to that message, as
    /// past the queue's message count: it is dropped and counted in the next
    /// Lost notice, or the feed is ended. Checked whenever the feed is given a
    /// message or its stream has room, so nothing is written to a subscriber
    /// after waiting longer (`spec/patterns.md` §3.5).
    pub fn feed_max_wait(mut self, wait: Duration) -> Self {
        self.feed_max_wait = wait;
        self
    }

    /// Entries each event log keeps for replay (default 1,024), in the
    /// embedded in-memory store.
    pub fn event_log_capacity(mut self, entries: usize) -> Self {
        self.log_capacity = entries.max(1);
        self
    }

    /// Where event logs live (default: [`MemoryEvents`] of
    /// [`ServerBuilder::event_log_capacity`] entries, in this process; a
    /// store shared by several servers, such as
    /// [`backplane::RedisEvents`](crate::backplane::RedisEvents), lets a
    /// client resume on any of them).
    pub fn event_store(mut self, store: Arc<dyn EventStore>) -> Self {
        self.events = Some(store);
        self
    }

    /// Also serves the web edge (`spec/patterns.md` §9): HTTP/1.1 on `addr`,
    /// on the same loops, with [`HttpConfig::new`]'s defaults. Off unless
    /// asked for.
    pub fn http(self, addr: SocketAddr) -> Self {
        self.http_config(HttpConfig::new(addr))
    }

    /// Serves the web edge with these settings.
    pub fn http_config(mut self, config: HttpConfig) -> Self {
        self.http = Some(config);
        self
    }

    /// The page the web edge serves at `/` (HTML), if it has an edge.
    pub fn http_page(mut self, page: impl Into<Bytes>) -> Self {
        if let Some(config) = self.http.as_mut() {
            config.page = Some(page.into());
        }
        self
    }

    /// Binds and starts the loops and workers.
    pub fn start(self) -> io::Result<Server> {
        let routes = Arc::new(self.routes);
        let broker = self
            .broker
            .unwrap_or_else(|| Arc::new(MemoryBroker::default()));
        let sessions = self
            .sessions
            .unwrap_or_else(|| Arc::new(MemoryStore::new(Duration::from_secs(300), 1024)));
        let events = self
            .events
            .unwrap_or_else(|| Arc::new(MemoryEvents::new(self.log_capacity)));
        let hub = Arc::new(Hub::new(broker, sessions, events));
        hub.watch_events();
        hub.watch_sessions();
        // A connection must be able to hold the largest request body it may send.
        let per_connection = self.max_connection_memory.max(self.max_request_body);
        let limits = Limits::new(per_connection, self.max_server_memory, self.threads);
        let workers = WorkerPool::start(self.workers, self.worker_queue)?;
        // One listening socket, its descriptor duplicated into every loop's
        // poller: each loop is woken for new connections and the first to
        // accept wins. (SO_REUSEPORT listeners would spread accepts in the
        // kernel, but binding port 0 with it may share a port with another
        // server's reuse-port listeners.)
        let listener = mux_runtime::socket::listen(self.addr, false, &self.config.socket)?;
        let local_addr = listener.local_addr()?;
        let std_listener = std::net::TcpListener::from(listener);
        let mut listeners = Vec::with_capacity(self.threads);
        for _ in 0..self.threads {
            let copy = std_listener.try_clone()?;
            copy.set_nonblocking(true)?;
            listeners.push(mux_runtime::mio_listener(copy));
        }
        let http = match &self.http {
            None => None,
            Some(config) => {
                let listener =
                    mux_runtime::socket::listen(config.addr, false, &self.config.socket)?;
                let mut config = config.clone();
                config.addr = listener.local_addr()?;
                Some((Arc::new(config), std::net::TcpListener::from(listener)))
            }
        };
        let metrics = Arc::new(Metrics::new(Some(limits.clone()), Some(workers.queue())));
        let mut security = Security::default();
        if let Some(authenticator) = self.authenticator.clone() {
            security.authenticator = authenticator;
        }
        if let Some(authorizer) = self.authorizer.clone() {
            security.authorizer = authorizer;
        }
        let security = Arc::new(security);
        // Handlers reach the server through their requests from the first
        // one on (`Request::server`): no window after start where it is unset.
        let server_handle = Arc::new(ServerHandle {
            hub: Arc::clone(&hub),
            limits: limits.clone(),
            security: Arc::clone(&security),
            metrics: Arc::clone(&metrics),
            http_addr: http.as_ref().map(|(config, _)| config.addr),
        });
        let feed_limits = FeedLimits {
            policy: self.slow_subscriber,
            max_bytes: self.feed_queue_bytes,
            max_wait: self.feed_max_wait,
        };
        let mut created = Vec::with_capacity(self.threads);
        for (n, listener) in listeners.into_iter().enumerate() {
            let event_loop_missed = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let mut app = ServerApp::new(
                Arc::clone(&routes),
                workers.sender(),
                Arc::clone(&hub),
                self.max_request_body,
                feed_limits,
                Budget::new(limits.clone(), n),
                Arc::clone(&security),
            );
            app.metrics = Arc::clone(&metrics);
            if let Some((config, listener)) = &http {
                let copy = listener.try_clone()?;
                copy.set_nonblocking(true)?;
                let edge = HttpEdge::new(
                    Arc::clone(config),
                    self.max_request_body,
                    feed_limits,
                    Arc::clone(&hub),
                    Arc::clone(&security),
                    Arc::clone(&metrics),
                );
                app.http = Some(edge);
                app.http_listener = Some(mux_runtime::mio_listener(copy));
            }
            app.missed = Arc::clone(&event_loop_missed);
            app.server = Some(Arc::clone(&server_handle));
            let (event_loop, handle) =
                EventLoop::new(app, self.config.clone(), Some(listener), COMMAND_QUEUE)?;
            hub.register(handle.clone(), event_loop_missed);
            created.push((event_loop, handle));
        }
        let handles: Vec<_> = created.iter().map(|(_, handle)| handle.clone()).collect();
        let seats = Balance::of(&handles, self.config.max_connections);
        if let Some(seat) = seats.first() {
            hub.set_balance(Arc::clone(seat.balance()));
        }
        let mut loops = Vec::with_capacity(created.len());
        for (n, ((mut event_loop, handle), seat)) in created.into_iter().zip(seats).enumerate() {
            event_loop.share_connections(seat);
            event_loop.app_mut().handle = Some(handle.clone());
            let thread = std::thread::Builder::new()
                .name(format!("mux-loop-{n}"))
                .spawn(move || {
                    if let Err(err) = event_loop.run() {
                        log::error!("event loop failed: {err}");
                    }
                })?;
            loops.push((handle, thread));
        }
        log::debug!(
            "listening on {local_addr} with {} loop threads",
            loops.len()
        );
        Ok(Server {
            local_addr,
            loops,
            workers,
            handle: ServerHandle::clone(&server_handle),
        })
    }
}

/// A running server. Dropping it stops it at once; prefer
/// [`Server::shutdown_gracefully`].
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    loops: Vec<(LoopHandle<Command>, JoinHandle<()>)>,
    workers: WorkerPool,
    handle: ServerHandle,
}

/// Why [`ServerHandle::publish`] did not publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The topic is not one (`spec/patterns.md` §3.1).
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The broker refused it.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// What server code uses to reach clients: publish, append events, push,
/// and sessions. Cheap to clone and to send to other threads.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    hub: Arc<Hub>,
    limits: Limits,
    security: Arc<Security>,
    metrics: Arc<Metrics>,
    http_addr: Option<SocketAddr>,
}

impl ServerHandle {
    /// The address of the web edge, when it serves one ([`ServerBuilder::http`]).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The server's counters in the Prometheus text format: what the web
    /// edge serves at `/metrics` (`spec/patterns.md` §9.8).
    pub fn metrics_text(&self) -> String {
        self.metrics.encode(&self.hub, &self.security)
    }

    /// Publishes `payload` on `topic` to every matching subscriber
    /// (`spec/patterns.md` §3). With a broker that spans servers, `Ok` means
    /// its backplane queue took it; `Err` that it refused it (down, full).
    pub fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<(), PublishError> {
        check_topic(topic)?;
        self.hub.broker.publish(topic, &payload.into(), None)?;
        Ok(())
    }

    /// Appends an event to the event stream (and long-poll log) `stream`;
    /// returns its id once the event store holds it (`spec/patterns.md`
    /// §4.2, §5), or why it could not (a shared store that is unreachable).
    /// With a store shared over the network this waits for its answer: call
    /// it from a blocking or async handler, or another thread, rather than
    /// an inline handler.
    pub fn append_event(
        &self,
        stream: &str,
        kind: &str,
        data: impl Into<Bytes>,
    ) -> Result<u64, StoreError> {
        self.hub.append(stream, kind, data.into())
    }

    /// Pushes an unsolicited stream to every connected client (`spec/patterns.md` §2).
    pub fn push_all<'a>(
        &self,
        metadata: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        body: impl Into<Bytes>,
    ) -> Result<(), MetadataError> {
        let metadata = Metadata::from_pairs(metadata)?;
        let body = body.into();
        self.hub.broadcast(|| Command::PushAll {
            metadata: metadata.clone(),
            body: body.clone(),
        });
        Ok(())
    }

    /// A handle to the session `token`, if it is alive.
    pub fn session(&self, token: &str) -> Option<SessionHandle> {
        self.hub.session(token, Instant::now())
    }

    /// Fan-out messages a loop missed because its command queue was full.
    pub fn dropped_fanout(&self) -> u64 {
        self.hub.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes the loops hold for connections beyond the protocol's buffers
    /// (request bodies being received, answers not yet taken), as each loop
    /// last published it.
    pub fn held_memory(&self) -> usize {
        self.limits.server_held()
    }

    /// Failed authentications: `$auth` requests refused, and requests made
    /// before a connection authenticated.
    pub fn auth_failures(&self) -> u64 {
        self.security
            .auth_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests the authorizer refused (403), publications of publishing
    /// streams included, and uses of another identity's session.
    pub fn refused_by_policy(&self) -> u64 {
        self.security
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Streams refused because a memory limit was reached.
    pub fn refused_for_memory(&self) -> u64 {
        self.limits
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Subscriptions, event streams and session feeds open on every loop.
    pub fn feed_count(&self) -> usize {
        self.hub
            .open_feeds
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Event logs the server keeps: those server code appended to.
    pub fn event_log_count(&self) -> usize {
        self.hub.log_count()
    }
}

impl Server {
    /// A handle for server code: publish, events, pushes, sessions.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// A builder with the defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The mux connections each loop thread holds (with those handed to it
    /// and not yet taken up), as the loops last published them. A loop that
    /// accepts a connection while another holds fewer hands it over, so new
    /// connections go to the least loaded loop; connections that end leave
    /// their loop lighter, and none is moved once it is served.
    pub fn connections_per_loop(&self) -> Vec<usize> {
        self.handle.hub.connections_per_loop()
    }

    /// The address of the web edge, when it serves one ([`ServerBuilder::http`]).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.handle.http_addr
    }

    /// Stops accepting, sends GOAWAY on every connection, lets requests in
    /// flight finish, and returns once every connection closed or `timeout`
    /// passed (then the rest are closed with `CANCEL`). Closed connections
    /// wait for their peers' end of the byte stream at most 100 ms more
    /// (the lingering close of spec §11.3.4).
    pub fn shutdown_gracefully(mut self, timeout: Duration) -> io::Result<()> {
        let deadline = mux_runtime::deadline_within(timeout);
        for (handle, _) in &self.loops {
            let _ = handle.send(Command::Shutdown { deadline });
        }
        self.join(Some(deadline));
        Ok(())
    }

    /// Closes every connection at once and stops, waiting at most 100 ms
    /// for the peers' end of their byte streams (spec §11.3.4).
    pub fn abort(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        for (handle, _) in &self.loops {
            let _ = handle.send(Command::Abort);
        }
        self.join(Some(Instant::now()));
    }

    /// Waits for the loops, then for the workers until `deadline`.
    fn join(&mut self, deadline: Option<Instant>) {
        for (_, thread) in self.loops.drain(..) {
            let _ = thread.join();
        }
        self.workers.stop(deadline);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.loops.is_empty() {
            self.stop_now();
        }
    }
}
