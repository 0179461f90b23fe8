//! The client's logic on its loop thread: places calls on the pool's least
//! loaded connection (or queues them while none can take one), reads every
//! stream through one [`StreamReader`], enforces deadlines, cancels, retries
//! refused streams (spec §8.1), hands pushes to their handler (spec §10),
//! and shuts down gracefully.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use foldhash::HashMap;
use mux_core::rpc::Status;
use mux_core::{ErrorCode, Event, OpenError, StreamId, StreamState};
use mux_runtime::{App, ConnKey, Ctx, LoopError, Outbox, Piece, StreamMap};

use crate::call::CallRequest;
use crate::command::{Command, PendingCall, PushHandler, PushMessage};
use crate::error::CallError;
use crate::inbox::Inbox;
use crate::pool::{AfterFailure, Policy, Pool, TIMER_DEADLINE, TIMER_READY, TOKEN_MASK};
use crate::reader::StreamReader;
use crate::reply::Reply;

/// A call on the wire.
#[derive(Debug)]
struct Active {
    call: PendingCall,
    reader: StreamReader,
}

/// A push whose body is being received.
#[derive(Debug)]
struct IncomingPush {
    message: PushMessage,
    reader: StreamReader,
}

/// The client's state on its loop.
#[derive(Debug)]
pub(crate) struct ClientApp {
    pool: Pool,
    waiting: VecDeque<PendingCall>,
    active: StreamMap<Active>,
    by_id: HashMap<u64, (ConnKey, StreamId)>,
    outbox: Outbox,
    closing: bool,
    push_handler: Option<PushHandlerSlot>,
    pushes: StreamMap<IncomingPush>,
    /// Inboxes given messages this pass, woken at its end.
    wakes: Vec<Arc<Inbox>>,
    /// `$auth` requests awaiting their answer, one per new connection.
    authenticating: StreamMap<StreamReader>,
    /// Why the server refused a connection's credentials, for its close.
    refused: HashMap<ConnKey, String>,
}

/// The push handler, with a `Debug` that names it.
struct PushHandlerSlot(PushHandler);

impl std::fmt::Debug for PushHandlerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushHandler")
    }
}

impl ClientApp {
    /// Where the pool's name resolutions report back: this loop's queue.
    pub(crate) fn set_handle(&mut self, handle: mux_runtime::LoopHandle<Command>) {
        self.pool.set_handle(handle);
    }

    pub(crate) fn new(
        policy: Policy,
        addresses: mux_runtime::Addresses,
        push_handler: Option<PushHandler>,
    ) -> Self {
        Self {
            pool: Pool::new(policy, addresses),
            waiting: VecDeque::new(),
            active: StreamMap::default(),
            wakes: Vec::new(),
            authenticating: StreamMap::default(),
            refused: HashMap::default(),
            by_id: HashMap::default(),
            outbox: Outbox::default(),
            closing: false,
            push_handler: push_handler.map(PushHandlerSlot),
            pushes: StreamMap::default(),
        }
    }

    fn limit(&self) -> usize {
        self.pool.policy.max_response
    }

    /// Acts on what a failed connect means for the calls waiting.
    fn after_failure(&mut self, now: Instant, after: AfterFailure) {
        let limit = self.pool.policy.wait_for_ready;
        let (message, keep) = match after {
            AfterFailure::Wait => return,
            AfterFailure::FailWaiting(message) => (message, None),
            AfterFailure::FailUntimed(message) => (message, Some(limit)),
        };
        // Nothing can carry these calls now: fail them rather than hold
        // them, but for those that may still wait for the next attempts.
        let (kept, failed): (VecDeque<_>, VecDeque<_>) =
            self.waiting.drain(..).partition(|call| match keep {
                None => false,
                Some(limit) => call.deadline.is_some() || !call.waited(now, limit),
            });
        self.waiting = kept;
        for call in failed {
            let error = match (keep, call.deadline) {
                (Some(limit), None) => not_ready_within(limit, &message),
                _ => CallError::Connect(message.clone()),
            };
            call.fail(error);
        }
    }

