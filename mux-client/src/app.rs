//! The client's logic on its loop thread: a pool of connections with
//! reconnect and backoff, calls placed on the least loaded one, deadlines,
//! cancellation, retries of refused streams, and graceful shutdown.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mux_core::rpc::{RequestHead, ResponseHead};
use mux_core::{ErrorCode, Event, OpenError, StreamId};
use mux_runtime::{App, Completer, ConnKey, Ctx, LoopError, MessageReader, Outbox, Piece};

use std::sync::Arc;

use crate::credit::Credit;
use crate::feed::FeedShared;
use crate::{CallError, Reply};

/// Where a call's outcome goes.
pub(crate) enum Sink {
    Completion(Completer<Result<Reply, CallError>>),
    Callback(Box<dyn FnOnce(Result<Reply, CallError>) + Send>),
    /// A message stream: the head and each message go to the reader as they come.
    Feed(Arc<FeedShared>),
}

impl Sink {
    fn deliver(self, result: Result<Reply, CallError>) {
        match self {
            Self::Completion(completer) => completer.complete(result),
            Self::Callback(callback) => callback(result),
            Self::Feed(shared) => shared.end(result.map(|_| ())),
        }
    }
}

/// A push as the application receives it (spec §10).
#[derive(Debug, Clone)]
pub struct PushMessage {
    /// The request it is tied to, or `None` for an unsolicited push.
    pub associated: Option<StreamId>,
    /// Its metadata.
    pub metadata: mux_core::frame::Metadata,
    /// Its body.
    pub body: Bytes,
}

/// Where pushes go.
pub(crate) type PushHandler = Arc<dyn Fn(PushMessage) + Send + Sync>;

/// A push whose body is being received.
struct IncomingPush {
    message: PushMessage,
    body: BytesMut,
}

/// A call not yet answered.
pub(crate) struct Call {
    pub(crate) id: u64,
    pub(crate) head: RequestHead,
    pub(crate) body: Bytes,
    pub(crate) deadline: Option<Instant>,
    pub(crate) sink: Sink,
    pub(crate) attempts: u32,
    /// A streaming upload: the body comes in `Command::Write`s, under this credit.
    pub(crate) upload: Option<Arc<Credit>>,
    /// Upload pieces that arrived before the stream was opened.
    pub(crate) queued: Vec<Piece>,
}

impl Sink {
    fn deliver_to(self, upload: Option<&Arc<Credit>>, result: Result<Reply, CallError>) {
        if let Some(credit) = upload {
            credit.fail(result.as_ref().err().cloned().unwrap_or(CallError::Closed));
        }
        self.deliver(result);
    }
}

impl Call {
    fn fail(self, error: CallError) {
        self.sink.deliver_to(self.upload.as_ref(), Err(error));
    }

    fn succeed(self, reply: Reply) {
        self.sink.deliver_to(self.upload.as_ref(), Ok(reply));
    }
}

/// A call on the wire.
struct Active {
    call: Call,
    head_reader: MessageReader,
    head: Option<ResponseHead>,
    body: BytesMut,
    /// For message streams: assembles the messages after the head.
    messages: MessageReader,
}

/// The longest response head a client accepts (status and metadata).
const MAX_HEAD: usize = 64 * 1024;

impl Active {
    /// Feeds a chunk to the response head (`spec/patterns.md` §1.2); the
    /// head once its message is complete.
    fn take_head(&mut self, chunk: mux_core::Chunk) -> Result<Option<ResponseHead>, CallError> {
        match self.head_reader.push(chunk, MAX_HEAD) {
            Ok(Some(message)) => ResponseHead::decode(message)
                .map(Some)
                .map_err(|err| CallError::Malformed(err.to_string())),
            Ok(None) => Ok(None),
            Err(_) => Err(CallError::Malformed("response head too large".into())),
        }
    }
}

