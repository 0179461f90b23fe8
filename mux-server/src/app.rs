//! The server's logic on each loop thread: turns streams into requests,
//! runs inline handlers on the spot and blocking ones on the worker pool,
//! writes responses, serves the patterns' reserved routes (publish,
//! subscribe, event streams, long polls, sessions) and shuts down gracefully.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Sender, TrySendError};
use mux_core::frame::Metadata;
use mux_core::patterns::{self, FeedMessage};
use mux_core::rpc::{RequestHead, ResponseHead, Status};
use mux_core::{ErrorCode, Event, StreamId};
use mux_runtime::{App, ConnKey, Ctx, LoopError, LoopHandle, Outbox, Piece};

use crate::broker::SlowSubscriber;
use crate::event_log::Entry;
use crate::feed::{Feed, FeedKind};
use crate::hub::Hub;
use crate::request::{BodySink, HandlerError, HandlerResult, Request, Response};
use crate::sessions::SessionHandle;
use crate::workers::Job;

/// A handler of whole requests.
pub(crate) type HandlerFn = Arc<dyn Fn(Request) -> HandlerResult + Send + Sync>;

/// Makes the sink of a streaming request.
pub(crate) type SinkFn = Arc<dyn Fn(&Request) -> Box<dyn BodySink> + Send + Sync>;

/// A route's handler and where it runs.
#[derive(Clone)]
pub(crate) enum Handler {
    /// Runs on the loop thread: must not block.
    Inline(HandlerFn),
    /// Runs on the worker pool.
    Blocking(HandlerFn),
    /// Receives the body as it arrives, on the loop thread.
    Streaming(SinkFn),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Inline(_) => "Inline",
            Self::Blocking(_) => "Blocking",
            Self::Streaming(_) => "Streaming",
        })
    }
}

/// Commands a loop receives.
#[derive(Debug)]
pub(crate) enum Command {
    /// A blocking handler finished.
    Done {
        key: ConnKey,
        id: StreamId,
        result: HandlerResult,
    },
    /// A publication from the broker.
    Publication { topic: Arc<str>, payload: Bytes },
    /// A new entry of an event log.
    Event { stream: Arc<str>, entry: Entry },
    /// A new entry of a session's feed.
    SessionEvent { token: Arc<str>, entry: Entry },
    /// Push to every connection of this loop.
    PushAll { metadata: Metadata, body: Bytes },
    /// Stop accepting, close every connection gracefully; abort at `deadline`.
    Shutdown { deadline: Instant },
    /// Stop at once.
    Abort,
}

/// Timer tokens: the shutdown deadline, the session sweep, and long polls (`POLL_TIMER | n`).
const SHUTDOWN_TIMER: u64 = 1;
const SWEEP_TIMER: u64 = 2;

/// How often expired sessions are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
const POLL_TIMER: u64 = 1 << 62;

/// Topics whose subscribers a loop remembers at most.
const MATCH_CACHE_TOPICS: usize = 4096;

/// Entries a long poll or a replay returns at most per response.
const MAX_BATCH: usize = 1024;

/// Longest a long poll may be held (`spec/patterns.md` §4.2).
const MAX_WAIT: Duration = Duration::from_secs(60);

/// A request being received.
struct Pending {
    head: RequestHead,
    body: BytesMut,
    started: Instant,
    /// The body grew past the limit: the 413 was sent, the rest is discarded.
    discarding: bool,
    /// A streaming route's sink: the body goes there instead of `body`.
    sink: Option<Box<dyn BodySink>>,
}

/// A long poll waiting for an entry.
#[derive(Debug, Clone)]
struct Parked {
    key: ConnKey,
    id: StreamId,
    after: u64,
    timer: u64,
}

