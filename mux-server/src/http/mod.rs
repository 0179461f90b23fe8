//! The web edge (`spec/patterns.md` §9): an HTTP/1.1 listener on the
//! server's own loops, for clients that cannot speak mux (browsers). It
//! serves the very same event logs, topics and long polls as the reserved
//! routes, bridges `POST /call/{route}` to the server's routes, and exposes
//! the server's counters at `/metrics`.
//!
//! Every loop accepts from a copy of one listening socket and owns the HTTP
//! connections it accepted; the hub's fan-out (entries, publications)
//! reaches each loop's feeds here as it reaches its mux feeds in
//! the reserved routes (`reserved/`). One request at a time per connection (pipelined
//! requests wait in the buffer, bounded).

mod conn;
mod feeds;
pub mod parse;
mod sse;
mod write;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mux_core::frame::Metadata;
use mux_core::rpc::BodyCheck;
use mux_runtime::{Ctx, PlainKey};

use self::conn::{HttpConn, Phase};
use self::parse::{Head, HttpError, RequestLimits};
use self::write::Framing;
use crate::authz::Action;
use crate::command::ReplyTo;
use crate::gate::Security;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::request::{Next, Request, Response};
use crate::reserved::FeedLimits;

pub use self::parse::HttpError as HttpRequestError;

/// The web edge's settings ([`ServerBuilder::http`](crate::ServerBuilder::http)).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where it listens (port 0 picks one).
    pub addr: SocketAddr,
    /// HTTP connections the server keeps at most; beyond, new ones get 503.
    pub max_connections: usize,
    /// How long a request head may take to arrive once it has begun (408
    /// after): the slow-header ("slowloris") bound.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How often an event stream with nothing to say gets a comment line.
    pub heartbeat: Duration,
    /// Request line and header fields, in bytes (431 beyond).
    pub max_head: usize,
    /// Header fields per request (431 beyond).
    pub max_headers: usize,
    /// A page served at `/` (the demo's), if any.
    pub page: Option<Bytes>,
}

impl HttpConfig {
    /// The defaults, listening on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            heartbeat: Duration::from_secs(15),
            max_head: 16 * 1024,
            max_headers: 64,
            page: None,
        }
    }
}

/// Checks one request head as the edge would (for the fuzz target and
/// tests): the head's length once whole, `None` while incomplete, or why it
/// is refused. Never panics.
pub fn check_request(bytes: &[u8]) -> Result<Option<usize>, HttpError> {
    let config = HttpConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    let limits = RequestLimits {
        max_head: config.max_head,
        max_headers: config.max_headers,
        max_body: crate::server::DEFAULT_MAX_REQUEST_BODY,
    };
    let head = parse::parse(bytes, &limits)?;
    if let Some(head) = &head {
        endpoint(head)?;
    }
    Ok(head.map(|h| h.len))
}

/// App timer tokens of the edge: this bit; 0 below it is the tick, others
/// are parked polls.
const HTTP_TIMER: u64 = 1 << 60;

/// Whether an app timer token is the edge's.
pub(crate) fn is_http_timer(token: u64) -> bool {
    token & HTTP_TIMER != 0 && token & (3 << 61) == 0
}

/// How often the edge checks deadlines and heartbeats.
const TICK: Duration = Duration::from_secs(1);

/// How long a closing connection waits for its peer to close after the
/// last answer (so that unread request bytes do not turn the close into a
/// reset that destroys the answer).
const LINGER: Duration = Duration::from_secs(2);

/// Bytes a feed queues within a loop pass before writing them at once
/// instead of at the pass's end.
const FLUSH_AT: usize = 64 * 1024;

/// Chunks of a streamed call body queued at most before waiting for the socket.
const STREAM_QUEUE: usize = 64 * 1024;

/// The reconnection delay advertised to event-stream clients (`retry:`).
const RETRY_MS: u64 = 1000;

/// Entries a long poll returns at most.
const MAX_POLL_BATCH: usize = 1024;
const DEFAULT_POLL_WAIT: Duration = Duration::from_secs(30);
const MAX_POLL_WAIT: Duration = Duration::from_secs(60);

/// A call the edge hands to the server's routes; its answer comes back
/// through [`HttpEdge::answer`].
pub(crate) struct HttpCall {
    pub(crate) to: ReplyTo,
    pub(crate) request: Request,
}

