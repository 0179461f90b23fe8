//! The server's logic on each loop thread: assembles each stream into a
//! request (`spec/patterns.md` §1), then dispatches it: to a reserved route
//! ([`crate::reserved`]), to an inline handler on the spot, to a blocking one
//! on the worker pool, or to a streaming route's sink as the body arrives.
//! Also where commands, timers and shutdown reach the loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Sender;
use foldhash::HashMap;
use mux_core::frame::Metadata;
use mux_core::patterns;
use mux_core::rpc::{BodyCheck, RequestHead, Status};
use mux_core::{ErrorCode, Event, StreamId};
use mux_runtime::{App, BodyBuffer, ConnKey, Ctx, LoopError, LoopHandle, PlainKey, StreamMap};

use crate::auth::Identity;
use crate::budget::Budget;
use crate::command::Command;
use crate::command::ReplyTo;
use crate::gate::{Gate, Security, Verdict};
use crate::handler::{end_sink, run, run_sink, Handler};
use crate::http::{is_http_timer, HttpCall, HttpEdge};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::replies::Replies;
use crate::request::{BodySink, Request, Response};
use crate::reserved::polls_timer;
use crate::reserved::{FeedLimits, PendingPublication, PublishStream, Reserved, ReservedCall};
use crate::server::ServerHandle;
use crate::tasks::{is_deadline_timer, Polled, Tasks, DEFERRED_TIMER};
use crate::workers::Job;

/// App timer tokens besides the long polls' (`reserved::polls_timer`).
const SHUTDOWN_TIMER: u64 = 1;
const SWEEP_TIMER: u64 = 2;
/// Adds connections' counters to the metrics, while there are connections.
const METRICS_TIMER: u64 = 4;

/// How often connections' counters reach the metrics.
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// How often expired sessions are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A request being received.
struct Pending {
    head: RequestHead,
    body: BodyBuffer,
    started: Instant,
    /// The body grew past the limit (413) or its declared length (400): the
    /// answer was sent, the rest is discarded.
    discarding: bool,
    /// The body against its declared length (`spec/patterns.md` §1.8).
    check: BodyCheck,
    /// A streaming route's sink: the body goes there instead of `body`.
    sink: Option<Box<dyn BodySink>>,
    /// Who sent it (the gate let it through as this identity).
    identity: Arc<Identity>,
}

/// Per-loop server state.
pub(crate) struct ServerApp {
    routes: Arc<HashMap<String, Handler>>,
    jobs: Option<Sender<Job>>,
    /// Blocking jobs handed to the pool, by stream: cancelled when the
    /// stream or its connection ends first.
    queued_jobs: StreamMap<Arc<AtomicBool>>,
    pub(crate) handle: Option<LoopHandle<Command>>,
    /// Async handlers' futures in progress.
    tasks: Tasks,
    max_request_body: usize,
    pending: StreamMap<Pending>,
    replies: Replies,
    reserved: Reserved,
    budget: Budget,
    gate: Gate,
    shutting_down: bool,
    /// Publications the hub could not queue for this loop (it was full):
    /// announced to every subscription as possibly lost.
    pub(crate) missed: Arc<AtomicU64>,
    /// Publications served as commands, delivered to this loop's
    /// subscriptions once the commands of the pass are served.
    publications: Vec<PendingPublication>,
    /// The server, as handlers see it through their requests.
    pub(crate) server: Option<Arc<ServerHandle>>,
    /// The server's counters (shared by every loop).
    pub(crate) metrics: Arc<Metrics>,
    metrics_ticking: bool,
    /// The web edge, when the server has one, and its listener until start.
    pub(crate) http: Option<HttpEdge>,
    pub(crate) http_listener: Option<mio::net::TcpListener>,
    /// `serve_http` is running (it is not re-entered).
    serving_http: bool,
}

impl std::fmt::Debug for ServerApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerApp")
            .field("routes", &self.routes.len())
            .field("pending", &self.pending.len())
            .field("feeds", &self.reserved.feed_count())
            .field("shutting_down", &self.shutting_down)
            .finish()
    }
}

