//! Route handlers as the server stores them, and the one place a handler
//! runs: inside `catch_unwind`, so that a panicking handler answers 500
//! instead of taking its loop (and every connection on it) down.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use mux_core::rpc::Status;

use crate::request::{BodySink, HandlerError, HandlerResult, Request, Response};

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
    /// Returns a future, polled on the loop thread (`tasks.rs`).
    Async(crate::tasks::AsyncHandlerFn),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Inline(_) => "Inline",
            Self::Blocking(_) => "Blocking",
            Self::Streaming(_) => "Streaming",
            Self::Async(_) => "Async",
        })
    }
}

/// Runs a handler; a panic becomes a 500.
pub(crate) fn run(
    handler: &(dyn Fn(Request) -> HandlerResult + Send + Sync),
    request: Request,
) -> Response {
    guarded(|| handler(request))
}

/// Ends a streaming request's sink; a panic becomes a 500.
pub(crate) fn end_sink(sink: Box<dyn BodySink>) -> Response {
    guarded(|| sink.end())
}

/// Serves a whole request to a streaming route (the web edge has its body
/// at once): opens the sink, hands it the body, ends it; a panic becomes a 500.
pub(crate) fn run_sink(open: &SinkFn, request: Request) -> Response {
    guarded(|| {
        let mut sink = open(&request);
        sink.data(request.body(), true);
        sink.end()
    })
}

fn guarded(f: impl FnOnce() -> HandlerResult) -> Response {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => err.into(),
        Err(_) => HandlerError::new(Status::INTERNAL, "handler panicked").into(),
    }
}
