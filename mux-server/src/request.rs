//! What a route handler receives and returns (`spec/patterns.md` §1).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mux_core::frame::{Metadata, MetadataError};
use mux_core::rpc::Status;

use crate::auth::Identity;
use crate::server::ServerHandle;
use crate::sessions::SessionHandle;

/// A request, with its whole body.
#[derive(Debug, Clone)]
pub struct Request {
    route: String,
    metadata: Metadata,
    body: Bytes,
    deadline: Option<Instant>,
    session: Option<SessionHandle>,
    identity: Arc<Identity>,
    server: Option<Arc<ServerHandle>>,
}

impl Request {
    pub(crate) fn new(
        route: String,
        metadata: Metadata,
        body: Bytes,
        deadline: Option<Instant>,
        session: Option<SessionHandle>,
        identity: Arc<Identity>,
        server: Option<Arc<ServerHandle>>,
    ) -> Self {
        Self {
            route,
            metadata,
            body,
            deadline,
            session,
            identity,
            server,
        }
    }

    /// The server serving the request: to publish, append events or push
    /// from a handler. `None` only for requests made outside a running
    /// server.
    pub fn server(&self) -> Option<&ServerHandle> {
        self.server.as_deref()
    }

    /// Who made the request: the connection's identity (`spec/patterns.md` §8).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The session the call belongs to, when it carried a live `:session`.
    pub fn session(&self) -> Option<&SessionHandle> {
        self.session.as_ref()
    }

    /// The route it was sent to.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body, taken: for a handler that answers with it or keeps it,
    /// which a clone would make share its buffer (and a clone of a buffer
    /// not yet shared allocates a record to count the sharers).
    pub fn into_body(self) -> Bytes {
        self.body
    }

    /// The caller's metadata entries (`:route` and `:deadline-ms` excepted).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The value of the first metadata entry named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.metadata.get(name.as_bytes())
    }

    /// When the caller stops waiting, if it said.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// A handler's answer.
#[derive(Debug)]
pub struct Response {
    pub(crate) status: Status,
    pub(crate) metadata: Metadata,
    pub(crate) body: Bytes,
    /// Pushes tied to this request, sent before the response ends.
    pub(crate) pushes: Vec<(Metadata, Bytes)>,
    /// Body messages made as the stream takes them, after `body`.
    pub(crate) source: Option<Box<Source>>,
}

/// Produces a response body as the connection takes it (a streaming
/// response, [`Response::streaming`]): the server asks for the next message
/// only when the stream's send buffer has room, so a body of any size costs
/// one message of memory at a time and a slow client pushes back on it
/// through flow control. Called on the loop thread: it must not block.
pub trait BodySource: Send {
    /// The next message of the body; `None` ends the stream.
    fn next_message(&mut self) -> Option<Bytes>;

    /// The bytes this source will produce in all, when it knows: declared to
    /// the client (`spec/patterns.md` §1.8), which then tells a body cut
    /// short from a whole one. A source that then produces more or fewer
    /// has its stream reset, never ended as if whole. `None` by default.
    fn length(&self) -> Option<u64> {
        None
    }
}

/// A streamed body as a response holds it.
pub(crate) enum Source {
    /// Asked for each message on the loop ([`Response::streaming`]).
    Pull(Box<dyn BodySource>),
    /// Polled on the loop ([`Response::stream`], [`Response::channel`]);
    /// `waker` (attached by the loop) asks it to poll again.
    Stream {
        body: crate::body_stream::BodyStream,
        waker: Option<std::task::Waker>,
    },
}

/// What a streamed body gives when asked for its next message.
#[derive(Debug)]
pub(crate) enum Next {
    Message(Bytes),
    /// The body ended.
    End,
    /// Nothing yet: the body's waker asks again.
    Pending,
    /// The body broke off (a writer dropped without finishing).
    Failed(String),
}

impl Source {
    /// The next message of the body.
    pub(crate) fn next(&mut self) -> Next {
        match self {
            Self::Pull(pull) => pull.next_message().map_or(Next::End, Next::Message),
            Self::Stream { body, waker } => {
                let Some(waker) = waker.as_ref() else {
                    return Next::Pending; // polled once the loop attached its waker
                };
                let mut cx = std::task::Context::from_waker(waker);
                match body.as_mut().poll_next(&mut cx) {
                    std::task::Poll::Pending => Next::Pending,
                    std::task::Poll::Ready(Some(Ok(bytes))) => Next::Message(bytes),
                    std::task::Poll::Ready(Some(Err(why))) => Next::Failed(why),
                    std::task::Poll::Ready(None) => Next::End,
                }
            }
        }
    }

