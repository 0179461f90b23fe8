//! What other threads send to a server loop: finished blocking handlers,
//! fan-out from the hub (publications, event-log and session entries,
//! pushes), and shutdown. At the bottom of the crate: it imports only the
//! request types and event-log entries, and everything else imports it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mux_core::frame::Metadata;
use mux_core::StreamId;
use mux_runtime::{ConnKey, PlainKey};

use crate::event_log::Entry;
use crate::request::HandlerResult;

/// Where a handler's answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ReplyTo {
    /// A mux stream.
    Stream(ConnKey, StreamId),
    /// Request number `.1` of an HTTP edge connection (a connection that
    /// moved on to its next request no longer takes the answer).
    Http(PlainKey, u64),
}

/// Commands a loop receives.
#[derive(Debug)]
pub(crate) enum Command {
    /// A blocking handler finished.
    Done { to: ReplyTo, result: HandlerResult },
    /// An async handler's future was woken: poll it (`tasks.rs`).
    Poll(u64),
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