/// Commands the client's loop receives.
pub(crate) enum Command {
    Call(Call),
    /// A message stream's reader made room: read more of it.
    Resume(u64),
    /// The next piece of an upload.
    Write {
        call: u64,
        piece: Piece,
    },
    Cancel(u64),
    Ping(Completer<Result<Duration, CallError>>),
    /// Completes once a connection is ready, or with the first connect error.
    WhenReady(Completer<Result<(), (io::ErrorKind, String)>>),
    Shutdown,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Call(_) => "Call",
            Self::Resume(_) => "Resume",
            Self::Write { .. } => "Write",
            Self::Cancel(_) => "Cancel",
            Self::Ping(_) => "Ping",
            Self::WhenReady(_) => "WhenReady",
            Self::Shutdown => "Shutdown",
        })
    }
}

/// Pool and retry settings.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) addr: SocketAddr,
    pub(crate) connections: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_response: usize,
    pub(crate) max_waiting: usize,
    pub(crate) max_attempts: u32,
}

/// One pooled connection.
#[derive(Debug, Default)]
struct Slot {
    key: Option<ConnKey>,
    ready: bool,
    /// Calls in flight on it.
    inflight: usize,
    /// Failed connects in a row (drives the backoff).
    failures: u32,
    pings: VecDeque<Completer<Result<Duration, CallError>>>,
    /// The connect timer fired on the current attempt.
    timed_out: bool,
}

/// Timer tokens: the kind in the top byte, the call ID or slot below.
const KIND_SHIFT: u32 = 56;
const TIMER_DEADLINE: u64 = 1 << KIND_SHIFT;
const TIMER_RECONNECT: u64 = 2 << KIND_SHIFT;
const TIMER_CONNECT: u64 = 3 << KIND_SHIFT;
const TOKEN_MASK: u64 = (1 << KIND_SHIFT) - 1;

pub(crate) struct ClientApp {
    policy: Policy,
    slots: Vec<Slot>,
    waiting: VecDeque<Call>,
    active: HashMap<(ConnKey, StreamId), Active>,
    by_id: HashMap<u64, (ConnKey, StreamId)>,
    outbox: Outbox,
    ready_waiters: Vec<Completer<Result<(), (io::ErrorKind, String)>>>,
    closing: bool,
    push_handler: Option<PushHandler>,
    pushes: HashMap<(ConnKey, StreamId), IncomingPush>,
}

impl ClientApp {
    pub(crate) fn new(policy: Policy, push_handler: Option<PushHandler>) -> Self {
        let slots = (0..policy.connections.max(1))
            .map(|_| Slot::default())
            .collect();
        Self {
            policy,
            slots,
            waiting: VecDeque::new(),
            active: HashMap::new(),
            by_id: HashMap::new(),
            outbox: Outbox::default(),
            ready_waiters: Vec::new(),
            closing: false,
            push_handler,
            pushes: HashMap::new(),
        }
    }

    pub(crate) fn fail_call(call: Call, error: CallError) {
        call.fail(error);
    }

    fn slot_of(&self, key: ConnKey) -> Option<usize> {
        self.slots.iter().position(|slot| slot.key == Some(key))
    }

    fn connect(&mut self, ctx: &mut Ctx<'_>, slot: usize) {
        match ctx.connect(self.policy.addr) {
            Ok(key) => {
                if let Some(s) = self.slots.get_mut(slot) {
                    s.key = Some(key);
                    s.ready = false;
                }
                ctx.set_timer(
                    ctx.now + self.policy.connect_timeout,
                    TIMER_CONNECT | slot as u64,
                );
            }
            Err(err) => self.connect_failed(ctx, slot, err.kind(), err.to_string()),
        }
    }