    /// A call's wait-for-ready limit passed: it fails if it still waits
    /// while no connection is ready.
    fn on_ready_limit(&mut self, now: Instant, call: u64) {
        if self.pool.first_ready().is_some() || !self.pool.was_connected() {
            // It waits for a stream slot, not for a connection; or for the
            // first attempt, whose outcome decides (within its timeout).
            return;
        }
        let limit = self.pool.policy.wait_for_ready;
        let Some(pos) = self
            .waiting
            .iter()
            .position(|c| c.id == call && c.deadline.is_none() && c.waited(now, limit))
        else {
            return;
        };
        if let Some(call) = self.waiting.remove(pos) {
            let why = self.pool.last_failure_message().unwrap_or("not connected");
            call.fail(not_ready_within(limit, why));
        }
    }

    /// Places a call on the least loaded ready connection, or queues it.
    fn place(&mut self, ctx: &mut Ctx<'_>, call: PendingCall) {
        let metadata = match call.head.encode() {
            Ok(metadata) => metadata,
            Err(err) => return call.fail(CallError::Malformed(err.to_string())),
        };
        for key in self.pool.ready_by_load() {
            let Some(conn) = ctx.conn(key) else {
                continue;
            };
            let end_stream = call.body.is_empty() && call.upload.is_none();
            match conn.open(metadata.clone(), end_stream) {
                Ok(id) => {
                    let mut call = call;
                    if !call.body.is_empty() {
                        let piece = Piece {
                            bytes: call.body.clone(),
                            end_message: true,
                            end_stream: call.upload.is_none(),
                        };
                        let _ = self.outbox.write(conn, key, id, piece);
                    }
                    for piece in std::mem::take(&mut call.queued) {
                        let accepted = self.outbox.write(conn, key, id, piece).unwrap_or(0);
                        if let Some(credit) = &call.upload {
                            credit.release(accepted);
                        }
                    }
                    self.pool.call_started(key);
                    self.by_id.insert(call.id, (key, id));
                    let reader = match call.inbox() {
                        Some(inbox) => StreamReader::messages(inbox.clone()),
                        None => StreamReader::call(),
                    };
                    self.active.insert(key, id, Active { call, reader });
                    return;
                }
                Err(OpenError::MetadataTooLarge { len, max }) => {
                    let message =
                        format!("request metadata of {len} bytes above the server's {max}");
                    return call.fail(CallError::Malformed(message));
                }
                Err(_) => continue, // at its stream limit, or going away: try another
            }
        }
        if self.waiting.len() >= self.pool.policy.max_waiting {
            return call.fail(CallError::Busy);
        }
        let mut call = call;
        if call.waiting_since.is_none() {
            call.waiting_since = Some(ctx.now);
            if call.deadline.is_none() {
                let at = mux_runtime::later_by(ctx.now, self.pool.policy.wait_for_ready);
                ctx.set_timer(at, TIMER_READY | (call.id & TOKEN_MASK));
            }
        }
        self.waiting.push_back(call);
    }

    fn place_waiting(&mut self, ctx: &mut Ctx<'_>) {
        let count = self.waiting.len();
        for _ in 0..count {
            let Some(call) = self.waiting.pop_front() else {
                break;
            };
            let before = self.waiting.len();
            self.place(ctx, call);
            if self.waiting.len() > before {
                break; // no room anywhere: keep the order, wait for a stream to end
            }
        }
    }

    /// Removes an active call, returning it.
    fn take(&mut self, key: ConnKey, id: StreamId) -> Option<Active> {
        let active = self.active.remove(key, id)?;
        self.by_id.remove(&active.call.id);
        self.outbox.forget(key, id);
        self.pool.call_ended(key);
        Some(active)
    }