impl ServerApp {
    pub(crate) fn new(
        routes: Arc<HashMap<String, Handler>>,
        jobs: Option<Sender<Job>>,
        hub: Arc<Hub>,
        max_request_body: usize,
        feed_limits: FeedLimits,
        budget: Budget,
        security: Arc<Security>,
    ) -> Self {
        Self {
            routes,
            jobs,
            queued_jobs: StreamMap::default(),
            handle: None,
            tasks: Tasks::default(),
            max_request_body,
            pending: StreamMap::default(),
            replies: Replies::default(),
            reserved: Reserved::new(hub, feed_limits),
            budget,
            gate: Gate::new(security),
            shutting_down: false,
            missed: Arc::default(),
            publications: Vec::new(),
            server: None,
            metrics: Arc::new(Metrics::new(None, None)),
            metrics_ticking: false,
            http: None,
            http_listener: None,
            serving_http: false,
        }
    }

    fn hub(&self) -> &Arc<Hub> {
        self.reserved.hub()
    }

    fn on_opened(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        metadata: &Metadata,
        end_stream: bool,
    ) {
        let (unsent, unsent_total) = (
            self.replies.pending_bytes(key),
            self.replies.total_pending_bytes(),
        );
        if !self.budget.admits(key, unsent, unsent_total) {
            // Spec §8.1: not processed; the client may retry it.
            log::debug!("stream refused: the memory budget is reached");
            if let Some(conn) = ctx.conn(key) {
                let _ = conn.reset(id, ErrorCode::REFUSED_STREAM);
            }
            return;
        }
        let head = match RequestHead::decode(metadata) {
            Ok(head) => head,
            Err(err) => {
                let message = err.to_string();
                return self
                    .replies
                    .status(ctx, key, id, Status::BAD_REQUEST, message);
            }
        };
        self.replies.note_request(key, id, &head.route, ctx.now);
        let hub = Arc::clone(self.hub());
        let identity = match self.gate.admit(ctx, key, &head, &hub) {
            Verdict::Pass(identity) => identity,
            Verdict::Answer(response) => return self.respond(ctx, key, id, response),
            Verdict::AnswerAndClose(response) => {
                self.respond(ctx, key, id, response);
                let reason = "too many failed authentications";
                return ctx.close(key, ErrorCode::ENHANCE_YOUR_CALM, reason);
            }
        };
        let sink = match self.routes.get(&head.route) {
            _ if head.route == patterns::PUBLISH_STREAM => {
                let hub = Arc::clone(self.hub());
                let permit = self.gate.publish_permit(&identity);
                Some(Box::new(PublishStream::new(hub, permit)) as Box<dyn BodySink>)
            }
            Some(Handler::Streaming(open)) => {
                let request = Request::new(
                    head.route.clone(),
                    head.metadata.clone(),
                    Bytes::new(),
                    None,
                    None,
                    Arc::clone(&identity),
                    self.server.clone(),
                );
                Some(open(&request))
            }
            _ => None,
        };
        let pending = Pending {
            check: BodyCheck::new(head.length),
            head,
            body: BodyBuffer::default(),
            started: ctx.now,
            discarding: false,
            sink,
            identity,
        };
        self.pending.insert(key, id, pending);
        if end_stream {
            self.dispatch(ctx, key, id);
        }
    }

    fn on_readable(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId) {
        let limit = self.max_request_body;
        let mut finished = false;
        let mut too_large = false;
        let mut mismatch = None;
        let mut room = self.budget.room(key, self.replies.pending_bytes(key));
        {
            let Some(conn) = ctx.conn(key) else {
                return;
            };
            let Some(pending) = self.pending.get_mut(key, id) else {
                // A feed: the client's direction carries nothing; its end unsubscribes.
                while let Ok(Some(chunk)) = conn.read(id, usize::MAX) {
                    finished |= chunk.fin;
                }
                if finished && self.reserved.has_feed(key, id) {
                    let _ = conn.finish(id);
                    self.reserved.remove_feed(key, id);
                }
                return;
            };
            // A sink consumes as it goes; a whole body is held, within the
            // connection's room: past it the rest stays unread and uncredited.
            let holds = pending.sink.is_none() && !pending.discarding;
            loop {
                if holds && room == 0 {
                    self.budget.pause(key, id);
                    break;
                }
                let max = if holds { room } else { usize::MAX };
                let Ok(Some(chunk)) = conn.read(id, max) else {
                    break;
                };
                finished |= chunk.fin;
                if pending.discarding {
                    continue;
                }
                if let Err(err) = pending.check.add(chunk.bytes.len()) {
                    pending.discarding = true;
                    pending.sink = None;
                    self.budget.release_body(key, pending.body.len());
                    pending.body.take();
                    mismatch = Some(err);
                    continue;
                }
                if let Some(sink) = pending.sink.as_mut() {
                    sink.data(&chunk.bytes, chunk.end_message);
                } else if !pending.discarding {
                    let held = pending.body.len();
                    let len = chunk.bytes.len();
                    if pending.body.push(chunk.bytes, limit).is_ok() {
                        self.budget.add_body(key, len);
                        room = room.saturating_sub(len);
                    } else {
                        self.budget.release_body(key, held);
                        pending.discarding = true;
                        too_large = true;
                    }
                }
            }
        }
        if too_large {
            let message = format!("request body above {limit} bytes");
            self.replies
                .status(ctx, key, id, Status::TOO_LARGE, message);
        }
        if let Some(mismatch) = mismatch {
            self.replies
                .status(ctx, key, id, Status::BAD_REQUEST, mismatch.to_string());
        }
        if finished {
            let discarding = self.pending.get(key, id).is_some_and(|p| p.discarding);
            if discarding {
                self.take_pending(key, id);
            } else {
                self.dispatch(ctx, key, id);
            }
        }
    }