    fn connect_failed(
        &mut self,
        ctx: &mut Ctx<'_>,
        slot: usize,
        kind: io::ErrorKind,
        message: String,
    ) {
        for waiter in self.ready_waiters.drain(..) {
            waiter.complete(Err((kind, message.clone())));
        }
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        s.key = None;
        s.ready = false;
        s.failures = s.failures.saturating_add(1);
        if self.closing {
            return;
        }
        let exponent = s.failures.saturating_sub(1).min(16);
        let backoff = self
            .policy
            .backoff_initial
            .saturating_mul(1 << exponent)
            .min(self.policy.backoff_max);
        log::debug!(
            "connect to {} failed ({message}); retrying in {backoff:?}",
            self.policy.addr
        );
        ctx.set_timer(ctx.now + backoff, TIMER_RECONNECT | slot as u64);
        if !self.slots.iter().any(|s| s.ready) {
            // Nothing can carry the waiting calls now: fail them rather than hold them.
            for call in self.waiting.drain(..) {
                call.fail(CallError::Connect(message.clone()));
            }
        }
    }

    /// Places a call on the least loaded ready connection, or queues it.
    fn place(&mut self, ctx: &mut Ctx<'_>, call: Call) {
        let mut order: Vec<usize> = (0..self.slots.len())
            .filter(|i| self.slots[*i].ready)
            .collect();
        order.sort_by_key(|i| self.slots[*i].inflight);
        let metadata = match call.head.encode() {
            Ok(metadata) => metadata,
            Err(err) => return call.fail(CallError::Malformed(err.to_string())),
        };
        for index in order {
            let Some(key) = self.slots[index].key else {
                continue;
            };
            let Some(conn) = ctx.conn(key) else {
                continue;
            };
            let end_stream = call.body.is_empty() && call.upload.is_none();
            match conn.open(metadata.clone(), end_stream) {
                Ok(id) => {
                    if !call.body.is_empty() {
                        let piece = Piece {
                            bytes: call.body.clone(),
                            end_message: true,
                            end_stream: call.upload.is_none(),
                        };
                        let _ = self.outbox.write(conn, key, id, piece);
                    }
                    let mut call = call;
                    for piece in std::mem::take(&mut call.queued) {
                        let accepted = self.outbox.write(conn, key, id, piece).unwrap_or(0);
                        if let Some(credit) = &call.upload {
                            credit.release(accepted);
                        }
                    }
                    self.slots[index].inflight += 1;
                    self.by_id.insert(call.id, (key, id));
                    self.active.insert(
                        (key, id),
                        Active {
                            call,
                            head_reader: MessageReader::default(),
                            head: None,
                            body: BytesMut::new(),
                            messages: MessageReader::default(),
                        },
                    );
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
        if self.waiting.len() >= self.policy.max_waiting {
            return call.fail(CallError::Busy);
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
        let active = self.active.remove(&(key, id))?;
        self.by_id.remove(&active.call.id);
        self.outbox.forget(key, id);
        if let Some(slot) = self.slot_of(key) {
            self.slots[slot].inflight = self.slots[slot].inflight.saturating_sub(1);
        }
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

    /// Reads a message stream while its reader has room.
    fn read_feed(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        shared: &Arc<FeedShared>,
    ) {
        let limit = self.policy.max_response;
        let mut outcome: Option<Result<(), CallError>> = None;
        let mut batch = Vec::new();
        {
            let (Some(active), Some(conn)) = (self.active.get_mut(&(key, id)), ctx.conn(key))
            else {
                return;
            };
            // Messages go to the reader in one batch (one lock), within the
            // room its queue had when we started.
            let mut room = shared.room();
            while room > 0 {
                let Ok(Some(chunk)) = conn.read(id, usize::MAX) else {
                    break;
                };
                let fin = chunk.fin;
                if active.head.is_none() {
                    match active.take_head(chunk) {
                        Ok(Some(head)) if head.status.is_success() => {
                            shared.set_head(Ok(head.clone()));
                            active.head = Some(head);
                        }
                        Ok(Some(head)) => {
                            // A refusal: its body (the reason) follows the head.
                            let reason = conn
                                .read(id, 4096)
                                .ok()
                                .flatten()
                                .map(|c| c.bytes)
                                .unwrap_or_default();
                            outcome = Some(Err(CallError::Rejected {
                                status: head.status,
                                message: String::from_utf8_lossy(&reason).into_owned(),
                            }));
                            break;
                        }
                        Ok(None) => {}
                        Err(err) => {
                            outcome = Some(Err(err));
                            break;
                        }
                    }
                } else {
                    match active.messages.push(chunk, limit) {
                        Ok(Some(message)) => {
                            batch.push(message);
                            room -= 1;
                        }
                        Ok(None) => {}
                        Err(_) => {
                            outcome = Some(Err(CallError::TooLarge(limit)));
                            break;
                        }
                    }
                }
                if fin {
                    outcome = Some(Ok(()));
                    break;
                }
            }
        }
        shared.push_all(batch);
        match outcome {
            Some(Ok(())) => {
                if let Some(active) = self.take(key, id) {
                    shared.end(Ok(()));
                    drop(active);
                }
                self.place_waiting(ctx);
            }
            Some(Err(err)) => self.fail_and_reset(ctx, key, id, err),
            None => {}
        }
    }

    fn on_readable(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId) {
        if self.pushes.contains_key(&(key, id)) {
            return self.read_push(ctx, key, id);
        }
        let feed = self
            .active
            .get(&(key, id))
            .and_then(|a| match &a.call.sink {
                Sink::Feed(shared) => Some(Arc::clone(shared)),
                _ => None,
            });
        if let Some(shared) = feed {
            return self.read_feed(ctx, key, id, &shared);
        }
        let limit = self.policy.max_response;
        let mut outcome: Option<Result<Reply, CallError>> = None;
        {
            let Some(active) = self.active.get_mut(&(key, id)) else {
                return;
            };
            let Some(conn) = ctx.conn(key) else {
                return;
            };
            while let Ok(Some(chunk)) = conn.read(id, usize::MAX) {
                let fin = chunk.fin;
                if active.head.is_none() {
                    match active.take_head(chunk) {
                        Ok(head) => active.head = head,
                        Err(err) => {
                            outcome = Some(Err(err));
                            break;
                        }
                    }
                } else if active.body.len() + chunk.bytes.len() > limit {
                    outcome = Some(Err(CallError::TooLarge(limit)));
                    break;
                } else {
                    active.body.extend_from_slice(&chunk.bytes);
                }
                if fin {
                    outcome = Some(match active.head.take() {
                        Some(head) => Ok(Reply {
                            status: head.status,
                            metadata: head.metadata,
                            body: std::mem::take(&mut active.body).freeze(),
                        }),
                        None => Err(CallError::Malformed(
                            "the response ended before its head".into(),
                        )),
                    });
                    break;
                }
            }
        }
        match outcome {
            Some(Ok(reply)) => self.finish(ctx, key, id, Ok(reply)),
            Some(Err(err)) => self.fail_and_reset(ctx, key, id, err),
            None => {}
        }
    }

    /// Collects a push's body; hands the push to the handler at its end.
    fn read_push(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId) {
        let limit = self.policy.max_response;
        let (Some(incoming), Some(conn)) = (self.pushes.get_mut(&(key, id)), ctx.conn(key)) else {
            return;
        };
        let mut done = false;
        while let Ok(Some(chunk)) = conn.read(id, usize::MAX) {
            if incoming.body.len() + chunk.bytes.len() > limit {
                let _ = conn.reset(id, ErrorCode::CANCEL);
                self.pushes.remove(&(key, id));
                return;
            }
            incoming.body.extend_from_slice(&chunk.bytes);
            done |= chunk.fin;
        }
        if done {
            if let (Some(mut incoming), Some(handler)) =
                (self.pushes.remove(&(key, id)), self.push_handler.clone())
            {
                incoming.message.body = incoming.body.freeze();
                handler(incoming.message);
            }
        }
    }

    fn on_reset(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId, code: ErrorCode) {
        let Some(mut active) = self.take(key, id) else {
            return;
        };
        // REFUSED_STREAM: the server did not process it (spec §8.1): safe to retry.
        let replayable = active.call.upload.is_none();
        if code == ErrorCode::REFUSED_STREAM
            && replayable
            && active.call.attempts + 1 < self.policy.max_attempts
        {
            active.call.attempts += 1;
            self.place(ctx, active.call);
        } else {
            active.call.fail(CallError::Reset(code));
        }
        self.place_waiting(ctx);
    }
}

impl App for ClientApp {
    type Command = Command;

    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        for slot in 0..self.slots.len() {
            self.connect(ctx, slot);
        }
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, event: Event) {
        match event {
            Event::Connected => {
                if let Some(slot) = self.slot_of(key) {
                    self.slots[slot].ready = true;
                    self.slots[slot].failures = 0;
                }
                for waiter in self.ready_waiters.drain(..) {
                    waiter.complete(Ok(()));
                }
                self.place_waiting(ctx);
            }
            Event::Readable { id } => self.on_readable(ctx, key, id),
            Event::Writable { id } => {
                if let Some(conn) = ctx.conn(key) {
                    let accepted = self.outbox.resume(conn, key, id).unwrap_or(0);
                    if let Some(credit) = self
                        .active
                        .get(&(key, id))
                        .and_then(|a| a.call.upload.as_ref())
                    {
                        credit.release(accepted);
                    }
                }
            }
            Event::StreamReset { id, code } => {
                self.pushes.remove(&(key, id));
                self.on_reset(ctx, key, id, code);
            }
            Event::GoAway { .. } => {
                // New calls go elsewhere; the pool reconnects once it closes.
                if let Some(slot) = self.slot_of(key) {
                    self.slots[slot].ready = false;
                }
            }
            Event::PingAcked { rtt } => {
                if let Some(slot) = self.slot_of(key) {
                    if let Some(waiter) = self.slots[slot].pings.pop_front() {
                        waiter.complete(Ok(rtt));
                    }
                }
            }
            Event::PushReceived {
                id,
                associated,
                metadata,
                end_stream,
            } => {
                let message = PushMessage {
                    associated,
                    metadata,
                    body: Bytes::new(),
                };
                match (&self.push_handler, end_stream) {
                    // Without a handler, pushes are refused (spec §10.4).
                    (None, _) => {
                        if let Some(conn) = ctx.conn(key) {
                            let _ = conn.reset(id, ErrorCode::CANCEL);
                        }
                    }
                    (Some(handler), true) => handler(message),
                    (Some(_), false) => {
                        self.pushes.insert(
                            (key, id),
                            IncomingPush {
                                message,
                                body: BytesMut::new(),
                            },
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn on_closed(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, error: Option<LoopError>) {
        let message = error
            .as_ref()
            .map_or_else(|| "connection closed".to_owned(), ToString::to_string);
        let kind = match &error {
            Some(LoopError::Io(err)) => err.kind(),
            _ => io::ErrorKind::ConnectionAborted,
        };
        let lost: Vec<StreamId> = self
            .active
            .keys()
            .filter(|(k, _)| *k == key)
            .map(|(_, id)| *id)
            .collect();
        for id in lost {
            if let Some(active) = self.take(key, id) {
                active.call.fail(CallError::ConnectionLost(message.clone()));
            }
        }
        self.outbox.forget_conn(key);
        let Some(slot) = self.slot_of(key) else {
            return;
        };
        let (kind, message) = if std::mem::take(&mut self.slots[slot].timed_out) {
            (
                io::ErrorKind::TimedOut,
                format!("connect to {} timed out", self.policy.addr),
            )
        } else {
            (kind, message)
        };
        for waiter in self.slots[slot].pings.drain(..) {
            waiter.complete(Err(CallError::ConnectionLost(message.clone())));
        }
        let was_ready = self.slots[slot].ready;
        if was_ready && !self.closing {
            // A working connection ended: reconnect at once, then back off if that fails.
            self.slots[slot].key = None;
            self.slots[slot].ready = false;
            self.slots[slot].failures = 0;
            self.connect(ctx, slot);
        } else {
            self.connect_failed(ctx, slot, kind, message);
        }
    }

    fn on_command(&mut self, ctx: &mut Ctx<'_>, command: Command) {
        match command {
            Command::Write { call, piece } => {
                if let Some((key, id)) = self.by_id.get(&call).copied() {
                    let credit = self
                        .active
                        .get(&(key, id))
                        .and_then(|a| a.call.upload.clone());
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
            Command::Call(call) => {
                if self.closing {
                    return call.fail(CallError::Closed);
                }
                if let Some(deadline) = call.deadline {
                    ctx.set_timer(deadline, TIMER_DEADLINE | (call.id & TOKEN_MASK));
                }
                self.place(ctx, call);
            }
            Command::Resume(call_id) => {
                if let Some((key, id)) = self.by_id.get(&call_id).copied() {
                    self.on_readable(ctx, key, id);
                }
            }
            Command::Cancel(call_id) => {
                if let Some((key, id)) = self.by_id.get(&call_id).copied() {
                    self.fail_and_reset(ctx, key, id, CallError::Cancelled);
                } else if let Some(pos) = self.waiting.iter().position(|c| c.id == call_id) {
                    if let Some(call) = self.waiting.remove(pos) {
                        call.fail(CallError::Cancelled);
                    }
                }
            }
            Command::Ping(waiter) => {
                let now = ctx.now;
                let target = self.slots.iter().enumerate().find_map(|(i, s)| {
                    if s.ready {
                        s.key.map(|k| (i, k))
                    } else {
                        None
                    }
                });
                match target {
                    Some((slot, key)) if ctx.conn(key).is_some_and(|conn| conn.ping(now)) => {
                        self.slots[slot].pings.push_back(waiter);
                    }
                    _ => waiter.complete(Err(CallError::Connect("no ready connection".into()))),
                }
            }
            Command::WhenReady(waiter) => {
                if self.slots.iter().any(|s| s.ready) {
                    waiter.complete(Ok(()));
                } else {
                    self.ready_waiters.push(waiter);
                }
            }
            Command::Shutdown => {
                self.closing = true;
                for call in self.waiting.drain(..) {
                    call.fail(CallError::Closed);
                }
                ctx.close_all(ErrorCode::NO_ERROR, "client shutting down");
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, token: u64) {
        let value = token & TOKEN_MASK;
        match token & !TOKEN_MASK {
            TIMER_DEADLINE => {
                if let Some((key, id)) = self.by_id.get(&value).copied() {
                    self.fail_and_reset(ctx, key, id, CallError::DeadlineExceeded);
                } else if let Some(pos) = self.waiting.iter().position(|c| c.id == value) {
                    if let Some(call) = self.waiting.remove(pos) {
                        call.fail(CallError::DeadlineExceeded);
                    }
                }
            }
            TIMER_RECONNECT => {
                let slot = value as usize;
                if !self.closing && self.slots.get(slot).is_some_and(|s| s.key.is_none()) {
                    self.connect(ctx, slot);
                }
            }
            TIMER_CONNECT => {
                let slot = value as usize;
                if let Some(Slot {
                    key: Some(key),
                    ready: false,
                    ..
                }) = self.slots.get(slot)
                {
                    let key = *key;
                    self.slots[slot].timed_out = true;
                    ctx.close(key, ErrorCode::CANCEL, "connect timeout");
                }
            }
            _ => {}
        }
    }

    fn is_done(&self, ctx: &Ctx<'_>) -> bool {
        self.closing && ctx.connection_count() == 0
    }
}
