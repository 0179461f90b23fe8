//! What the stream patterns do when their stream is lost: tell a lost
//! connection (reopen) from a refusal (report), and reopen with backoff,
//! the same way for subscriptions, event streams and session feeds.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use mux_core::rpc::ResponseHead;

use crate::error::CallError;
use crate::message_stream::MessageStream;
use crate::reply::Reply;

/// Attempts to reopen a subscription, event stream or session feed after
/// its connection was lost, before the error reaches the application.
const REOPEN_ATTEMPTS: u32 = 20;

/// The server ended the stream itself: only a server going away does that
/// to a feed (`spec/patterns.md` §3.2), so reopen it.
pub(crate) const SERVER_ENDED: &str = "the server ended the stream";

/// A reply with a failure status as [`CallError::Rejected`].
pub(crate) fn reply_ok(reply: Reply) -> Result<Reply, CallError> {
    if reply.status.is_success() {
        Ok(reply)
    } else {
        Err(CallError::Rejected {
            status: reply.status,
            message: String::from_utf8_lossy(&reply.body).into_owned(),
        })
    }
}

/// Whether an error means the connection went away, or the server refused
/// the stream without processing it (the stream can be reopened). A reset
/// for another reason, such as the slow-subscriber policy's
/// ENHANCE_YOUR_CALM, reaches the application.
pub(crate) fn is_lost(err: &CallError) -> bool {
    matches!(
        err,
        CallError::ConnectionLost(_)
            | CallError::Connect(_)
            | CallError::Reset(mux_core::ErrorCode::REFUSED_STREAM)
    )
}

/// Calls `open` until it succeeds, fails for a reason other than a lost
/// connection, or [`REOPEN_ATTEMPTS`] pass; waits `delay(attempt)` before
/// each try. `last` is the error that lost the stream.
pub(crate) fn reopen<T>(
    mut last: CallError,
    delay: impl Fn(u32) -> Duration,
    mut open: impl FnMut() -> Result<T, CallError>,
) -> Result<T, CallError> {
    for attempt in 0..REOPEN_ATTEMPTS {
        std::thread::sleep(delay(attempt));
        match open() {
            Ok(opened) => return Ok(opened),
            Err(err) if is_lost(&err) => last = err,
            Err(err) => return Err(err),
        }
    }
    Err(last)
}

/// Reopenings a feed read as a `Stream` tries before its error reaches the
/// reader (each waits for a connection, within the client's wait-for-ready
/// limit, so no timer is needed between them).
const STREAM_REOPEN_ATTEMPTS: u32 = 20;

/// A subscription, event stream or session feed read as a `Stream`: its
/// reopening in progress, if any, and whether it is over.
#[derive(Debug, Default)]
pub(crate) struct StreamReopen {
    reopening: Option<(MessageStream, u32)>,
    failed: bool,
}

/// What [`StreamReopen::poll`] found.
pub(crate) enum FeedStep {
    /// A message of the feed.
    Message(Bytes),
    /// The feed was reopened; its new head.
    Reopened(ResponseHead),
    /// The feed failed for good (the last item).
    Failed(CallError),
}

impl StreamReopen {
    /// The feed's next step: reads `stream`, and when it is lost (or ended,
    /// which only a server going away does to a feed) reopens it with
    /// `open`, as futures: never blocking. `Ready(None)` after a failure.
    pub(crate) fn poll(
        &mut self,
        stream: &mut MessageStream,
        cx: &mut Context<'_>,
        mut open: impl FnMut() -> Result<MessageStream, CallError>,
    ) -> Poll<Option<FeedStep>> {
        if self.failed {
            return Poll::Ready(None);
        }
        loop {
            if let Some((reopened, attempts)) = self.reopening.take() {
                match reopened.poll_head(cx) {
                    None => {
                        self.reopening = Some((reopened, attempts));
                        return Poll::Pending;
                    }
                    Some(Ok(head)) => {
                        *stream = reopened;
                        return Poll::Ready(Some(FeedStep::Reopened(head)));
                    }
                    Some(Err(err)) if is_lost(&err) && attempts < STREAM_REOPEN_ATTEMPTS => {
                        match open() {
                            Ok(next) => self.reopening = Some((next, attempts + 1)),
                            Err(err) => return self.fail(err),
                        }
                    }
                    Some(Err(err)) => return self.fail(err),
                }
                continue;
            }
            match stream.poll_message(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(message))) => {
                    return Poll::Ready(Some(FeedStep::Message(message)))
                }
                Poll::Ready(Some(Err(err))) if !is_lost(&err) => return self.fail(err),
                Poll::Ready(_) => {
                    log::debug!("a feed was lost: reopening it");
                    match open() {
                        Ok(next) => self.reopening = Some((next, 1)),
                        Err(err) => return self.fail(err),
                    }
                }
            }
        }
    }

    fn fail(&mut self, err: CallError) -> Poll<Option<FeedStep>> {
        self.failed = true;
        Poll::Ready(Some(FeedStep::Failed(err)))
    }
}