    /// Removes a request being received, releasing its body's budget.
    fn take_pending(&mut self, key: ConnKey, id: StreamId) -> Option<Pending> {
        let pending = self.pending.remove(key, id)?;
        self.budget.release_body(key, pending.body.len());
        Some(pending)
    }

    /// Memory of `key` was released: read the request bodies that stopped
    /// at its limit, as far as the room now allows.
    fn resume_paused(&mut self, ctx: &mut Ctx<'_>, key: ConnKey) {
        self.budget.publish(self.replies.total_pending_bytes());
        for id in self.budget.take_paused(key) {
            self.on_readable(ctx, key, id);
        }
    }

    /// The request is complete: serve a reserved route, or a handler.
    fn dispatch(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId) {
        let Some(mut pending) = self.take_pending(key, id) else {
            return;
        };
        if let Err(mismatch) = pending.check.finish() {
            // Spec patterns §1.8: a body cut short is never served as whole.
            log::debug!("stream {id}: {mismatch}");
            let message = mismatch.to_string();
            return self
                .replies
                .status(ctx, key, id, Status::BAD_REQUEST, message);
        }
        let deadline = pending
            .head
            .deadline
            .map(|left| mux_runtime::later_by(pending.started, left));
        if deadline.is_some_and(|d| d <= ctx.now) {
            let status = Status::DEADLINE_EXCEEDED;
            return self.replies.status(ctx, key, id, status, "deadline passed");
        }
        if let Some(sink) = pending.sink {
            let response = end_sink(sink);
            return self.respond(ctx, key, id, response);
        }
        let body = pending.body.take();
        if Reserved::serves(&pending.head.route) {
            let call = ReservedCall {
                ctx,
                replies: &mut self.replies,
                key,
                id,
                head: &pending.head,
                body,
                identity: Some(&pending.identity),
                handle: self.handle.as_ref(),
            };
            return self.reserved.serve(call);
        }
        let session = match crate::reserved::param(&pending.head, patterns::SESSION) {
            None => None,
            Some(token) => match self.hub().session(token, ctx.now) {
                Some(session) => Some(session),
                None => {
                    let response = crate::reserved::unknown_session();
                    return self.respond(ctx, key, id, response);
                }
            },
        };
        let request = Request::new(
            pending.head.route,
            pending.head.metadata,
            body,
            deadline,
            session,
            pending.identity,
            self.server.clone(),
        );
        self.handle(ctx, key, id, request);
    }

    /// Runs the route's handler on the loop or hands it to the worker pool.
    fn handle(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId, request: Request) {
        match self.routes.get(request.route()).cloned() {
            None => {
                let message = format!("no route {:?}", request.route());
                self.replies
                    .status(ctx, key, id, Status::NOT_FOUND, message);
            }
            Some(Handler::Streaming(_)) => {} // served by its sink
            Some(Handler::Async(handler)) => {
                let Some(handle) = self.handle.clone() else {
                    return;
                };
                let deadline = request.deadline();
                let to = ReplyTo::Stream(key, id);
                let (polled, timer) = self.tasks.start(&handle, &handler, to, request);
                if let (Some(token), Some(at)) = (timer, deadline) {
                    ctx.set_timer(at, token);
                }
                self.answer_task(ctx, polled);
            }
            Some(Handler::Inline(handler)) => {
                let response = run(&*handler, request);
                self.respond(ctx, key, id, response);
            }
            Some(Handler::Blocking(handler)) => {
                let Some(reply) = self.handle.clone() else {
                    return;
                };
                let cancelled = Arc::new(AtomicBool::new(false));
                let job = Job {
                    handler,
                    request,
                    to: ReplyTo::Stream(key, id),
                    reply,
                    cancelled: Arc::clone(&cancelled),
                };
                let queued = match &self.jobs {
                    Some(jobs) => jobs.try_send(job).is_ok(),
                    None => false,
                };
                if queued {
                    self.queued_jobs.insert(key, id, cancelled);
                } else {
                    // Full, or the pool is stopping.
                    let status = Status::UNAVAILABLE;
                    self.replies
                        .status(ctx, key, id, status, "worker queue full");
                }
            }
        }
    }