/// Per-loop server state.
pub(crate) struct ServerApp {
    routes: Arc<HashMap<String, Handler>>,
    jobs: Sender<Job>,
    pub(crate) handle: Option<LoopHandle<Command>>,
    hub: Arc<Hub>,
    max_request_body: usize,
    policy: SlowSubscriber,
    pending: HashMap<(ConnKey, StreamId), Pending>,
    outbox: Outbox,
    feeds: HashMap<(ConnKey, StreamId), Feed>,
    /// Subscriptions of this loop, matched against every publication.
    subscriptions: Vec<(String, ConnKey, StreamId)>,
    /// The subscribers of recently published topics, so that a busy topic is
    /// matched against every pattern once, not once per publication. Cleared
    /// whenever a subscription comes or goes, and when it grows past
    /// `MATCH_CACHE_TOPICS`.
    match_cache: HashMap<Arc<str>, Vec<(ConnKey, StreamId)>>,
    /// Feeds by event stream name, and by session token.
    event_watchers: HashMap<String, Vec<(ConnKey, StreamId)>>,
    session_watchers: HashMap<String, Vec<(ConnKey, StreamId)>>,
    polls: HashMap<String, Vec<Parked>>,
    next_timer: u64,
    shutting_down: bool,
    /// Publications the hub could not queue for this loop (it was full):
    /// announced to every subscription as possibly lost.
    pub(crate) missed: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for ServerApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerApp")
            .field("routes", &self.routes.len())
            .field("pending", &self.pending.len())
            .field("feeds", &self.feeds.len())
            .field("shutting_down", &self.shutting_down)
            .finish()
    }
}

/// A reserved metadata value as text.
fn meta<'a>(head: &'a RequestHead, name: &[u8]) -> Option<&'a str> {
    head.metadata
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

fn meta_u64(head: &RequestHead, name: &[u8]) -> Option<u64> {
    meta(head, name).and_then(|v| v.trim().parse().ok())
}

fn event_message(entry: &Entry) -> Bytes {
    FeedMessage::Event {
        id: entry.id,
        kind: entry.kind.clone(),
        data: entry.data.clone(),
    }
    .encode()
}

impl ServerApp {
    pub(crate) fn new(
        routes: Arc<HashMap<String, Handler>>,
        jobs: Sender<Job>,
        hub: Arc<Hub>,
        max_request_body: usize,
        policy: SlowSubscriber,
    ) -> Self {
        Self {
            routes,
            jobs,
            handle: None,
            hub,
            max_request_body,
            policy,
            pending: HashMap::new(),
            outbox: Outbox::default(),
            feeds: HashMap::new(),
            subscriptions: Vec::new(),
            match_cache: HashMap::new(),
            event_watchers: HashMap::new(),
            session_watchers: HashMap::new(),
            polls: HashMap::new(),
            next_timer: 0,
            shutting_down: false,
            missed: Arc::default(),
        }
    }

