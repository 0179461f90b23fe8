//! Event streams on the client (`spec/patterns.md` §5, and the session
//! feeds of §6.3): events with ids, resumed after the last one seen when the
//! connection comes back.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use mux_core::patterns::{self, FeedMessage};
use mux_core::rpc::ResponseHead;
use mux_core::Utf8Bytes;

use crate::call::CallRequest;
use crate::client::{Client, Opener};
use crate::error::CallError;
use crate::message_stream::MessageStream;
use crate::reopen::{is_lost, reopen, FeedStep, StreamReopen, SERVER_ENDED};

/// An event with server-sent-events semantics (`spec/patterns.md` §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its id; strictly increasing within its stream.
    pub id: u64,
    /// Its type (a slice of the received frame: no copy).
    pub kind: Utf8Bytes,
    /// Its data.
    pub data: Bytes,
}

/// Where an event stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// With the next event appended.
    Latest,
    /// After the event with this id (0: from the oldest kept).
    After(u64),
}

/// An event stream. After a reconnect it resumes after the last event it
/// delivered, waiting the server's retry hint first; events older than the
/// server keeps fail with [`CallError::Rejected`] (status 410).
#[derive(Debug)]
pub struct EventStream {
    opener: Opener,
    name: String,
    /// `:stream` for event streams; the session token for session feeds.
    session: Option<String>,
    last_id: Option<u64>,
    /// The log instance `last_id` belongs to (`spec/patterns.md` §5.3).
    epoch: Option<u64>,
    retry: Duration,
    stream: MessageStream,
    /// As a `Stream`: its resumption, if one is in progress.
    reopen_state: StreamReopen,
}

/// The request that opens (or resumes) an event stream or a session feed.
fn events_request(
    name: &str,
    session: Option<&str>,
    resume: Resume,
    epoch: Option<u64>,
) -> CallRequest {
    let mut request = match session {
        Some(token) => CallRequest::new(patterns::SESSION_ATTACH, "")
            .header(Bytes::from_static(patterns::SESSION), token.to_owned()),
        None => CallRequest::new(patterns::EVENTS, "")
            .header(Bytes::from_static(patterns::STREAM), name.to_owned()),
    };
    if let Resume::After(id) = resume {
        request = request.header(Bytes::from_static(patterns::AFTER), id.to_string());
        if let Some(epoch) = epoch {
            request = request.header(Bytes::from_static(patterns::EPOCH), epoch.to_string());
        }
    }
    request
}