/// The endpoints (`spec/patterns.md` §9.1).
enum Endpoint {
    Page,
    Metrics,
    Events(String),
    Topics(String),
    Poll(String),
    Call(String),
}

/// The endpoint a head names, checked against its method.
fn endpoint(head: &Head) -> Result<Endpoint, HttpError> {
    let path = head.path.as_str();
    let named = |prefix: &str| -> Result<Option<String>, HttpError> {
        match path.strip_prefix(prefix) {
            Some("") => Err(HttpError::NotFound(path.to_owned())),
            Some(rest) => parse::decode(rest).map(Some),
            None => Ok(None),
        }
    };
    let (endpoint, allowed) = if path == "/" {
        (Endpoint::Page, "GET")
    } else if path == "/metrics" {
        (Endpoint::Metrics, "GET")
    } else if let Some(log) = named("/events/")? {
        (Endpoint::Events(log), "GET")
    } else if let Some(pattern) = named("/topics/")? {
        (Endpoint::Topics(pattern), "GET")
    } else if let Some(log) = named("/poll/")? {
        (Endpoint::Poll(log), "GET")
    } else if let Some(route) = named("/call/")? {
        (Endpoint::Call(route), "POST")
    } else {
        return Err(HttpError::NotFound(path.to_owned()));
    };
    if head.method != allowed {
        return Err(HttpError::MethodNotAllowed {
            method: head.method.clone(),
            allowed,
        });
    }
    Ok(endpoint)
}

/// The edge's state on one loop.
pub(crate) struct HttpEdge {
    config: Arc<HttpConfig>,
    limits: RequestLimits,
    feed_limits: FeedLimits,
    hub: Arc<Hub>,
    security: Arc<Security>,
    metrics: Arc<Metrics>,
    server: Option<Arc<crate::server::ServerHandle>>,
    listener: Option<usize>,
    conns: HashMap<PlainKey, HttpConn>,
    feeds: feeds::FeedIndex,
    /// Calls for the server's routes, taken by the app after each entry point.
    calls: Vec<HttpCall>,
    /// Connections closed since the app last looked (their tasks are dropped).
    closed: Vec<PlainKey>,
    /// Feeds written to during this loop pass: flushed at its end, so that
    /// a burst of publications costs one write per connection, not one each.
    to_flush: Vec<PlainKey>,
    /// Connections ready for their next request (see `finish_request`).
    to_advance: Vec<PlainKey>,
    shutting_down: bool,
    /// The tick timer is set (it runs while there are connections, so an
    /// idle server has no timer).
    ticking: bool,
}

impl std::fmt::Debug for HttpEdge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpEdge")
            .field("addr", &self.config.addr)
            .field("connections", &self.conns.len())
            .finish()
    }
}

impl HttpEdge {
    pub(crate) fn new(
        config: Arc<HttpConfig>,
        max_body: usize,
        feed_limits: FeedLimits,
        hub: Arc<Hub>,
        security: Arc<Security>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let limits = RequestLimits {
            max_head: config.max_head,
            max_headers: config.max_headers,
            max_body,
        };
        let feeds = feeds::FeedIndex::new(Arc::clone(&hub.broker));
        Self {
            config,
            limits,
            feed_limits,
            hub,
            security,
            metrics,
            server: None,
            listener: None,
            conns: HashMap::new(),
            feeds,
            calls: Vec::new(),
            closed: Vec::new(),
            to_flush: Vec::new(),
            to_advance: Vec::new(),
            shutting_down: false,
            ticking: false,
        }
    }

    /// Starts accepting from this loop's copy of the listening socket.
    pub(crate) fn start(
        &mut self,
        ctx: &mut Ctx<'_>,
        listener: mio::net::TcpListener,
        server: Option<Arc<crate::server::ServerHandle>>,
    ) {
        self.server = server;
        match ctx.adopt_plain_listener(listener) {
            Ok(number) => self.listener = Some(number),
            Err(err) => log::error!("http: cannot watch the listener: {err}"),
        }
    }

    /// Whether a plain listener number is the edge's.
    pub(crate) fn owns_listener(&self, listener: usize) -> bool {
        self.listener == Some(listener)
    }

    /// HTTP connections open on this loop.
    pub(crate) fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Whether anything waits for the app: calls, closed connections, or
    /// connections ready for their next request.
    pub(crate) fn has_work(&self) -> bool {
        !(self.calls.is_empty() && self.closed.is_empty() && self.to_advance.is_empty())
    }

