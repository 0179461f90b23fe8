//! What application threads send to the client's loop, and what a call
//! carries there: its request, deadline and where its outcome goes. At the
//! bottom of the crate: everything else imports it.

use std::io;
use std::sync::Arc;
use std::task::Context;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_core::frame::Metadata;
use mux_core::rpc::RequestHead;
use mux_core::StreamId;
use mux_runtime::{LoopHandle, Piece, SendPoll};

use crate::completion::Completer;
use crate::credit::Credit;
use crate::error::CallError;
use crate::inbox::Inbox;
use crate::reply::Reply;

/// Commands the client's loop receives.
#[derive(Debug)]
pub(crate) enum Command {
    Call(PendingCall),
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
    /// A host name the pool asked to resolve for `slot` (resolution `number`).
    Resolved {
        slot: usize,
        number: u64,
        outcome: Result<Vec<std::net::SocketAddr>, (io::ErrorKind, String)>,
    },
    Shutdown,
}

/// A call not yet answered, as the loop holds it.
#[derive(Debug)]
pub(crate) struct PendingCall {
    pub(crate) id: u64,
    pub(crate) head: RequestHead,
    pub(crate) body: Bytes,
    pub(crate) deadline: Option<Instant>,
    pub(crate) sink: Sink,
    pub(crate) attempts: u32,
    /// When the call started waiting for a connection, if it had to.
    pub(crate) waiting_since: Option<Instant>,
    /// When the application made the call (for the debug log).
    pub(crate) submitted: Instant,
    /// A streaming upload: the body comes in `Command::Write`s, under this credit.
    pub(crate) upload: Option<Arc<Credit>>,
    /// Upload pieces that arrived before the stream was opened.
    pub(crate) queued: Vec<Piece>,
}

impl PendingCall {
    /// Hands the call to the loop, blocking while its queue is full; if the
    /// loop is gone, the call fails with [`CallError::Closed`].
    pub(crate) fn send_blocking(self, handle: &LoopHandle<Command>) {
        if let Err(Command::Call(call)) = handle.send(Command::Call(self)) {
            call.fail(CallError::Closed);
        }
    }

    /// Hands the call to the loop without blocking: the call back while the
    /// queue is full (`cx`'s task is woken when it has room); if the loop is
    /// gone, the call fails with [`CallError::Closed`].
    pub(crate) fn poll_send(self, handle: &LoopHandle<Command>, cx: &Context<'_>) -> Option<Self> {
        let mut cx = Context::from_waker(cx.waker());
        match handle.poll_send(&mut cx, Command::Call(self)) {
            SendPoll::Sent => None,
            SendPoll::Full(Command::Call(call)) => Some(call),
            SendPoll::Closed(Command::Call(call)) => {
                call.fail(CallError::Closed);
                None
            }
            // Only a call was sent, so only a call comes back.
            SendPoll::Full(_) | SendPoll::Closed(_) => None,
        }
    }

    /// Whether the call has waited for a connection for `limit` by `now`.
    pub(crate) fn waited(&self, now: Instant, limit: Duration) -> bool {
        self.waiting_since
            .is_some_and(|since| now.saturating_duration_since(since) >= limit)
    }

    pub(crate) fn fail(self, error: CallError) {
        self.finish(Err(error));
    }

    pub(crate) fn succeed(self, reply: Reply) {
        self.finish(Ok(reply));
    }

    fn finish(self, result: Result<Reply, CallError>) {
        if log::log_enabled!(log::Level::Debug) {
            let outcome = match &result {
                Ok(reply) => format!("answered {}", reply.status.0),
                Err(err) => format!("failed: {err}"),
            };
            log::debug!(
                "call {} {outcome} after {:.3?}",
                self.head.route,
                self.submitted.elapsed()
            );
        }
        if let Some(credit) = &self.upload {
            // A writer still uploading learns why it must stop.
            credit.fail(match &result {
                Err(err) => err.clone(),
                Ok(reply) if reply.status.is_success() => CallError::AnsweredEarly,
                Ok(reply) => CallError::Rejected {
                    status: reply.status,
                    message: String::from_utf8_lossy(&reply.body).into_owned(),
                },
            });
        }
        self.sink.deliver(result);
    }

    /// Whether the call's response is a stream of messages.
    pub(crate) fn inbox(&self) -> Option<&Arc<Inbox>> {
        match &self.sink {
            Sink::Inbox(inbox) => Some(inbox),
            _ => None,
        }
    }
}

/// A callback that receives a call's outcome on the loop thread.
pub(crate) type Callback = Box<dyn FnOnce(Result<Reply, CallError>) + Send>;

/// Where a call's outcome goes.
pub(crate) enum Sink {
    Completion(Completer<Result<Reply, CallError>>),
    Callback(Callback),
    /// A message stream: the head and each message go to the reader as they come.
    Inbox(Arc<Inbox>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Completion(completer) => completer.fmt(f),
            Self::Callback(_) => f.write_str("Callback"),
            Self::Inbox(inbox) => inbox.fmt(f),
        }
    }
}

impl Sink {
    fn deliver(self, result: Result<Reply, CallError>) {
        match self {
            Self::Completion(completer) => completer.complete(result),
            Self::Callback(callback) => callback(result),
            Self::Inbox(inbox) => inbox.end(result.map(|_| ())),
        }
    }
}

/// A push as the application receives it (spec §10).
#[derive(Debug, Clone)]
pub struct PushMessage {
    /// The request it is tied to, or `None` for an unsolicited push.
    pub associated: Option<StreamId>,
    /// Its metadata.
    pub metadata: Metadata,
    /// Its body.
    pub body: Bytes,
}

/// Where pushes go.
pub(crate) type PushHandler = Arc<dyn Fn(PushMessage) + Send + Sync>;