    /// Writes a response head and, unless `feed`, the body and the end.
    fn write_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        head: ResponseHead,
        body: Vec<Bytes>,
        end: bool,
    ) {
        let Some(conn) = ctx.conn(key) else {
            return;
        };
        let count = body.len();
        let mut pieces = vec![Piece {
            bytes: head.encode(),
            end_message: true,
            end_stream: end && count == 0,
        }];
        for (n, bytes) in body.into_iter().enumerate() {
            pieces.push(Piece {
                bytes,
                end_message: true,
                end_stream: end && n + 1 == count,
            });
        }
        for piece in pieces {
            // The stream may be gone (the client cancelled): nothing to answer.
            if self.outbox.write(conn, key, id, piece).is_err() {
                self.outbox.forget(key, id);
                return;
            }
        }
    }

    fn respond(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId, response: Response) {
        if !response.pushes.is_empty() {
            if let Some(conn) = ctx.conn(key) {
                for (metadata, body) in &response.pushes {
                    // Tied pushes go out before the response ends (spec §10.3);
                    // a client that refuses pushes makes this fail quietly.
                    if let Ok(pushed) = conn.push(Some(id), metadata.clone(), body.is_empty()) {
                        let piece = Piece {
                            bytes: body.clone(),
                            end_message: true,
                            end_stream: true,
                        };
                        if !body.is_empty() {
                            let _ = self.outbox.write(conn, key, pushed, piece);
                        }
                    }
                }
            }
        }
        let head = ResponseHead {
            status: response.status,
            metadata: response.metadata,
        };
        self.write_response(ctx, key, id, head, vec![response.body], true);
    }

    fn status(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        status: Status,
        message: impl Into<Bytes>,
    ) {
        self.respond(ctx, key, id, Response::with_status(status, message));
    }

    fn on_opened(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        metadata: &Metadata,
        end_stream: bool,
    ) {
        let head = match RequestHead::decode(metadata) {
            Ok(head) => head,
            Err(err) => return self.status(ctx, key, id, Status::BAD_REQUEST, err.to_string()),
        };
        let sink = match self.routes.get(&head.route) {
            _ if head.route == patterns::PUBLISH_STREAM => {
                Some(Box::new(PublishStream::new(Arc::clone(&self.hub))) as Box<dyn BodySink>)
            }
            Some(Handler::Streaming(open)) => {
                let request = Request::new(
                    head.route.clone(),
                    head.metadata.clone(),
                    Bytes::new(),
                    None,
                    None,
                );
                Some(open(&request))
            }
            _ => None,
        };
        self.pending.insert(
            (key, id),
            Pending {
                head,
                body: BytesMut::new(),
                started: ctx.now,
                discarding: false,
                sink,
            },
        );
        if end_stream {
            self.dispatch(ctx, key, id);
        }
    }

    fn on_readable(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId) {
        let limit = self.max_request_body;
        let mut finished = false;
        let mut too_large = false;
        {
            let Some(conn) = ctx.conn(key) else {
                return;
            };
            let Some(pending) = self.pending.get_mut(&(key, id)) else {
                // A feed: the client's direction carries nothing; its end unsubscribes.
                while let Ok(Some(chunk)) = conn.read(id, usize::MAX) {
                    finished |= chunk.fin;
                }
                if finished && self.feeds.contains_key(&(key, id)) {
                    let _ = conn.finish(id);
                    self.remove_feed(key, id);
                }
                return;
            };
            while let Ok(Some(chunk)) = conn.read(id, usize::MAX) {
                if let Some(sink) = pending.sink.as_mut() {
                    sink.data(&chunk.bytes, chunk.end_message);
                } else if !pending.discarding {
                    if pending.body.len() + chunk.bytes.len() > limit {
                        pending.discarding = true;
                        pending.body = BytesMut::new();
                        too_large = true;
                    } else {
                        pending.body.extend_from_slice(&chunk.bytes);
                    }
                }
                finished |= chunk.fin;
            }
        }
        if too_large {
            self.status(
                ctx,
                key,
                id,
                Status::TOO_LARGE,
                format!("request body above {limit} bytes"),
            );
        }
        if finished {
            let discarding = self.pending.get(&(key, id)).is_some_and(|p| p.discarding);
            if discarding {
                self.pending.remove(&(key, id));
            } else {
                self.dispatch(ctx, key, id);
            }
        }
    }

    /// The request is complete: serve a reserved route, or a handler.
    fn dispatch(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId) {
        let Some(pending) = self.pending.remove(&(key, id)) else {
            return;
        };
        let deadline = pending.head.deadline.map(|left| pending.started + left);
        if deadline.is_some_and(|d| d <= ctx.now) {
            return self.status(ctx, key, id, Status::DEADLINE_EXCEEDED, "deadline passed");
        }
        if let Some(sink) = pending.sink {
            let response = match catch_unwind(AssertUnwindSafe(|| sink.end())) {
                Ok(result) => result.unwrap_or_else(Response::from),
                Err(_) => HandlerError::new(Status::INTERNAL, "handler panicked").into(),
            };
            return self.respond(ctx, key, id, response);
        }
        match pending.head.route.as_str() {
            patterns::PUBLISH => {
                return self.serve_publish(ctx, key, id, &pending.head, pending.body.freeze())
            }
            patterns::SUBSCRIBE => return self.serve_subscribe(ctx, key, id, &pending.head),
            patterns::EVENTS => return self.serve_events(ctx, key, id, &pending.head),
            patterns::LONG_POLL => return self.serve_long_poll(ctx, key, id, &pending.head),
            patterns::SESSION_OPEN => {
                let token = self.hub.sessions.create(ctx.now);
                return self.respond(ctx, key, id, Response::ok(token));
            }
            patterns::SESSION_ATTACH => {
                return self.serve_session_attach(ctx, key, id, &pending.head)
            }
            _ => {}
        }
        let session = match meta(&pending.head, patterns::SESSION) {
            None => None,
            Some(token) => {
                let alive = self
                    .hub
                    .sessions
                    .with(token, ctx.now, &mut |_| {})
                    .is_some();
                if !alive {
                    return self.status(ctx, key, id, Status::GONE, "unknown or expired session");
                }
                Some(SessionHandle {
                    token: token.to_owned(),
                    store: Arc::clone(&self.hub.sessions),
                    hub: Arc::clone(&self.hub),
                })
            }
        };
        let request = Request::new(
            pending.head.route,
            pending.head.metadata,
            pending.body.freeze(),
            deadline,
            session,
        );
        match self.routes.get(request.route()).cloned() {
            None => {
                let message = format!("no route {:?}", request.route());
                self.status(ctx, key, id, Status::NOT_FOUND, message);
            }
            Some(Handler::Streaming(_)) => {} // served by its sink above
            Some(Handler::Inline(handler)) => {
                let response = run(&*handler, request);
                self.respond(ctx, key, id, response);
            }
            Some(Handler::Blocking(handler)) => {
                let Some(reply) = self.handle.clone() else {
                    return;
                };
                let job = Job {
                    handler,
                    request,
                    key,
                    id,
                    reply,
                };
                if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                    self.jobs.try_send(job)
                {
                    self.status(ctx, key, id, Status::UNAVAILABLE, "worker queue full");
                }
            }
        }
    }

    /// `spec/patterns.md` §3.4.
    fn serve_publish(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        head: &RequestHead,
        payload: Bytes,
    ) {
        let topic = meta(head, patterns::TOPIC).unwrap_or_default();
        match patterns::check_topic(topic) {
            Ok(()) => {
                self.hub.broker.publish(topic, &payload);
                self.respond(ctx, key, id, Response::ok(Bytes::new()));
            }
            Err(err) => self.status(ctx, key, id, Status::BAD_REQUEST, err.to_string()),
        }
    }

    /// `spec/patterns.md` §3.2.
    fn serve_subscribe(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        head: &RequestHead,
    ) {
        let pattern = meta(head, patterns::TOPIC).unwrap_or_default().to_owned();
        if let Err(err) = patterns::check_pattern(&pattern) {
            return self.status(ctx, key, id, Status::BAD_REQUEST, err.to_string());
        }
        self.write_response(
            ctx,
            key,
            id,
            ResponseHead::new(Status::OK),
            Vec::new(),
            false,
        );
        self.subscriptions.push((pattern.clone(), key, id));
        self.match_cache.clear();
        self.feeds.insert(
            (key, id),
            Feed::new(FeedKind::Subscription { pattern }, self.policy),
        );
    }

    /// `spec/patterns.md` §5.
    fn serve_events(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId, head: &RequestHead) {
        let Some(stream) = meta(head, patterns::STREAM).map(str::to_owned) else {
            return self.status(ctx, key, id, Status::BAD_REQUEST, "no :stream");
        };
        // Without :after, the stream starts with the next event.
        let mut after = meta_u64(head, patterns::AFTER);
        let (newest, epoch) = self.hub.position(&stream);
        let other_epoch = meta_u64(head, patterns::EPOCH).is_some_and(|e| e != epoch);
        if after.is_some_and(|requested| other_epoch || requested > newest) {
            // The client's ids come from another instance of this log (it
            // restarted with the server): start it over from the oldest kept.
            after = Some(0);
        }
        let (entries, last) = match after {
            Some(after) => match self.hub.replay(&stream, after, usize::MAX) {
                Ok(replay) => replay,
                Err(gap) => {
                    let message = format!("events before {} are no longer kept", gap.oldest);
                    return self.status(ctx, key, id, Status::GONE, message);
                }
            },
            None => (Vec::new(), newest),
        };
        let epoch = epoch.to_string();
        let pairs = [
            (patterns::RETRY_MS, &b"1000"[..]),
            (patterns::EPOCH, epoch.as_bytes()),
        ];
        let head = ResponseHead {
            status: Status::OK,
            metadata: Metadata::from_pairs(pairs).unwrap_or_default(),
        };
        self.write_response(ctx, key, id, head, Vec::new(), false);
        let kind = FeedKind::Events { stream };
        self.start_entry_feed(ctx, key, id, kind, after.unwrap_or(last), entries);
    }

    /// Starts a feed of log entries, its head already written: registers it
    /// where new entries will find it, then replays `entries` (spec
    /// patterns §5.1, §6.3).
    fn start_entry_feed(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        kind: FeedKind,
        last_id: u64,
        entries: Vec<Entry>,
    ) {
        match &kind {
            FeedKind::Events { stream } => self
                .event_watchers
                .entry(stream.clone())
                .or_default()
                .push((key, id)),
            FeedKind::Session { token } => self
                .session_watchers
                .entry(token.clone())
                .or_default()
                .push((key, id)),
            FeedKind::Subscription { .. } => {}
        }
        let mut feed = Feed::new(kind, self.policy);
        feed.last_id = last_id;
        self.feeds.insert((key, id), feed);
        for entry in entries {
            self.deliver_entry(ctx, key, id, &entry);
        }
    }

    /// `spec/patterns.md` §6.3.
    fn serve_session_attach(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        head: &RequestHead,
    ) {
        let Some(token) = meta(head, patterns::SESSION).map(str::to_owned) else {
            return self.status(ctx, key, id, Status::BAD_REQUEST, "no :session");
        };
        let after = meta_u64(head, patterns::AFTER).unwrap_or(0);
        let mut replay = None;
        let found = self.hub.sessions.with(&token, ctx.now, &mut |session| {
            replay = Some(session.feed.after(after, usize::MAX));
        });
        let entries = match (found, replay) {
            (Some(()), Some(Ok(entries))) => entries,
            (Some(()), Some(Err(gap))) => {
                let message = format!("session events before {} are no longer kept", gap.oldest);
                return self.status(ctx, key, id, Status::GONE, message);
            }
            _ => return self.status(ctx, key, id, Status::GONE, "unknown or expired session"),
        };
        self.write_response(
            ctx,
            key,
            id,
            ResponseHead::new(Status::OK),
            Vec::new(),
            false,
        );
        self.start_entry_feed(ctx, key, id, FeedKind::Session { token }, after, entries);
    }

    /// `spec/patterns.md` §4.2.
    fn serve_long_poll(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        head: &RequestHead,
    ) {
        let Some(stream) = meta(head, patterns::STREAM).map(str::to_owned) else {
            return self.status(ctx, key, id, Status::BAD_REQUEST, "no :stream");
        };
        let after = meta_u64(head, patterns::AFTER).unwrap_or(0);
        let wait = meta_u64(head, patterns::WAIT_MS)
            .map_or(Duration::from_secs(30), Duration::from_millis);
        match self.hub.replay(&stream, after, MAX_BATCH) {
            Err(gap) => {
                let message = format!("entries before {} are no longer kept", gap.oldest);
                self.status(ctx, key, id, Status::GONE, message);
            }
            Ok((entries, _)) if !entries.is_empty() => {
                self.answer_poll(ctx, key, id, after, entries)
            }
            Ok(_) => {
                self.next_timer += 1;
                let timer = POLL_TIMER | self.next_timer;
                ctx.set_timer(ctx.now + wait.min(MAX_WAIT), timer);
                self.polls.entry(stream).or_default().push(Parked {
                    key,
                    id,
                    after,
                    timer,
                });
            }
        }
    }

    fn answer_poll(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        after: u64,
        entries: Vec<Entry>,
    ) {
        let cursor = entries.last().map_or(after, |e| e.id).to_string();
        let status = if entries.is_empty() {
            Status::NOT_MODIFIED
        } else {
            Status::OK
        };
        let head = ResponseHead {
            status,
            metadata: Metadata::from_pairs([(patterns::CURSOR, cursor.as_bytes())])
                .unwrap_or_default(),
        };
        let body = entries.iter().map(event_message).collect();
        self.write_response(ctx, key, id, head, body, true);
    }

    fn deliver_entry(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId, entry: &Entry) {
        let Some(feed) = self.feeds.get_mut(&(key, id)) else {
            return;
        };
        if entry.id <= feed.last_id {
            return; // already replayed
        }
        feed.last_id = entry.id;
        self.deliver(ctx, key, id, event_message(entry));
    }

    fn deliver(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId, message: Bytes) {
        let (Some(conn), Some(feed)) = (ctx.conn(key), self.feeds.get_mut(&(key, id))) else {
            return;
        };
        if feed.deliver(conn, id, message).is_err() {
            Feed::disconnect(conn, id);
            self.remove_feed(key, id);
        }
    }

    fn remove_feed(&mut self, key: ConnKey, id: StreamId) {
        let Some(feed) = self.feeds.remove(&(key, id)) else {
            return;
        };
        let keep = |w: &(ConnKey, StreamId)| *w != (key, id);
        match feed.kind {
            FeedKind::Subscription { .. } => {
                self.subscriptions.retain(|(_, k, i)| (*k, *i) != (key, id));
                self.match_cache.clear();
            }
            FeedKind::Events { stream } => {
                if let Some(watchers) = self.event_watchers.get_mut(&stream) {
                    watchers.retain(keep);
                }
            }
            FeedKind::Session { token } => {
                if let Some(watchers) = self.session_watchers.get_mut(&token) {
                    watchers.retain(keep);
                }
            }
        }
    }

    /// Ends every feed (END_STREAM: clients resubscribe elsewhere) and
    /// answers every parked long poll, so that a graceful shutdown is not held
    /// up by streams that never end by themselves.
    fn end_feeds_and_polls(&mut self, ctx: &mut Ctx<'_>) {
        let feeds: Vec<(ConnKey, StreamId)> = self.feeds.keys().copied().collect();
        for (key, id) in feeds {
            if let Some(conn) = ctx.conn(key) {
                let _ = conn.finish(id);
            }
            self.remove_feed(key, id);
        }
        let polls: Vec<Parked> = self.polls.drain().flat_map(|(_, parked)| parked).collect();
        for poll in polls {
            self.answer_poll(ctx, poll.key, poll.id, poll.after, Vec::new());
        }
    }

    fn forget_stream(&mut self, key: ConnKey, id: StreamId) {
        self.pending.remove(&(key, id));
        self.outbox.forget(key, id);
        self.remove_feed(key, id);
        for parked in self.polls.values_mut() {
            parked.retain(|p| (p.key, p.id) != (key, id));
        }
    }
}