    /// Calls waiting for the server's routes.
    pub(crate) fn take_calls(&mut self) -> Vec<HttpCall> {
        std::mem::take(&mut self.calls)
    }

    /// Connections closed since last asked.
    pub(crate) fn take_closed(&mut self) -> Vec<PlainKey> {
        std::mem::take(&mut self.closed)
    }

    /// A connection was accepted.
    pub(crate) fn accept(&mut self, ctx: &mut Ctx<'_>, key: PlainKey) {
        if self.shutting_down {
            return ctx.plain_close(key, false);
        }
        if self.metrics.http_open() >= self.config.max_connections {
            // Best effort: the answer is small enough for any socket buffer.
            let refusal = write::whole(
                503,
                "text/plain",
                b"too many HTTP connections\n",
                false,
                &[],
            );
            let _ = ctx.plain_write(key, &refusal);
            self.metrics.http_refused.inc();
            return ctx.plain_close(key, false);
        }
        self.metrics.http_opened();
        let peer = ctx.plain_peer_addr(key);
        let conn = HttpConn::new(
            key,
            peer,
            mux_runtime::later_by(ctx.now, self.config.idle_timeout),
        );
        self.conns.insert(key, conn);
        if !self.ticking {
            self.ticking = true;
            ctx.set_timer(ctx.now + TICK, HTTP_TIMER);
        }
        self.on_socket(ctx, key, true, true);
    }

    /// Readiness of one of the edge's connections.
    pub(crate) fn on_socket(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: PlainKey,
        readable: bool,
        writable: bool,
    ) {
        if readable {
            self.read(ctx, key);
        }
        if writable {
            self.flush(ctx, key);
        }
    }

    /// Whether a plain socket is one of the edge's.
    pub(crate) fn owns(&self, key: PlainKey) -> bool {
        self.conns.contains_key(&key)
    }