    fn finish(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        result: Result<Reply, CallError>,
    ) {
        if let Some(active) = self.take(key, id) {
            match result {
                Ok(reply) => active.call.succeed(reply),
                Err(err) => active.call.fail(err),
            }
        }
        self.place_waiting(ctx);
    }

    fn fail_and_reset(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId, error: CallError) {
        if let Some(conn) = ctx.conn(key) {
            let _ = conn.reset(id, ErrorCode::CANCEL);
        }
        self.finish(ctx, key, id, Err(error));
    }

    /// Sends `$auth` with `token` on a new connection (`spec/patterns.md` §8.1).
    fn authenticate(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, token: &str) {
        let head = CallRequest::auth(token).head(None, false);
        let opened = head
            .ok()
            .and_then(|head| head.encode().ok())
            .and_then(|metadata| ctx.conn(key)?.open(metadata, true).ok());
        match opened {
            Some(id) => {
                self.authenticating.insert(key, id, StreamReader::call());
            }
            None => self.refuse(ctx, key, "could not send $auth".into()),
        }
    }

    /// The server refused the connection's credentials: close it, and say why.
    fn refuse(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, why: String) {
        self.refused.insert(key, why);
        ctx.close(key, ErrorCode::CANCEL, "authentication refused");
    }

    /// Reads the answer to a connection's `$auth`.
    fn on_auth_readable(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId) {
        let limit = self.limit();
        let (Some(conn), Some(reader)) = (ctx.conn(key), self.authenticating.get_mut(key, id))
        else {
            return;
        };
        let Some(outcome) = reader.read(conn, id, limit, &mut self.wakes) else {
            return;
        };
        self.authenticating.remove(key, id);
        match outcome {
            Ok(reply) if reply.status == Status::OK => {
                self.pool.on_connected(key);
                self.place_waiting(ctx);
            }
            Ok(reply) => {
                let why = format!(
                    "authentication refused ({}): {}",
                    reply.status.0,
                    String::from_utf8_lossy(&reply.body)
                );
                self.refuse(ctx, key, why);
            }
            Err(err) => self.refuse(ctx, key, format!("authentication failed: {err}")),
        }
    }

    /// Reads a stream: a push, or a call's response.
    fn on_readable(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId) {
        if self.authenticating.contains(key, id) {
            return self.on_auth_readable(ctx, key, id);
        }
        let limit = self.limit();
        let Some(conn) = ctx.conn(key) else {
            return;
        };
        if let Some(push) = self.pushes.get_mut(key, id) {
            return match push.reader.read(conn, id, limit, &mut self.wakes) {
                None => {}
                Some(Ok(reply)) => {
                    if let (Some(mut push), Some(handler)) =
                        (self.pushes.remove(key, id), self.push_handler.as_ref())
                    {
                        push.message.body = reply.body;
                        (handler.0)(push.message);
                    }
                }
                Some(Err(_)) => {
                    let _ = conn.reset(id, ErrorCode::CANCEL);
                    self.pushes.remove(key, id);
                }
            };
        }
        let Some(active) = self.active.get_mut(key, id) else {
            return;
        };
        match active.reader.read(conn, id, limit, &mut self.wakes) {
            None => {}
            Some(Ok(reply)) => {
                // Answered before our body ended (an early 413, say): the
                // rest of it is not wanted, and the stream must not keep a
                // graceful close waiting.
                if matches!(
                    conn.stream_state(id),
                    Some(StreamState::Open | StreamState::HalfClosedRemote)
                ) {
                    let _ = conn.reset(id, ErrorCode::CANCEL);
                }
                self.finish(ctx, key, id, Ok(reply))
            }
            Some(Err(err)) => self.fail_and_reset(ctx, key, id, err),
        }
    }