/// The retry hint and the log's epoch from an event stream's head.
fn head_params(head: &ResponseHead) -> (Duration, Option<u64>) {
    let number = |name| {
        head.metadata
            .get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let retry =
        number(patterns::RETRY_MS).map_or(Duration::from_millis(1000), Duration::from_millis);
    (retry, number(patterns::EPOCH))
}

fn open_events(
    opener: &Opener,
    name: &str,
    session: Option<&str>,
    resume: Resume,
    epoch: Option<u64>,
) -> Result<(MessageStream, Duration, Option<u64>), CallError> {
    let stream = opener.open_stream(events_request(name, session, resume, epoch));
    let (retry, epoch) = head_params(&stream.head()?);
    Ok((stream, retry, epoch))
}

/// [`open_events`] as a future: it never blocks the thread.
async fn open_events_async(
    opener: Opener,
    name: String,
    session: Option<String>,
    resume: Resume,
) -> Result<EventStream, CallError> {
    let stream = opener.open_stream(events_request(&name, session.as_deref(), resume, None));
    let (retry, epoch) = head_params(&stream.head_async().await?);
    Ok(EventStream::with(
        opener,
        &name,
        session,
        resume,
        (stream, retry, epoch),
    ))
}

impl EventStream {
    pub(crate) fn new(
        opener: Opener,
        name: &str,
        session: Option<String>,
        resume: Resume,
    ) -> Result<Self, CallError> {
        let opened = open_events(&opener, name, session.as_deref(), resume, None)?;
        Ok(Self::with(opener, name, session, resume, opened))
    }

    fn with(
        opener: Opener,
        name: &str,
        session: Option<String>,
        resume: Resume,
        (stream, retry, epoch): (MessageStream, Duration, Option<u64>),
    ) -> Self {
        Self {
            epoch,
            opener,
            name: name.to_owned(),
            session,
            last_id: match resume {
                Resume::After(id) => Some(id),
                Resume::Latest => None,
            },
            retry,
            stream,
            reopen_state: StreamReopen::default(),
        }
    }

    /// [`EventStream::new`] as a future.
    pub(crate) fn open_async(
        opener: Opener,
        name: &str,
        session: Option<String>,
        resume: Resume,
    ) -> impl std::future::Future<Output = Result<Self, CallError>> + Send + 'static {
        open_events_async(opener, name.to_owned(), session, resume)
    }

    /// Decodes a feed message into the next event.
    fn decode(&mut self, message: Bytes) -> Result<Event, CallError> {
        match FeedMessage::decode(message) {
            Ok(FeedMessage::Event { id, kind, data }) => {
                self.last_id = Some(id);
                Ok(Event { id, kind, data })
            }
            Ok(FeedMessage::Lost { count }) => Err(CallError::Malformed(format!(
                "{count} events dropped for a slow reader"
            ))),
            _ => Err(CallError::Malformed(
                "unexpected message on an event stream".into(),
            )),
        }
    }

    /// The id of the last event delivered (resume from it after a restart).
    pub fn last_id(&self) -> Option<u64> {
        self.last_id
    }

    /// The server's retry hint.
    pub fn retry(&self) -> Duration {
        self.retry
    }

    /// The next event, waiting at most `timeout`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Event, CallError>> {
        let next = match self.stream.next_timeout(timeout) {
            Some(next) => next,
            None if self.stream.is_over() => Err(CallError::ConnectionLost(SERVER_ENDED.into())),
            None => return None,
        };
        match next {
            Ok(message) => Some(self.decode(message)),
            Err(err) if is_lost(&err) => match self.reopen(err) {
                Ok(()) => self.next_timeout(timeout),
                Err(err) => Some(Err(err)),
            },
            Err(err) => Some(Err(err)),
        }
    }

    fn reopen(&mut self, last: CallError) -> Result<(), CallError> {
        let resume = self.last_id.map_or(Resume::Latest, Resume::After);
        let retry = self.retry;
        let delay = |attempt: u32| retry.min(Duration::from_millis(50 << attempt.min(4)));
        let (stream, retry, epoch) = reopen(last, delay, || {
            open_events(
                &self.opener,
                &self.name,
                self.session.as_deref(),
                resume,
                self.epoch,
            )
        })?;
        self.stream = stream;
        self.retry = retry;
        self.epoch = epoch;
        Ok(())
    }
}

/// The events as a [`Stream`](futures_core::Stream), for any executor: after
/// a lost connection it resumes after the last event delivered, as a future
/// (at once: the open waits for the client's next connection); a failure is
/// the last item.
impl futures_core::Stream for EventStream {
    type Item = Result<Event, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let resume = this.last_id.map_or(Resume::Latest, Resume::After);
            let request = events_request(&this.name, this.session.as_deref(), resume, this.epoch);
            let opener = &this.opener;
            let step = this.reopen_state.poll(&mut this.stream, cx, || {
                Ok(opener.open_stream(request.clone()))
            });
            return match step {
                Poll::Ready(Some(FeedStep::Message(message))) => {
                    Poll::Ready(Some(this.decode(message)))
                }
                Poll::Ready(Some(FeedStep::Reopened(head))) => {
                    (this.retry, this.epoch) = head_params(&head);
                    continue;
                }
                Poll::Ready(Some(FeedStep::Failed(err))) => Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl Client {
    /// Opens the event stream `name`, from `resume` (`spec/patterns.md` §5).
    pub fn events(&self, name: &str, resume: Resume) -> Result<EventStream, CallError> {
        EventStream::new(self.opener().clone(), name, None, resume)
    }

    /// [`Client::events`] as a future, for any executor: it never blocks the
    /// thread. Read the stream as a [`Stream`](futures_core::Stream).
    pub fn events_async(
        &self,
        name: &str,
        resume: Resume,
    ) -> impl std::future::Future<Output = Result<EventStream, CallError>> + Send + 'static {
        EventStream::open_async(self.opener().clone(), name, None, resume)
    }
}