    /// The body's length, if its source declares it.
    pub(crate) fn length(&self) -> Option<u64> {
        match self {
            Self::Pull(pull) => pull.length(),
            Self::Stream { .. } => None,
        }
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pull(_) => "BodySource",
            Self::Stream { .. } => "BodyStream",
        })
    }
}

impl Response {
    /// `200 OK` with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self::with_status(Status::OK, body)
    }

    /// A response with `status` and `body`.
    pub fn with_status(status: Status, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            metadata: Metadata::new(),
            body: body.into(),
            pushes: Vec::new(),
            source: None,
        }
    }

    /// `200 OK` whose body messages come from `source` as the client reads
    /// them (each one message: `open_stream` readers get them one by one, a
    /// whole-body call gets them joined, up to its response limit).
    pub fn streaming(source: impl BodySource + 'static) -> Self {
        let mut response = Self::ok(Bytes::new());
        response.source = Some(Box::new(Source::Pull(Box::new(source))));
        response
    }

    /// `200 OK` whose body messages are the items of `stream`, polled on
    /// the loop as the client takes them (flow control reaches the stream:
    /// it is not polled while the client reads slowly). The stream must not
    /// block; it may be woken from any thread.
    pub fn stream(stream: impl futures_core::Stream<Item = Bytes> + Send + 'static) -> Self {
        Self::with_body_stream(crate::body_stream::from_stream(stream))
    }

    /// `200 OK` whose body is written, message by message, through the
    /// returned [`BodyWriter`](crate::BodyWriter) by the handler or any
    /// thread or task it hands it to, after the response is returned; at
    /// most `capacity` messages wait for the connection, beyond which the
    /// writer waits. [`BodyWriter::finish`](crate::BodyWriter::finish) ends
    /// the body; a writer dropped without it resets the stream.
    ///
    /// ```no_run
    /// use mux_server::{Response, Server};
    ///
    /// let server = Server::builder()
    ///     .route("count", |_| {
    ///         let (response, writer) = Response::channel(16);
    ///         std::thread::spawn(move || {
    ///             for n in 0..1000 {
    ///                 if writer.write(n.to_string()).is_err() {
    ///                     return; // the client went away
    ///                 }
    ///             }
    ///             writer.finish();
    ///         });
    ///         Ok(response)
    ///     })
    ///     .start()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn channel(capacity: usize) -> (Self, crate::BodyWriter) {
        let (writer, body) = crate::body_stream::channel(capacity);
        (Self::with_body_stream(body), writer)
    }

    fn with_body_stream(body: crate::body_stream::BodyStream) -> Self {
        let mut response = Self::ok(Bytes::new());
        response.source = Some(Box::new(Source::Stream { body, waker: None }));
        response
    }

    /// A streamed body not yet given the loop's waker: gives it `make()`.
    pub(crate) fn attach_waker(&mut self, make: impl FnOnce() -> std::task::Waker) {
        if let Some(Source::Stream {
            waker: waker @ None,
            ..
        }) = self.source.as_deref_mut()
        {
            *waker = Some(make());
        }
    }

    /// The same response with a push tied to the request (spec §10): a
    /// server-initiated stream with `metadata` and `body`, sent before the
    /// response ends. A client that refuses pushes just does not get it.
    pub fn push<'a>(
        mut self,
        metadata: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        body: impl Into<Bytes>,
    ) -> Result<Self, MetadataError> {
        self.pushes
            .push((Metadata::from_pairs(metadata)?, body.into()));
        Ok(self)
    }

    /// The same response with metadata entries.
    pub fn metadata<'a>(
        mut self,
        entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<Self, MetadataError> {
        self.metadata = Metadata::from_pairs(entries)?;
        Ok(self)
    }

    /// Its status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Its body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// A handler's failure: becomes a response with the status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// The status sent.
    pub status: Status,
    /// The body sent: a message for humans.
    pub message: String,
}

impl HandlerError {
    /// A failure with `status`.
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<&str> for HandlerError {
    fn from(message: &str) -> Self {
        Self::new(Status::INTERNAL, message)
    }
}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        Self::new(Status::INTERNAL, message)
    }
}

impl From<HandlerError> for Response {
    fn from(err: HandlerError) -> Self {
        Self::with_status(err.status, err.message)
    }
}

/// What a handler returns.
pub type HandlerResult = Result<Response, HandlerError>;

/// Receives a request body piece by piece as it arrives (a streaming route):
/// nothing is buffered, and flow control pushes back on the client while
/// the sink is slow. Runs on the loop thread: it must not block.
pub trait BodySink: Send {
    /// The next piece of the body; `end_message` marks a message boundary.
    fn data(&mut self, bytes: &Bytes, end_message: bool);

    /// The body ended: the response.
    fn end(self: Box<Self>) -> HandlerResult;
}