    /// Reads what arrived, then serves what it completes.
    fn read(&mut self, ctx: &mut Ctx<'_>, key: PlainKey) {
        let cap = self.limits.max_head + self.limits.max_body;
        let mut buf = [0u8; 16 * 1024];
        loop {
            let Some(conn) = self.conns.get_mut(&key) else {
                return;
            };
            // A feed's client has nothing more to say: what it sends is
            // dropped. Otherwise a request waits whole, within the limits.
            let keeps = !(conn.phase.is_feed() || conn.closing);
            if keeps && conn.input.len() >= cap {
                break; // read again once this request is served
            }
            match ctx.plain_read(key, &mut buf) {
                Ok(0) => return self.close(ctx, key),
                Ok(n) => {
                    if keeps {
                        conn.input
                            .extend_from_slice(buf.get(..n).unwrap_or_default());
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(ctx, key),
            }
        }
        self.advance(ctx, key);
    }

    /// Serves the request the input holds, if it is whole.
    fn advance(&mut self, ctx: &mut Ctx<'_>, key: PlainKey) {
        let now = ctx.now;
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.closing {
            return;
        }
        if matches!(conn.phase, Phase::Head) {
            if conn.input.is_empty() {
                return;
            }
            let head_by = mux_runtime::later_by(now, self.config.header_timeout);
            if conn.deadline > head_by {
                conn.deadline = head_by; // a head has begun: it gets this long
            }
            match parse::parse(&conn.input, &self.limits) {
                Ok(None) => return,
                Ok(Some(head)) => {
                    conn.input.drain(..head.len.min(conn.input.len()));
                    conn.keep_alive = head.keep_alive;
                    conn.phase = Phase::Body(Box::new(head));
                }
                Err(err) => return self.refuse(ctx, key, &err),
            }
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let Phase::Body(head) = &conn.phase else {
            return;
        };
        if conn.input.len() < head.content_length {
            return;
        }
        let body =
            Bytes::copy_from_slice(conn.input.get(..head.content_length).unwrap_or_default());
        conn.input.drain(..head.content_length);
        let Phase::Body(head) = std::mem::replace(&mut conn.phase, Phase::Calling) else {
            return;
        };
        conn.seq += 1;
        self.serve(ctx, key, *head, body);
    }

    /// Answers a refused request and closes (after an error the request
    /// framing cannot be trusted).
    fn refuse(&mut self, ctx: &mut Ctx<'_>, key: PlainKey, err: &HttpError) {
        log::debug!("http: refused: {err}");
        self.metrics.http_answered(err.status());
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.queue(write::refusal(err, false));
            conn.closing = true;
        }
        self.flush(ctx, key);
    }

    /// A whole request: to its endpoint.
    fn serve(&mut self, ctx: &mut Ctx<'_>, key: PlainKey, head: Head, body: Bytes) {
        let endpoint = match endpoint(&head) {
            Ok(endpoint) => endpoint,
            Err(err) => return self.answer_error(ctx, key, &err),
        };
        let peer = self.conns.get(&key).and_then(|c| c.peer);
        let action = match &endpoint {
            Endpoint::Page => None,
            Endpoint::Metrics => Some(Action::Call("$metrics")),
            Endpoint::Events(log) | Endpoint::Poll(log) => Some(Action::ReadEvents(log)),
            Endpoint::Topics(pattern) => Some(Action::Subscribe(pattern)),
            Endpoint::Call(route) => Some(Action::Call(route)),
        };
        let identity = match action {
            None => None,
            Some(action) => match self
                .security
                .admit_http(peer, head.bearer.as_deref(), &action)
            {
                Ok(identity) => Some(identity),
                Err(refusal) => return self.respond(ctx, key, refusal),
            },
        };
        if self.shutting_down && matches!(endpoint, Endpoint::Events(_) | Endpoint::Topics(_)) {
            let text = "text/plain";
            return self.respond_whole(ctx, key, 503, text, b"shutting down\n", &[]);
        }
        match endpoint {
            Endpoint::Page => match self.config.page.clone() {
                Some(page) => {
                    let text = "text/html; charset=utf-8";
                    self.respond_whole(ctx, key, 200, text, &page, &[]);
                }
                None => self.answer_error(ctx, key, &HttpError::NotFound("/".into())),
            },
            Endpoint::Metrics => {
                let text = self.metrics.encode(&self.hub, &self.security);
                let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                self.respond_whole(ctx, key, 200, kind, text.as_bytes(), &[]);
            }
            Endpoint::Events(log) => self.serve_events(ctx, key, &head, &log),
            Endpoint::Topics(pattern) => self.serve_topic(ctx, key, &pattern),
            Endpoint::Poll(log) => self.serve_poll(ctx, key, &head, &log),
            Endpoint::Call(route) => {
                if let Some(identity) = identity {
                    self.serve_call(ctx, key, head, route, body, identity);
                }
            }
        }
    }

    /// `POST /call/{route}`: handed to the app, which runs the route.
    fn serve_call(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: PlainKey,
        head: Head,
        route: String,
        body: Bytes,
        identity: Arc<crate::auth::Identity>,
    ) {
        if route.starts_with('$') {
            // Reserved routes have endpoints of their own (§9.1).
            let err = HttpError::NotFound(format!("/call/{route}"));
            return self.answer_error(ctx, key, &err);
        }
        let pairs = head
            .metadata
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_slice()));
        let metadata = match Metadata::from_pairs(pairs) {
            Ok(metadata) => metadata,
            Err(_) => {
                let err = HttpError::Malformed("mux-meta- fields that mux metadata cannot hold");
                return self.answer_error(ctx, key, &err);
            }
        };
        let Some(seq) = self.conns.get(&key).map(|c| c.seq) else {
            return;
        };
        let deadline = head
            .deadline
            .map(|left| mux_runtime::later_by(ctx.now, left));
        let request = Request::new(
            route,
            metadata,
            body,
            deadline,
            None,
            identity,
            self.server.clone(),
        );
        self.calls.push(HttpCall {
            to: ReplyTo::Http(key, seq),
            request,
        });
    }

    /// A route's answer to request `seq` of `key`, if that request still waits.
    pub(crate) fn answer(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: PlainKey,
        seq: u64,
        response: Response,
    ) {
        let waits = self
            .conns
            .get(&key)
            .is_some_and(|c| c.seq == seq && matches!(c.phase, Phase::Calling));
        if waits {
            self.respond(ctx, key, response);
        }
    }