    fn on_reset(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId, code: ErrorCode) {
        self.pushes.remove(key, id);
        let Some(mut active) = self.take(key, id) else {
            return;
        };
        // REFUSED_STREAM: the server did not process it (spec §8.1): safe to retry.
        let replayable = active.call.upload.is_none();
        if code == ErrorCode::REFUSED_STREAM
            && replayable
            && active.call.attempts + 1 < self.pool.policy.max_attempts
        {
            active.call.attempts += 1;
            self.place(ctx, active.call);
        } else {
            active.call.fail(CallError::Reset(code));
        }
        self.place_waiting(ctx);
    }

    fn on_push(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        message: PushMessage,
        end_stream: bool,
    ) {
        let Some(handler) = self.push_handler.as_ref() else {
            // Without a handler, pushes are refused (spec §10.4).
            if let Some(conn) = ctx.conn(key) {
                let _ = conn.reset(id, ErrorCode::CANCEL);
            }
            return;
        };
        if end_stream {
            (handler.0)(message);
        } else {
            let reader = StreamReader::push();
            self.pushes
                .insert(key, id, IncomingPush { message, reader });
        }
    }

    /// Data an upload handed over, for its stream or, before it opened, its queue.
    fn on_write(&mut self, ctx: &mut Ctx<'_>, call: u64, piece: Piece) {
        if let Some((key, id)) = self.by_id.get(&call).copied() {
            let credit = self.active.get(key, id).and_then(|a| a.call.upload.clone());
            if let Some(conn) = ctx.conn(key) {
                let accepted = self.outbox.write(conn, key, id, piece).unwrap_or(0);
                if let Some(credit) = credit {
                    credit.release(accepted);
                }
            }
        } else if let Some(waiting) = self.waiting.iter_mut().find(|c| c.id == call) {
            waiting.queued.push(piece);
        }
    }

    /// Ends a call with `error`, on the wire or still waiting.
    fn end_call(&mut self, ctx: &mut Ctx<'_>, call: u64, error: CallError) {
        if let Some((key, id)) = self.by_id.get(&call).copied() {
            self.fail_and_reset(ctx, key, id, error);
        } else if let Some(pos) = self.waiting.iter().position(|c| c.id == call) {
            if let Some(call) = self.waiting.remove(pos) {
                call.fail(error);
            }
        }
    }
}