/// The body of a `$publish.stream` request: every message is a Publication,
/// published as it arrives; the response at the end counts them and the
/// invalid ones (`spec/patterns.md` §3.4).
struct PublishStream {
    hub: Arc<Hub>,
    reader: mux_runtime::MessageReader,
    published: u64,
    rejected: u64,
}

/// The largest publication on a publishing stream: a 255-byte topic and a
/// payload of up to 1 MiB.
const MAX_PUBLICATION: usize = (1 << 20) + 258;

impl PublishStream {
    fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            reader: mux_runtime::MessageReader::default(),
            published: 0,
            rejected: 0,
        }
    }
}

impl BodySink for PublishStream {
    fn data(&mut self, bytes: &Bytes, end_message: bool) {
        let chunk = mux_core::Chunk {
            bytes: bytes.clone(),
            end_message,
            fin: false,
        };
        let message = match self.reader.push(chunk, MAX_PUBLICATION) {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(_) => {
                self.reader = mux_runtime::MessageReader::default();
                self.rejected += 1;
                return;
            }
        };
        match FeedMessage::decode(message) {
            Ok(FeedMessage::Publication { topic, payload })
                if patterns::check_topic(&topic).is_ok() =>
            {
                self.hub.broker.publish(&topic, &payload);
                self.published += 1;
            }
            _ => self.rejected += 1,
        }
    }

