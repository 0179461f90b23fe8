//! The server's logic on each loop thread: turns streams into requests,
//! runs inline handlers on the spot and blocking ones on the worker pool,
//! writes responses, and shuts down gracefully.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use crossbeam_channel::{Sender, TrySendError};
use mux_core::rpc::{RequestHead, ResponseHead, Status};
use mux_core::{ErrorCode, Event, StreamId};
use mux_runtime::{App, ConnKey, Ctx, LoopError, LoopHandle, Outbox, Piece};

use crate::request::{BodySink, HandlerError, HandlerResult, Request, Response};
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
    /// Stop accepting, close every connection gracefully; abort at `deadline`.
    Shutdown { deadline: Instant },
    /// Stop at once.
    Abort,
}

/// Timer token of the shutdown deadline.
const SHUTDOWN_TIMER: u64 = 1;

/// A request being received.
#[derive(Debug)]
struct Pending {
    head: RequestHead,
    body: BytesMut,
    started: Instant,
    /// The body grew past the limit: the 413 was sent, the rest is discarded.
    discarding: bool,
    /// A streaming route's sink: the body goes there instead of `body`.
    sink: Option<Box<dyn BodySink>>,
}

impl std::fmt::Debug for dyn BodySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodySink")
    }
}

/// Per-loop server state.
pub(crate) struct ServerApp {
    pub(crate) routes: Arc<HashMap<String, Handler>>,
    pub(crate) jobs: Sender<Job>,
    pub(crate) handle: Option<LoopHandle<Command>>,
    pub(crate) max_request_body: usize,
    pending: HashMap<(ConnKey, StreamId), Pending>,
    outbox: Outbox,
    shutting_down: bool,
}

impl std::fmt::Debug for ServerApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerApp")
            .field("routes", &self.routes.len())
            .field("pending", &self.pending.len())
            .field("shutting_down", &self.shutting_down)
            .finish()
    }
}

impl ServerApp {
    pub(crate) fn new(
        routes: Arc<HashMap<String, Handler>>,
        jobs: Sender<Job>,
        max_request_body: usize,
    ) -> Self {
        Self {
            routes,
            jobs,
            handle: None,
            max_request_body,
            pending: HashMap::new(),
            outbox: Outbox::default(),
            shutting_down: false,
        }
    }

    fn respond(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId, response: Response) {
        let Some(conn) = ctx.conn(key) else {
            return;
        };
        let head = ResponseHead {
            status: response.status,
            metadata: response.metadata,
        };
        let pieces = [
            Piece {
                bytes: head.encode(),
                end_message: true,
                end_stream: false,
            },
            Piece {
                bytes: response.body,
                end_message: true,
                end_stream: true,
            },
        ];
        for piece in pieces {
            // The stream may be gone (the client cancelled): nothing to answer.
            if self.outbox.write(conn, key, id, piece).is_err() {
                self.outbox.forget(key, id);
                return;
            }
        }
    }

    fn on_opened(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        metadata: &mux_core::frame::Metadata,
        end_stream: bool,
    ) {
        let head = match RequestHead::decode(metadata) {
            Ok(head) => head,
            Err(err) => {
                return self.respond(
                    ctx,
                    key,
                    id,
                    Response::with_status(Status::BAD_REQUEST, err.to_string()),
                );
            }
        };
        let sink = match self.routes.get(&head.route) {
            Some(Handler::Streaming(open)) => {
                let request = Request::new(
                    head.route.clone(),
                    head.metadata.clone(),
                    bytes::Bytes::new(),
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
            let Some(pending) = self.pending.get_mut(&(key, id)) else {
                return;
            };
            let Some(conn) = ctx.conn(key) else {
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
            let message = format!("request body above {limit} bytes");
            self.respond(
                ctx,
                key,
                id,
                Response::with_status(Status::TOO_LARGE, message),
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

    /// The request is complete: route it.
    fn dispatch(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId) {
        let Some(pending) = self.pending.remove(&(key, id)) else {
            return;
        };
        let deadline = pending.head.deadline.map(|left| pending.started + left);
        if deadline.is_some_and(|d| d <= ctx.now) {
            return self.respond(
                ctx,
                key,
                id,
                Response::with_status(Status::DEADLINE_EXCEEDED, "deadline passed"),
            );
        }
        if let Some(sink) = pending.sink {
            let response = match catch_unwind(AssertUnwindSafe(|| sink.end())) {
                Ok(result) => result.unwrap_or_else(Response::from),
                Err(_) => HandlerError::new(Status::INTERNAL, "handler panicked").into(),
            };
            return self.respond(ctx, key, id, response);
        }
        let request = Request::new(
            pending.head.route,
            pending.head.metadata,
            pending.body.freeze(),
            deadline,
        );
        match self.routes.get(request.route()).cloned() {
            None => {
                let message = format!("no route {:?}", request.route());
                self.respond(
                    ctx,
                    key,
                    id,
                    Response::with_status(Status::NOT_FOUND, message),
                );
            }
            Some(Handler::Streaming(_)) => {} // handled by its sink above
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
                match self.jobs.try_send(job) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                        let response =
                            Response::with_status(Status::UNAVAILABLE, "worker queue full");
                        self.respond(ctx, key, id, response);
                    }
                }
            }
        }
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
                }
            }
            Event::StreamReset { id, .. } => {
                self.pending.remove(&(key, id));
                self.outbox.forget(key, id);
            }
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
    }

    fn on_command(&mut self, ctx: &mut Ctx<'_>, command: Command) {
        match command {
            Command::Done { key, id, result } => {
                let response = result.unwrap_or_else(Response::from);
                self.respond(ctx, key, id, response);
            }
            Command::Shutdown { deadline } => {
                self.shutting_down = true;
                ctx.stop_accepting();
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
        }
    }

    fn is_done(&self, ctx: &Ctx<'_>) -> bool {
        self.shutting_down && ctx.connection_count() == 0
    }
}
