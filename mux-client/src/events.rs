//! Event streams on the client (`spec/patterns.md` §5, and the session
//! feeds of §6.3): events with ids, resumed after the last one seen when the
//! connection comes back.

use std::time::Duration;

use bytes::Bytes;
use mux_core::patterns::{self, FeedMessage};

use crate::call::CallRequest;
use crate::client::{Client, Opener};
use crate::error::CallError;
use crate::message_stream::MessageStream;
use crate::reopen::{is_lost, reopen, SERVER_ENDED};

/// An event with server-sent-events semantics (`spec/patterns.md` §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its id; strictly increasing within its stream.
    pub id: u64,
    /// Its type.
    pub kind: String,
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
}

fn open_events(
    opener: &Opener,
    name: &str,
    session: Option<&str>,
    resume: Resume,
    epoch: Option<u64>,
) -> Result<(MessageStream, Duration, Option<u64>), CallError> {
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
    let stream = opener.open_stream(request);
    let head = stream.head()?;
    let retry = head
        .metadata
        .get(patterns::RETRY_MS)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_millis(1000), Duration::from_millis);
    let epoch = head
        .metadata
        .get(patterns::EPOCH)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok());
    Ok((stream, retry, epoch))
}

impl EventStream {
    pub(crate) fn new(
        opener: Opener,
        name: &str,
        session: Option<String>,
        resume: Resume,
    ) -> Result<Self, CallError> {
        let (stream, retry, epoch) = open_events(&opener, name, session.as_deref(), resume, None)?;
        Ok(Self {
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
        })
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
            Ok(message) => Some(match FeedMessage::decode(message) {
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
            }),
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

impl Client {
    /// Opens the event stream `name`, from `resume` (`spec/patterns.md` §5).
    pub fn events(&self, name: &str, resume: Resume) -> Result<EventStream, CallError> {
        EventStream::new(self.opener().clone(), name, None, resume)
    }
}
