//! What the stream patterns do when their stream is lost: tell a lost
//! connection (reopen) from a refusal (report), and reopen with backoff,
//! the same way for subscriptions, event streams and session feeds.

use std::time::Duration;

use crate::error::CallError;
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