    /// Writes a route's response: whole, or its streamed body in chunks.
    fn respond(&mut self, ctx: &mut Ctx<'_>, key: PlainKey, response: Response) {
        let status = response.status.0;
        let fields: Vec<(String, Vec<u8>)> = response
            .metadata
            .iter()
            .filter(|(name, _)| !name.starts_with(b":"))
            .map(|(name, value)| {
                let name = format!("{}{}", parse::META_PREFIX, String::from_utf8_lossy(name));
                (name, value.to_vec())
            })
            .collect();
        let kind = "application/octet-stream";
        let Some(source) = response.source else {
            return self.respond_whole(ctx, key, status, kind, &response.body, &fields);
        };
        self.metrics.http_answered(status);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let length = source
            .length()
            .map(|rest| rest.saturating_add(response.body.len() as u64));
        let mut check = BodyCheck::new(length);
        let _ = check.add(response.body.len());
        conn.queue(write::head(
            status,
            kind,
            Framing::Chunked,
            conn.keep_alive,
            &fields,
        ));
        conn.queue(write::chunk(&response.body));
        conn.phase = Phase::Streaming { source, check };
        self.pump(ctx, key);
    }

    /// A streamed call body was woken: write more of it.
    pub(crate) fn resume_body(&mut self, ctx: &mut Ctx<'_>, key: PlainKey, seq: u64) {
        if self.conns.get(&key).is_some_and(|c| c.seq == seq) {
            self.pump(ctx, key);
        }
    }

    /// Takes messages from a streamed call body while the socket keeps up.
    fn pump(&mut self, ctx: &mut Ctx<'_>, key: PlainKey) {
        let now = ctx.now;
        // Fill up to the queue bound, write, and go on while the socket
        // takes it all: a loop, never a recursion through `flush`, however
        // long the body.
        loop {
            let Some(conn) = self.conns.get_mut(&key) else {
                return;
            };
            let queued = conn.queued();
            let Phase::Streaming { source, check } = &mut conn.phase else {
                return;
            };
            let waiting = if queued >= STREAM_QUEUE {
                false
            } else {
                match source.next() {
                    Next::Pending => true,
                    Next::Message(bytes) => match check.add(bytes.len()) {
                        Ok(()) => {
                            conn.queue(write::chunk(&bytes));
                            continue;
                        }
                        Err(mismatch) => return self.break_body(ctx, key, &mismatch.to_string()),
                    },
                    Next::End => match check.finish() {
                        Ok(()) => {
                            conn.queue(Bytes::from_static(write::LAST_CHUNK));
                            conn.phase = Phase::Calling; // no more pumping
                            self.flush(ctx, key);
                            return self.finish_request(ctx, key);
                        }
                        Err(mismatch) => return self.break_body(ctx, key, &mismatch.to_string()),
                    },
                    Next::Failed(why) => return self.break_body(ctx, key, &why),
                }
            };
            if conn.flush(ctx, now).is_err() {
                return self.close(ctx, key);
            }
            // The source has nothing now (its waker calls again), or the
            // socket is full (its writable event does).
            if waiting || conn.queued() >= STREAM_QUEUE / 2 {
                return;
            }
        }
    }

    /// A streamed body broke off: the connection is closed without the last
    /// chunk, so the client sees a cut body, never a whole one (§1.8).
    fn break_body(&mut self, ctx: &mut Ctx<'_>, key: PlainKey, why: &str) {
        log::error!("http: a streamed response body failed: {why}");
        self.flush(ctx, key);
        self.close(ctx, key);
    }

    fn respond_whole(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: PlainKey,
        status: u16,
        content_type: &str,
        body: &[u8],
        fields: &[(String, Vec<u8>)],
    ) {
        self.metrics.http_answered(status);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        conn.queue(write::whole(
            status,
            content_type,
            body,
            conn.keep_alive,
            fields,
        ));
        self.flush(ctx, key);
        self.finish_request(ctx, key);
    }

    /// Answers a request the edge refuses, keeping the connection (the
    /// request was read whole, so the next one can follow).
    fn answer_error(&mut self, ctx: &mut Ctx<'_>, key: PlainKey, err: &HttpError) {
        self.metrics.http_answered(err.status());
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        conn.queue(write::refusal(err, conn.keep_alive));
        self.flush(ctx, key);
        self.finish_request(ctx, key);
    }