    fn end(self: Box<Self>) -> HandlerResult {
        Ok(Response::ok(format!(
            "{} published, {} rejected",
            self.published, self.rejected
        )))
    }
}

/// Runs a handler, turning a panic into a 500 so that one bad handler does
/// not take the loop (and every connection on it) down.
pub(crate) fn run(
    handler: &(dyn Fn(Request) -> HandlerResult + Send + Sync),
    request: Request,
) -> Response {
    match catch_unwind(AssertUnwindSafe(|| handler(request))) {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => err.into(),
        Err(_) => HandlerError::new(Status::INTERNAL, "handler panicked").into(),
    }
}

impl App for ServerApp {
    type Command = Command;

    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        ctx.set_timer(ctx.now + SWEEP_EVERY, SWEEP_TIMER);
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, event: Event) {
        match event {
            Event::StreamOpened {
                id,
                metadata,
                end_stream,
            } => self.on_opened(ctx, key, id, &metadata, end_stream),
            Event::Readable { id } => self.on_readable(ctx, key, id),
            Event::Writable { id } => {
                if let Some(conn) = ctx.conn(key) {
                    let _ = self.outbox.resume(conn, key, id);
                    if let Some(feed) = self.feeds.get_mut(&(key, id)) {
                        feed.flush(conn, id);
                    }
                }
            }
            Event::StreamReset { id, .. } => self.forget_stream(key, id),
            Event::Connected if self.shutting_down => {
                ctx.close(key, ErrorCode::NO_ERROR, "shutting down")
            }
            _ => {}
        }
    }

    fn on_closed(&mut self, _ctx: &mut Ctx<'_>, key: ConnKey, error: Option<LoopError>) {
        if let Some(error) = error {
            log::debug!("connection closed: {error}");
        }
        self.pending.retain(|(k, _), _| *k != key);
        self.outbox.forget_conn(key);
        let feeds: Vec<StreamId> = self
            .feeds
            .keys()
            .filter(|(k, _)| *k == key)
            .map(|(_, id)| *id)
            .collect();
        for id in feeds {
            self.remove_feed(key, id);
        }
        for parked in self.polls.values_mut() {
            parked.retain(|p| p.key != key);
        }
    }

    fn on_command(&mut self, ctx: &mut Ctx<'_>, command: Command) {
        match command {
            Command::Done { key, id, result } => {
                let response = result.unwrap_or_else(Response::from);
                self.respond(ctx, key, id, response);
            }
            Command::Publication { topic, payload } => {
                let missed = self.missed.swap(0, std::sync::atomic::Ordering::Relaxed);
                if missed > 0 {
                    // This loop's queue overflowed: any subscription may have
                    // missed up to `missed` messages; say so (spec patterns §3.5).
                    for feed in self.feeds.values_mut() {
                        if matches!(feed.kind, FeedKind::Subscription { .. }) {
                            feed.add_lost(missed);
                        }
                    }
                }
                if self.match_cache.len() >= MATCH_CACHE_TOPICS
                    && !self.match_cache.contains_key(&topic)
                {
                    self.match_cache.clear();
                }
                let subscriptions = &self.subscriptions;
                let targets = self
                    .match_cache
                    .entry(Arc::clone(&topic))
                    .or_insert_with(|| {
                        subscriptions
                            .iter()
                            .filter(|(pattern, _, _)| patterns::matches(pattern, &topic))
                            .map(|(_, key, id)| (*key, *id))
                            .collect()
                    })
                    .clone();
                if targets.is_empty() {
                    return;
                }
                let message = FeedMessage::Publication {
                    topic: topic.to_string(),
                    payload,
                }
                .encode();
                for (key, id) in targets {
                    self.deliver(ctx, key, id, message.clone());
                }
            }
            Command::Event { stream, entry } => {
                let watchers = self
                    .event_watchers
                    .get(&*stream)
                    .cloned()
                    .unwrap_or_default();
                for (key, id) in watchers {
                    self.deliver_entry(ctx, key, id, &entry);
                }
                if let Some(parked) = self.polls.remove(&*stream) {
                    for poll in parked {
                        if entry.id > poll.after {
                            let entries = self
                                .hub
                                .replay(&stream, poll.after, MAX_BATCH)
                                .map(|r| r.0)
                                .unwrap_or_default();
                            self.answer_poll(ctx, poll.key, poll.id, poll.after, entries);
                        } else {
                            self.polls.entry(stream.to_string()).or_default().push(poll);
                        }
                    }
                }
            }
            Command::SessionEvent { token, entry } => {
                let watchers = self
                    .session_watchers
                    .get(&*token)
                    .cloned()
                    .unwrap_or_default();
                for (key, id) in watchers {
                    self.deliver_entry(ctx, key, id, &entry);
                }
            }
            Command::PushAll { metadata, body } => {
                for key in ctx.keys() {
                    let Some(conn) = ctx.conn(key) else {
                        continue;
                    };
                    if !conn.is_established() {
                        continue; // mid-handshake: the push is for connected clients
                    }
                    if let Ok(pushed) = conn.push(None, metadata.clone(), body.is_empty()) {
                        if !body.is_empty() {
                            let piece = Piece {
                                bytes: body.clone(),
                                end_message: true,
                                end_stream: true,
                            };
                            let _ = self.outbox.write(conn, key, pushed, piece);
                        }
                    }
                }
            }
            Command::Shutdown { deadline } => {
                self.shutting_down = true;
                ctx.stop_accepting();
                self.end_feeds_and_polls(ctx);
                ctx.close_all(ErrorCode::NO_ERROR, "shutting down");
                ctx.set_timer(deadline, SHUTDOWN_TIMER);
            }
            Command::Abort => {
                self.shutting_down = true;
                ctx.stop_accepting();
                ctx.close_all(ErrorCode::CANCEL, "server stopped");
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, token: u64) {
        if token == SHUTDOWN_TIMER {
            ctx.close_all(ErrorCode::CANCEL, "shutdown deadline");
            return;
        }
        if token == SWEEP_TIMER {
            self.hub.sessions.sweep(ctx.now);
            if !self.shutting_down {
                ctx.set_timer(ctx.now + SWEEP_EVERY, SWEEP_TIMER);
            }
            return;
        }
        if token & POLL_TIMER != 0 {
            let mut expired = None;
            for parked in self.polls.values_mut() {
                if let Some(pos) = parked.iter().position(|p| p.timer == token) {
                    expired = Some(parked.remove(pos));
                    break;
                }
            }
            if let Some(poll) = expired {
                self.answer_poll(ctx, poll.key, poll.id, poll.after, Vec::new());
            }
        }
    }

    fn is_done(&self, ctx: &Ctx<'_>) -> bool {
        self.shutting_down && ctx.connection_count() == 0
    }
}