    /// Sends an async handler's answer, if it is ready; writes more of a
    /// streamed body that was woken.
    fn answer_task(&mut self, ctx: &mut Ctx<'_>, polled: Polled) {
        match polled {
            Polled::Answer(to, response) => self.answer(ctx, to, response),
            Polled::Body(ReplyTo::Stream(key, id)) => {
                if let Some(conn) = ctx.conn(key) {
                    self.replies.resume(conn, key, id);
                }
            }
            Polled::Body(ReplyTo::Http(key, seq)) => {
                if let Some(edge) = self.http.as_mut() {
                    edge.resume_body(ctx, key, seq);
                }
                self.serve_http(ctx);
            }
            Polled::Pending => {}
        }
    }

    /// Sends a handler's answer where it goes.
    fn answer(&mut self, ctx: &mut Ctx<'_>, to: ReplyTo, mut response: Response) {
        match to {
            ReplyTo::Stream(key, id) => self.respond(ctx, key, id, response),
            ReplyTo::Http(key, seq) => {
                if let (Some(handle), Some(edge)) = (self.handle.as_ref(), self.http.as_mut()) {
                    let tasks = &mut self.tasks;
                    response.attach_waker(|| tasks.body_waker(handle, to));
                    edge.answer(ctx, key, seq, response);
                }
                self.serve_http(ctx);
            }
        }
    }

    /// Runs what the web edge asked for (calls to routes) and drops the
    /// tasks of its finished or closed requests, until it asks for nothing.
    fn serve_http(&mut self, ctx: &mut Ctx<'_>) {
        // Answers made while serving come back here: the outer loop takes
        // what they leave, so that no chain of requests deepens the stack.
        if self.serving_http {
            return;
        }
        self.serving_http = true;
        self.serve_http_now(ctx);
        self.serving_http = false;
    }

    fn serve_http_now(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            let Some(edge) = self.http.as_mut() else {
                return;
            };
            if !edge.has_work() {
                return;
            }
            edge.advance_waiting(ctx);
            let (calls, closed) = (edge.take_calls(), edge.take_closed());
            for key in closed {
                self.tasks.forget_http(key);
            }
            for call in calls {
                self.run_http_call(ctx, call);
            }
        }
    }

    /// `POST /call/{route}` from the web edge: the route's handler, wherever
    /// it runs, answers as it would a mux request.
    fn run_http_call(&mut self, ctx: &mut Ctx<'_>, call: HttpCall) {
        let HttpCall { to, request } = call;
        if request.deadline().is_some_and(|d| d <= ctx.now) {
            let status = Status::DEADLINE_EXCEEDED;
            return self.answer(ctx, to, Response::with_status(status, "deadline passed"));
        }
        match self.routes.get(request.route()).cloned() {
            None => {
                let message = format!("no route {:?}", request.route());
                self.answer(ctx, to, Response::with_status(Status::NOT_FOUND, message));
            }
            Some(Handler::Inline(handler)) => {
                let response = run(&*handler, request);
                self.answer(ctx, to, response);
            }
            Some(Handler::Streaming(open)) => {
                let response = run_sink(&open, request);
                self.answer(ctx, to, response);
            }
            Some(Handler::Async(handler)) => {
                let Some(handle) = self.handle.clone() else {
                    return;
                };
                let deadline = request.deadline();
                let (polled, timer) = self.tasks.start(&handle, &handler, to, request);
                if let (Some(token), Some(at)) = (timer, deadline) {
                    ctx.set_timer(at, token);
                }
                self.answer_task(ctx, polled);
            }
            Some(Handler::Blocking(handler)) => {
                let Some(reply) = self.handle.clone() else {
                    return;
                };
                let job = Job {
                    handler,
                    request,
                    to,
                    reply,
                    cancelled: Arc::new(AtomicBool::new(false)),
                };
                let queued = self
                    .jobs
                    .as_ref()
                    .is_some_and(|jobs| jobs.try_send(job).is_ok());
                if !queued {
                    let status = Status::UNAVAILABLE;
                    self.answer(ctx, to, Response::with_status(status, "worker queue full"));
                }
            }
        }
    }

    /// Sends a response; a streamed body gets the waker that brings its
    /// producer's wakes back to this loop.
    fn respond(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId, mut response: Response) {
        if let Some(handle) = self.handle.as_ref() {
            let tasks = &mut self.tasks;
            response.attach_waker(|| tasks.body_waker(handle, ReplyTo::Stream(key, id)));
        }
        self.replies.respond(ctx, key, id, response);
    }

    fn forget_stream(&mut self, key: ConnKey, id: StreamId) {
        self.tasks.forget_stream(key, id);
        if let Some(cancelled) = self.queued_jobs.remove(key, id) {
            cancelled.store(true, Ordering::Relaxed);
        }
        self.take_pending(key, id);
        self.replies.forget(key, id);
        self.reserved.forget_stream(key, id);
    }
}