    /// The answer is queued whole: wait for the next request, or close.
    fn finish_request(&mut self, ctx: &mut Ctx<'_>, key: PlainKey) {
        self.closed.push(key); // its task or body, if any, is over
        let shutting_down = self.shutting_down;
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if !conn.keep_alive || shutting_down {
            conn.closing = true;
            conn.phase = Phase::Head;
            return self.flush(ctx, key);
        }
        conn.phase = Phase::Head;
        conn.deadline = mux_runtime::later_by(ctx.now, self.config.idle_timeout);
        // The next request may already wait, in the buffer or the socket:
        // served from `advance_waiting`, in a loop, so that a client
        // pipelining many requests cannot deepen the stack.
        self.to_advance.push(key);
    }

    /// Serves the requests that connections whose answer was just written
    /// have waiting (called after every entry point by the app).
    pub(crate) fn advance_waiting(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(key) = self.to_advance.pop() {
            self.read(ctx, key);
        }
    }

    /// Writes what waits; closes a closing connection once all is written.
    fn flush(&mut self, ctx: &mut Ctx<'_>, key: PlainKey) {
        let now = ctx.now;
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.flush(ctx, now).is_err() {
            return self.close(ctx, key);
        }
        if conn.closing && conn.queued() == 0 {
            // Half-close, then wait (a little) for the peer to close: a
            // close with unread bytes would reset the connection and could
            // destroy the answer before the client read it.
            let _ = ctx.plain_shutdown_write(key);
            conn.deadline = conn.deadline.min(now + LINGER);
            return;
        }
        let roomy = conn.queued() < self.feed_limits.max_bytes / 2;
        if let Phase::Topic { lost } = &mut conn.phase {
            // Drops are announced as soon as there is room, not only before
            // the next delivery: the last publications may be the dropped ones.
            let lost = std::mem::take(lost);
            if lost > 0 && roomy {
                let notice = sse::event(None, "lost", lost.to_string().as_bytes());
                conn.queue(write::chunk(&notice));
                if conn.flush(ctx, now).is_err() {
                    return self.close(ctx, key);
                }
            } else if let Phase::Topic { lost: kept } = &mut conn.phase {
                *kept = lost;
            }
        }
        if matches!(conn.phase, Phase::Streaming { .. }) && conn.queued() < STREAM_QUEUE / 2 {
            self.pump(ctx, key);
        }
    }