impl App for ClientApp {
    type Command = Command;

    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        let after = self.pool.start(ctx);
        self.after_failure(ctx.now, after);
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, event: Event) {
        match event {
            Event::Connected => match self.pool.policy.token.clone() {
                Some(token) => self.authenticate(ctx, key, &token),
                None => {
                    self.pool.on_connected(key);
                    self.place_waiting(ctx);
                }
            },
            Event::Readable { id } => self.on_readable(ctx, key, id),
            Event::Writable { id } => {
                if let Some(conn) = ctx.conn(key) {
                    let accepted = self.outbox.resume(conn, key, id).unwrap_or(0);
                    if let Some(credit) = self
                        .active
                        .get(key, id)
                        .and_then(|a| a.call.upload.as_ref())
                    {
                        credit.release(accepted);
                    }
                }
            }
            Event::StreamReset { id, code } => self.on_reset(ctx, key, id, code),
            // New calls go elsewhere; the pool reconnects once it closes.
            Event::GoAway { .. } => self.pool.on_going_away(key),
            Event::PingAcked { rtt } => self.pool.ping_acked(key, rtt),
            Event::PushReceived {
                id,
                associated,
                metadata,
                end_stream,
            } => {
                let message = PushMessage {
                    associated,
                    metadata,
                    body: bytes::Bytes::new(),
                };
                self.on_push(ctx, key, id, message, end_stream);
            }
            _ => {}
        }
    }

    fn on_closed(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, error: Option<LoopError>) {
        let refused = self.refused.remove(&key);
        self.authenticating.remove_conn(key);
        let message = refused.clone().unwrap_or_else(|| {
            error
                .as_ref()
                .map_or_else(|| "connection closed".to_owned(), ToString::to_string)
        });
        let kind = match &error {
            _ if refused.is_some() => io::ErrorKind::PermissionDenied,
            Some(LoopError::Io(err)) => err.kind(),
            _ => io::ErrorKind::ConnectionAborted,
        };
        for (_, active) in self.active.remove_conn(key) {
            self.by_id.remove(&active.call.id);
            self.pool.call_ended(key);
            active.call.fail(CallError::ConnectionLost(message.clone()));
        }
        self.pushes.remove_conn(key);
        self.outbox.forget_conn(key);
        let closing = self.closing;
        let after = self.pool.on_closed(ctx, key, (kind, message), closing);
        self.after_failure(ctx.now, after);
    }

    fn on_command(&mut self, ctx: &mut Ctx<'_>, command: Command) {
        match command {
            Command::Write { call, piece } => self.on_write(ctx, call, piece),
            Command::Call(call) => {
                if self.closing {
                    return call.fail(CallError::Closed);
                }
                if let Some(deadline) = call.deadline {
                    ctx.set_timer(deadline, TIMER_DEADLINE | (call.id & TOKEN_MASK));
                }
                self.place(ctx, call);
            }
            Command::Resume(call) => {
                if let Some((key, id)) = self.by_id.get(&call).copied() {
                    self.on_readable(ctx, key, id);
                }
            }
            Command::Cancel(call) => self.end_call(ctx, call, CallError::Cancelled),
            Command::Resolved {
                slot,
                number,
                outcome,
            } => {
                let closing = self.closing;
                let after = self.pool.on_resolved(ctx, slot, number, outcome, closing);
                self.after_failure(ctx.now, after);
            }
            Command::Ping(waiter) => {
                let now = ctx.now;
                match self.pool.first_ready() {
                    Some(key) if ctx.conn(key).is_some_and(|conn| conn.ping(now)) => {
                        self.pool.ping_sent(key, waiter);
                    }
                    _ => waiter.complete(Err(CallError::Connect("no ready connection".into()))),
                }
            }
            Command::WhenReady(waiter) => self.pool.when_ready(waiter),
            Command::Shutdown => {
                self.closing = true;
                for call in self.waiting.drain(..) {
                    call.fail(CallError::Closed);
                }
                // Message streams (subscriptions, event streams, long polls,
                // session feeds) are ours to end: the server would hold them
                // open for as long as the drain lasts.
                let streams: Vec<_> = self
                    .active
                    .keys()
                    .filter(|&(key, id)| {
                        self.active
                            .get(key, id)
                            .is_some_and(|active| active.call.inbox().is_some())
                    })
                    .collect();
                for (key, id) in streams {
                    self.fail_and_reset(ctx, key, id, CallError::Closed);
                }
                ctx.close_all(ErrorCode::NO_ERROR, "client shutting down");
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, token: u64) {
        if Pool::owns_timer(token) {
            let after = self.pool.on_timer(ctx, token, self.closing);
            return self.after_failure(ctx.now, after);
        }
        match token & !TOKEN_MASK {
            TIMER_DEADLINE => self.end_call(ctx, token & TOKEN_MASK, CallError::DeadlineExceeded),
            TIMER_READY => self.on_ready_limit(ctx.now, token & TOKEN_MASK),
            _ => {}
        }
    }

    fn is_done(&self, ctx: &Ctx<'_>) -> bool {
        self.closing && ctx.connection_count() == 0
    }

    fn on_pass_end(&mut self, _ctx: &mut Ctx<'_>) {
        for inbox in self.wakes.drain(..) {
            inbox.wake();
        }
    }
}

/// A call without a deadline waited its wait-for-ready limit in vain.
fn not_ready_within(limit: std::time::Duration, why: &str) -> CallError {
    CallError::Connect(format!("no connection within {limit:?}: {why}"))
}