impl App for ServerApp {
    type Command = Command;

    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        ctx.set_timer(ctx.now + SWEEP_EVERY, SWEEP_TIMER);
        if let (Some(edge), Some(listener)) = (self.http.as_mut(), self.http_listener.take()) {
            edge.start(ctx, listener, self.server.clone());
        }
    }

    fn on_open(&mut self, ctx: &mut Ctx<'_>, _key: ConnKey) {
        self.metrics.connection_opened();
        if !self.metrics_ticking {
            self.metrics_ticking = true;
            ctx.set_timer(ctx.now + METRICS_EVERY, METRICS_TIMER);
        }
    }

    fn on_plain_accept(&mut self, ctx: &mut Ctx<'_>, listener: usize, key: PlainKey) {
        match self.http.as_mut() {
            Some(edge) if edge.owns_listener(listener) => edge.accept(ctx, key),
            _ => ctx.plain_close(key, true),
        }
        self.serve_http(ctx);
    }

    fn on_plain(&mut self, ctx: &mut Ctx<'_>, key: PlainKey, readable: bool, writable: bool) {
        match self.http.as_mut() {
            Some(edge) if edge.owns(key) => edge.on_socket(ctx, key, readable, writable),
            _ => ctx.plain_close(key, true),
        }
        self.serve_http(ctx);
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, event: Event) {
        match event {
            Event::StreamOpened {
                id,
                metadata,
                end_stream,
            } => self.on_opened(ctx, key, id, &metadata, end_stream),
            Event::Readable { id } => {
                self.on_readable(ctx, key, id);
                self.resume_paused(ctx, key);
            }
            Event::Writable { id } => {
                if let Some(conn) = ctx.conn(key) {
                    self.replies.resume(conn, key, id);
                }
                self.reserved.on_writable(ctx, key, id);
                self.resume_paused(ctx, key);
            }
            Event::StreamReset { id, .. } => {
                self.forget_stream(key, id);
                self.resume_paused(ctx, key);
            }
            Event::Connected if self.shutting_down => {
                ctx.close(key, ErrorCode::NO_ERROR, "shutting down")
            }
            _ => {}
        }
    }

    fn on_closed(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, error: Option<LoopError>) {
        if let Some(error) = error {
            log::debug!("connection closed: {error}");
        }
        self.metrics.connection_closed();
        if let Some(rest) = ctx.closed_stats(key) {
            self.metrics.add_stats(&rest);
        }
        for (_, cancelled) in self.queued_jobs.remove_conn(key) {
            cancelled.store(true, Ordering::Relaxed);
        }
        self.tasks.forget_conn(key);
        self.pending.remove_conn(key);
        self.replies.forget_conn(key);
        self.reserved.forget_conn(key);
        self.budget.forget_conn(key);
        self.gate.forget(key);
        self.budget.publish(self.replies.total_pending_bytes());
    }

    fn on_command(&mut self, ctx: &mut Ctx<'_>, command: Command) {
        match command {
            Command::Done { to, result } => {
                if let ReplyTo::Stream(key, id) = to {
                    self.queued_jobs.remove(key, id);
                }
                let response = result.unwrap_or_else(Response::from);
                self.answer(ctx, to, response);
            }
            Command::Poll(task) => {
                let polled = self.tasks.poll(task);
                self.answer_task(ctx, polled);
            }
            Command::Publication { topic, payload } => {
                let missed = self.missed.swap(0, Ordering::AcqRel);
                if let Some(edge) = self.http.as_mut() {
                    edge.on_publication(ctx, &topic, &payload, missed);
                }
                self.publications.push(PendingPublication {
                    topic,
                    payload,
                    missed,
                });
            }
            Command::Event { stream, entry } => {
                if let Some(edge) = self.http.as_mut() {
                    edge.on_event(ctx, &stream, &entry);
                }
                self.reserved
                    .on_event(ctx, &mut self.replies, stream, entry);
            }
            Command::SessionEvent { token, entry } => {
                self.reserved.on_session_event(ctx, token, entry);
            }
            Command::PushAll { metadata, body } => {
                self.reserved
                    .push_all(ctx, &mut self.replies, &metadata, &body);
            }
            Command::Shutdown { deadline } => {
                self.shutting_down = true;
                ctx.stop_accepting();
                self.reserved.end_all(ctx, &mut self.replies);
                if let Some(edge) = self.http.as_mut() {
                    edge.shut_down(ctx);
                }
                ctx.close_all(ErrorCode::NO_ERROR, "shutting down");
                ctx.set_timer(deadline, SHUTDOWN_TIMER);
            }
            Command::Abort => {
                self.shutting_down = true;
                if let Some(edge) = self.http.as_mut() {
                    edge.abort(ctx);
                }
                ctx.stop_accepting();
                ctx.close_all(ErrorCode::CANCEL, "server stopped");
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, token: u64) {
        match token {
            SHUTDOWN_TIMER => {
                if let Some(edge) = self.http.as_mut() {
                    edge.abort(ctx);
                }
                ctx.close_all(ErrorCode::CANCEL, "shutdown deadline");
            }
            METRICS_TIMER => {
                for key in ctx.keys() {
                    if let Some(counted) = ctx.conn(key).map(|conn| conn.take_stats()) {
                        self.metrics.add_stats(&counted);
                    }
                }
                self.metrics_ticking = ctx.connection_count() > 0;
                if self.metrics_ticking {
                    ctx.set_timer(ctx.now + METRICS_EVERY, METRICS_TIMER);
                }
            }
            _ if is_http_timer(token) => {
                if let Some(edge) = self.http.as_mut() {
                    edge.on_timer(ctx, token);
                }
                self.serve_http(ctx);
            }
            SWEEP_TIMER => {
                self.reserved.sweep_sessions(ctx.now);
                if !self.shutting_down {
                    ctx.set_timer(ctx.now + SWEEP_EVERY, SWEEP_TIMER);
                }
            }
            _ if polls_timer(token) => {
                self.reserved.on_poll_timer(ctx, &mut self.replies, token);
            }
            DEFERRED_TIMER => {
                for task in self.tasks.take_deferred() {
                    let polled = self.tasks.poll(task);
                    self.answer_task(ctx, polled);
                }
            }
            _ if is_deadline_timer(token) => {
                if let Some(to) = self.tasks.expire(token) {
                    let status = Status::DEADLINE_EXCEEDED;
                    self.answer(ctx, to, Response::with_status(status, "deadline passed"));
                }
            }
            _ => {}
        }
    }

    fn on_commands_served(&mut self, ctx: &mut Ctx<'_>) {
        self.reserved.on_publications(ctx, &mut self.publications);
    }

    fn on_pass_end(&mut self, ctx: &mut Ctx<'_>) {
        // (Publications are queued only while commands are served; none
        // waits here unless a later change queues them elsewhere.)
        self.reserved.on_publications(ctx, &mut self.publications);
        // Publications this loop missed and no later one announced (the
        // broker nudges the loop when it counts the first).
        let missed = self.missed.swap(0, Ordering::AcqRel);
        if missed > 0 {
            if let Some(edge) = self.http.as_mut() {
                edge.on_gap(ctx, missed);
            }
            self.reserved.on_gap(ctx, missed);
        }
        self.reserved.on_pass_end();
        if let Some(edge) = self.http.as_mut() {
            edge.on_pass_end(ctx);
        }
        // Whatever the pass left the edge to do (a poll answered by an
        // entry frees its connection for the next request, say).
        self.serve_http(ctx);
        // Wakes that found the command queue full: polled from a timer due
        // at once, so that their answers are flushed in that pass.
        if self.tasks.has_deferred() {
            ctx.set_timer(ctx.now, DEFERRED_TIMER);
        }
    }

    fn is_done(&self, ctx: &Ctx<'_>) -> bool {
        let http = self.http.as_ref().map_or(0, HttpEdge::connection_count);
        self.shutting_down && ctx.connection_count() == 0 && http == 0
    }
}