    /// Writes a feed's new bytes at the end of this loop pass (or now, once
    /// they are many).
    fn flush_soon(&mut self, ctx: &mut Ctx<'_>, key: PlainKey) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.queued() >= FLUSH_AT {
            return self.flush(ctx, key);
        }
        if !conn.flush_queued {
            conn.flush_queued = true;
            self.to_flush.push(key);
        }
    }

    /// The loop pass ends: writes what feeds queued during it.
    pub(crate) fn on_pass_end(&mut self, ctx: &mut Ctx<'_>) {
        for key in std::mem::take(&mut self.to_flush) {
            if let Some(conn) = self.conns.get_mut(&key) {
                conn.flush_queued = false;
                self.flush(ctx, key);
            }
        }
    }

    /// Closes a connection and forgets it everywhere.
    fn close(&mut self, ctx: &mut Ctx<'_>, key: PlainKey) {
        if self.conns.remove(&key).is_some() {
            self.metrics.http_closed();
        }
        self.feeds.forget(key);
        self.closed.push(key);
        ctx.plain_close(key, false);
    }

    /// The edge's timers: the tick (deadlines, heartbeats) and parked polls.
    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>, token: u64) {
        let timer = token & !HTTP_TIMER;
        if timer != 0 {
            return self.poll_timed_out(ctx, timer);
        }
        let now = ctx.now;
        let mut expired = Vec::new();
        let mut quiet = Vec::new();
        for (key, conn) in &self.conns {
            if (conn.phase.reads_request() || conn.closing) && conn.deadline <= now {
                expired.push(*key);
            } else if conn.phase.is_feed() && now >= conn.last_write + self.config.heartbeat {
                quiet.push(*key);
            }
        }
        for key in expired {
            self.expire(ctx, key);
        }
        for key in quiet {
            if let Some(conn) = self.conns.get_mut(&key) {
                conn.queue(write::chunk(&sse::heartbeat()));
            }
            self.flush(ctx, key);
        }
        self.ticking = !self.conns.is_empty();
        if self.ticking {
            ctx.set_timer(now + TICK, HTTP_TIMER);
        }
    }

    /// A connection's deadline passed: a begun request is answered 408; a
    /// quiet or closing connection is closed.
    fn expire(&mut self, ctx: &mut Ctx<'_>, key: PlainKey) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let begun = !conn.input.is_empty() || matches!(conn.phase, Phase::Body(_));
        if conn.closing || !begun {
            return self.close(ctx, key);
        }
        self.metrics.http_timeouts.inc();
        conn.input.clear();
        conn.phase = Phase::Head;
        conn.deadline = ctx.now + LINGER;
        let timeout = write::whole(
            408,
            "text/plain",
            b"the request did not arrive in time\n",
            false,
            &[],
        );
        conn.queue(timeout);
        conn.closing = true;
        self.metrics.http_answered(408);
        self.flush(ctx, key);
    }

    /// Graceful shutdown: no new connections; feeds end, parked polls are
    /// answered, idle connections close, others close after their answer.
    pub(crate) fn shut_down(&mut self, ctx: &mut Ctx<'_>) {
        self.stop_accepting(ctx);
        let keys: Vec<PlainKey> = self.conns.keys().copied().collect();
        for key in keys {
            let Some(conn) = self.conns.get_mut(&key) else {
                continue;
            };
            match &conn.phase {
                Phase::Events { .. } | Phase::Topic { .. } => {
                    conn.queue(Bytes::from_static(write::LAST_CHUNK));
                    conn.closing = true;
                    self.feeds.forget(key);
                    self.flush(ctx, key);
                }
                Phase::Poll { .. } => self.answer_poll(ctx, key, Vec::new()),
                Phase::Head if conn.input.is_empty() => self.close(ctx, key),
                _ => conn.keep_alive = false,
            }
        }
    }

    /// No more connections: this loop's copy of the listener is closed.
    fn stop_accepting(&mut self, ctx: &mut Ctx<'_>) {
        self.shutting_down = true;
        if let Some(listener) = self.listener.take() {
            ctx.close_plain_listener(listener);
        }
    }

    /// Stops at once: every connection is closed.
    pub(crate) fn abort(&mut self, ctx: &mut Ctx<'_>) {
        self.stop_accepting(ctx);
        let keys: Vec<PlainKey> = self.conns.keys().copied().collect();
        for key in keys {
            self.close(ctx, key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, path: &str) -> Head {
        let text = format!("{method} {path} HTTP/1.1\r\n\r\n");
        let limits = RequestLimits {
            max_head: 1024,
            max_headers: 8,
            max_body: 0,
        };
        parse::parse(text.as_bytes(), &limits)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("{text:?} parses"))
    }

    #[test]
    fn paths_name_endpoints_with_their_names_decoded() {
        let routed = |method: &str, path: &str| endpoint(&head(method, path));
        assert!(
            matches!(routed("GET", "/events/a%2Fb"), Ok(Endpoint::Events(log)) if log == "a/b")
        );
        assert!(
            matches!(routed("GET", "/topics/chat.%3E"), Ok(Endpoint::Topics(p)) if p == "chat.>")
        );
        assert!(
            matches!(routed("GET", "/poll/jobs?cursor=1"), Ok(Endpoint::Poll(log)) if log == "jobs")
        );
        assert!(matches!(routed("POST", "/call/echo"), Ok(Endpoint::Call(r)) if r == "echo"));
        assert!(matches!(routed("GET", "/metrics"), Ok(Endpoint::Metrics)));
        assert!(matches!(routed("GET", "/"), Ok(Endpoint::Page)));
        for (method, path, status) in [
            ("GET", "/events/", 404),
            ("GET", "/elsewhere", 404),
            ("POST", "/events/x", 405),
            ("GET", "/call/echo", 405),
            ("DELETE", "/metrics", 405),
        ] {
            let refused = routed(method, path).err().map(|e| e.status());
            assert_eq!(refused, Some(status), "{method} {path}");
        }
    }

    #[test]
    fn the_edges_timer_tokens_are_its_own() {
        assert!(is_http_timer(HTTP_TIMER) && is_http_timer(HTTP_TIMER | 77));
        assert!(!is_http_timer(1) && !is_http_timer(4));
        assert!(!crate::reserved::polls_timer(HTTP_TIMER | 5));
        assert!(!crate::tasks::is_deadline_timer(HTTP_TIMER | 5));
        assert!(!is_http_timer(1 << 62 | 5) && !is_http_timer(1 << 61 | 5));
    }
}
