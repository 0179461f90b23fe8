//! The client side of the patterns (`spec/patterns.md`): message streams,
//! publish/subscribe, event streams with resume, polling and long polling,
//! and sessions that survive reconnects.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_core::patterns::{self, FeedMessage};
use mux_core::rpc::{ResponseHead, Status};
use mux_runtime::LoopHandle;

use crate::app::Command;
use crate::feed::{FeedShared, Next};
use crate::{CallError, CallRequest, Client, Opener, Reply};

/// How long a stream pattern waits for the server's answer to its request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts to reopen a subscription, event stream or session feed after
/// its connection was lost, before the error reaches the application.
const REOPEN_ATTEMPTS: u32 = 20;

/// A stream of messages from the server (the response of a streaming call).
/// Dropping it before the server ends it cancels the stream.
#[derive(Debug)]
pub struct MessageStream {
    shared: Arc<FeedShared>,
    /// Messages taken from the shared queue in one batch, handed out one by one.
    local: std::collections::VecDeque<Bytes>,
    id: u64,
    handle: LoopHandle<Command>,
}

impl MessageStream {
    pub(crate) fn new(shared: Arc<FeedShared>, id: u64, handle: LoopHandle<Command>) -> Self {
        Self {
            shared,
            local: std::collections::VecDeque::new(),
            id,
            handle,
        }
    }

    /// Whether the server ended the stream and every message was taken.
    fn is_over(&self) -> bool {
        self.local.is_empty() && self.shared.is_over()
    }

    /// Waits for the response head: `Err(Rejected)` if the server refused.
    pub fn head(&self) -> Result<ResponseHead, CallError> {
        self.shared.head(HEAD_TIMEOUT)
    }

    fn take(&mut self, wait: Option<Duration>, waker: Option<&std::task::Waker>) -> Next {
        if let Some(message) = self.local.pop_front() {
            return Next::Message(message);
        }
        let (next, resume) = self.shared.next(wait, waker, &mut self.local);
        if resume {
            // The loop stopped reading while our queue was full: room again.
            let _ = self.handle.try_send(Command::Resume(self.id));
        }
        next
    }

    /// The next message, blocking; `None` once the server ended the stream.
    pub fn next_message(&mut self) -> Option<Result<Bytes, CallError>> {
        match self.take(None, None) {
            Next::Message(message) => Some(Ok(message)),
            Next::End | Next::Nothing => None,
            Next::Failed(err) => Some(Err(err)),
        }
    }

    /// The next message if one arrives within `timeout`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Bytes, CallError>> {
        match self.take(Some(timeout), None) {
            Next::Message(message) => Some(Ok(message)),
            Next::End | Next::Nothing => None,
            Next::Failed(err) => Some(Err(err)),
        }
    }

    /// The next message if one is already here.
    pub fn try_next(&mut self) -> Option<Result<Bytes, CallError>> {
        self.next_timeout(Duration::ZERO)
    }

    /// A future of the next message (`None` at the end), for any executor.
    pub fn next_async(&mut self) -> NextMessage<'_> {
        NextMessage { stream: self }
    }
}

/// The future returned by [`MessageStream::next_async`].
#[derive(Debug)]
pub struct NextMessage<'a> {
    stream: &'a mut MessageStream,
}

impl Future for NextMessage<'_> {
    type Output = Option<Result<Bytes, CallError>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.stream.take(None, Some(cx.waker())) {
            Next::Message(message) => Poll::Ready(Some(Ok(message))),
            Next::End => Poll::Ready(None),
            Next::Failed(err) => Poll::Ready(Some(Err(err))),
            Next::Nothing => Poll::Pending,
        }
    }
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        if !self.shared.is_over() {
            let _ = self.handle.try_send(Command::Cancel(self.id));
        }
    }
}

fn reply_ok(reply: Reply) -> Result<Reply, CallError> {
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
fn is_lost(err: &CallError) -> bool {
    matches!(
        err,
        CallError::ConnectionLost(_)
            | CallError::Connect(_)
            | CallError::Reset(mux_core::ErrorCode::REFUSED_STREAM)
    )
}

/// The server ended the stream itself: only a server going away does that
/// to a feed (`spec/patterns.md` §3.2), so reopen it.
const SERVER_ENDED: &str = "the server ended the stream";

// ---- publish/subscribe ----

/// What a subscription yields (`spec/patterns.md` §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A publication.
    Message {
        /// The topic it was published on.
        topic: String,
        /// Its payload.
        payload: Bytes,
    },
    /// The server dropped this many messages because we read too slowly
    /// (the server's slow-subscriber policy), or a reconnect lost some.
    Lost(u64),
}

/// A subscription to a topic pattern. It resubscribes by itself after a
/// reconnect (reporting [`Delivery::Lost`] with a count of 0: messages
/// published meanwhile are not replayed; pub/sub is at-most-once). Dropping
/// it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    opener: Opener,
    pattern: String,
    stream: MessageStream,
}

fn open_subscription(opener: &Opener, pattern: &str) -> Result<MessageStream, CallError> {
    patterns::check_pattern(pattern).map_err(|e| CallError::Malformed(e.to_string()))?;
    let request = CallRequest::new(patterns::SUBSCRIBE, "")
        .header(Bytes::from_static(patterns::TOPIC), pattern.to_owned());
    let stream = opener.open_stream(request);
    stream.head()?;
    Ok(stream)
}

impl Subscription {
    /// The pattern subscribed to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    fn decode(message: Bytes) -> Result<Delivery, CallError> {
        match FeedMessage::decode(message) {
            Ok(FeedMessage::Publication { topic, payload }) => {
                Ok(Delivery::Message { topic, payload })
            }
            Ok(FeedMessage::Lost { count }) => Ok(Delivery::Lost(count)),
            _ => Err(CallError::Malformed(
                "unexpected message on a subscription".into(),
            )),
        }
    }

    /// The next delivery, waiting at most `timeout` (`None` if nothing came).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Delivery, CallError>> {
        match self.stream.next_timeout(timeout) {
            Some(Ok(message)) => Some(Self::decode(message)),
            Some(Err(err)) if is_lost(&err) => Some(self.reopen(err).map(|()| Delivery::Lost(0))),
            Some(Err(err)) => Some(Err(err)),
            None if self.stream.is_over() => Some(
                self.reopen(CallError::ConnectionLost(SERVER_ENDED.into()))
                    .map(|()| Delivery::Lost(0)),
            ),
            None => None,
        }
    }

    /// The next delivery, blocking.
    pub fn next_delivery(&mut self) -> Result<Delivery, CallError> {
        loop {
            if let Some(result) = self.next_timeout(Duration::from_secs(3600)) {
                return result;
            }
        }
    }

    fn reopen(&mut self, mut last: CallError) -> Result<(), CallError> {
        for attempt in 0..REOPEN_ATTEMPTS {
            std::thread::sleep(Duration::from_millis(20 << attempt.min(5)));
            match open_subscription(&self.opener, &self.pattern) {
                Ok(stream) => {
                    self.stream = stream;
                    return Ok(());
                }
                Err(err) if is_lost(&err) => last = err,
                Err(err) => return Err(err),
            }
        }
        Err(last)
    }
}

/// A publishing stream (see [`Client::publisher`]). [`Publisher::finish`]
/// ends it and reports how many publications the server accepted.
#[derive(Debug)]
pub struct Publisher {
    upload: crate::Upload,
}

impl Publisher {
    /// Publishes `payload` on `topic`, blocking while flow control pushes back.
    pub fn publish(&mut self, topic: &str, payload: impl Into<Bytes>) -> Result<(), CallError> {
        patterns::check_topic(topic).map_err(|e| CallError::Malformed(e.to_string()))?;
        let message = FeedMessage::Publication {
            topic: topic.to_owned(),
            payload: payload.into(),
        };
        self.upload.write_message(message.encode())
    }

    /// Ends the stream; the server's count of accepted and rejected publications.
    pub fn finish(self) -> Result<String, CallError> {
        let reply = reply_ok(self.upload.finish()?.wait()?)?;
        Ok(String::from_utf8_lossy(&reply.body).into_owned())
    }
}

// ---- event streams ----

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
    fn new(
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

    fn reopen(&mut self, mut last: CallError) -> Result<(), CallError> {
        let resume = self.last_id.map_or(Resume::Latest, Resume::After);
        for attempt in 0..REOPEN_ATTEMPTS {
            std::thread::sleep(self.retry.min(Duration::from_millis(50 << attempt.min(4))));
            match open_events(
                &self.opener,
                &self.name,
                self.session.as_deref(),
                resume,
                self.epoch,
            ) {
                Ok((stream, retry, epoch)) => {
                    self.stream = stream;
                    self.retry = retry;
                    self.epoch = epoch;
                    return Ok(());
                }
                Err(err) if is_lost(&err) => last = err,
                Err(err) => return Err(err),
            }
        }
        Err(last)
    }
}

// ---- polling and long polling ----

/// Long polls a log from a cursor (`spec/patterns.md` §4.2): each
/// [`LongPoller::poll`] returns the entries after the cursor, waiting on the
/// server up to `wait` for one to appear, and moves the cursor past them, so
/// nothing is missed or delivered twice.
#[derive(Debug)]
pub struct LongPoller {
    opener: Opener,
    name: String,
    cursor: u64,
    wait: Duration,
}

impl LongPoller {
    /// The cursor: entries up to it were delivered.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The entries after the cursor (empty when `wait` passed with none).
    pub fn poll(&mut self) -> Result<Vec<Event>, CallError> {
        let request = CallRequest::new(patterns::LONG_POLL, "")
            .header(Bytes::from_static(patterns::STREAM), self.name.clone())
            .header(Bytes::from_static(patterns::AFTER), self.cursor.to_string())
            .header(
                Bytes::from_static(patterns::WAIT_MS),
                self.wait.as_millis().to_string(),
            )
            .timeout(self.wait + Duration::from_secs(10));
        let mut stream = self.opener.open_stream(request);
        stream.head()?;
        let mut events = Vec::new();
        while let Some(message) = stream.next_message() {
            if let Ok(FeedMessage::Event { id, kind, data }) = FeedMessage::decode(message?) {
                self.cursor = self.cursor.max(id);
                events.push(Event { id, kind, data });
            }
        }
        Ok(events)
    }
}

/// Polls a route on an interval with conditional fetch (`spec/patterns.md`
/// §4.1): each request carries the version last seen, and the server sends
/// a body only when it changed. Changes arrive on a bounded channel; the
/// polling thread stops when this is dropped.
#[derive(Debug)]
pub struct Poller {
    changes: Receiver<Result<Reply, CallError>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Polls answered "not modified".
    unchanged: Arc<AtomicU64>,
}

impl Poller {
    fn start(opener: Opener, route: String, body: Bytes, interval: Duration) -> Self {
        let (sender, changes): (SyncSender<Result<Reply, CallError>>, _) = mpsc::sync_channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        let unchanged = Arc::new(AtomicU64::new(0));
        let thread = {
            let stop = Arc::clone(&stop);
            let unchanged = Arc::clone(&unchanged);
            std::thread::Builder::new()
                .name("mux-poller".into())
                .spawn(move || {
                    let mut version: Option<Bytes> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let mut request = CallRequest::new(route.clone(), body.clone())
                            .timeout(interval.max(Duration::from_secs(5)));
                        if let Some(version) = &version {
                            request = request.header(
                                Bytes::from_static(patterns::IF_NONE_MATCH),
                                version.clone(),
                            );
                        }
                        let outcome = opener.start_call(request).wait();
                        let change = match outcome {
                            Ok(reply) if reply.status == Status::NOT_MODIFIED => {
                                unchanged.fetch_add(1, Ordering::Relaxed);
                                None
                            }
                            Ok(reply) => {
                                version = reply
                                    .metadata
                                    .get(patterns::ETAG)
                                    .map(Bytes::copy_from_slice);
                                Some(reply_ok(reply))
                            }
                            Err(err) => Some(Err(err)),
                        };
                        if let Some(change) = change {
                            // A full channel means the reader lags: wait for it, do not pile up.
                            let mut change = change;
                            loop {
                                match sender.try_send(change) {
                                    Ok(()) => break,
                                    Err(TrySendError::Full(back))
                                        if !stop.load(Ordering::Relaxed) =>
                                    {
                                        change = back;
                                        std::thread::sleep(Duration::from_millis(10));
                                    }
                                    Err(_) => return,
                                }
                            }
                        }
                        let left = interval.saturating_sub(started.elapsed());
                        let step = Duration::from_millis(10);
                        let mut slept = Duration::ZERO;
                        while slept < left && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(step.min(left - slept));
                            slept += step;
                        }
                    }
                })
                .ok()
        };
        Self {
            changes,
            stop,
            thread,
            unchanged,
        }
    }

    /// The next change (a reply whose version differs from the last), waiting at most `timeout`.
    pub fn next_change(&self, timeout: Duration) -> Option<Result<Reply, CallError>> {
        // A timeout and a stopped poller both mean "no change".
        self.changes.recv_timeout(timeout).ok()
    }

    /// How many polls the server answered with "not modified" (no body sent).
    pub fn unchanged(&self) -> u64 {
        self.unchanged.load(Ordering::Relaxed)
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---- sessions ----

/// A stateful session (`spec/patterns.md` §6): calls made through it carry
/// its token, so that handlers see its server-side state; its event feed
/// resumes after a reconnect from the last event seen, replaying what was
/// missed (within the server's replay buffer).
#[derive(Debug, Clone)]
pub struct Session {
    opener: Opener,
    token: String,
}

impl Session {
    /// The token: keep it to resume the session from another client.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Calls `route` within the session.
    pub fn call(&self, route: &str, body: impl Into<Bytes>) -> Result<Reply, CallError> {
        let request = CallRequest::new(route, body)
            .header(Bytes::from_static(patterns::SESSION), self.token.clone());
        self.opener.start_call(request).wait()
    }

    /// The session's events after `after` (0: all that are kept), as a resumable stream.
    pub fn events(&self, after: u64) -> Result<EventStream, CallError> {
        EventStream::new(
            self.opener.clone(),
            "",
            Some(self.token.clone()),
            Resume::After(after),
        )
    }
}

impl Client {
    /// Publishes `payload` on `topic` (`spec/patterns.md` §3.4).
    pub fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<(), CallError> {
        patterns::check_topic(topic).map_err(|e| CallError::Malformed(e.to_string()))?;
        let request = CallRequest::new(patterns::PUBLISH, payload)
            .header(Bytes::from_static(patterns::TOPIC), topic.to_owned());
        reply_ok(self.call_with(request)?).map(|_| ())
    }

    /// Opens a publishing stream (`spec/patterns.md` §3.4): publications
    /// flow on one stream with no answer each, so a fast publisher is held
    /// back only by flow control.
    pub fn publisher(&self) -> Publisher {
        Publisher {
            upload: self.open_upload(CallRequest::new(patterns::PUBLISH_STREAM, "")),
        }
    }

    /// Subscribes to a topic pattern: `*` matches one token, `>` the rest
    /// (`spec/patterns.md` §3.1).
    pub fn subscribe(&self, pattern: &str) -> Result<Subscription, CallError> {
        let stream = open_subscription(self.opener(), pattern)?;
        Ok(Subscription {
            opener: self.opener().clone(),
            pattern: pattern.to_owned(),
            stream,
        })
    }

    /// Opens the event stream `name`, from `resume` (`spec/patterns.md` §5).
    pub fn events(&self, name: &str, resume: Resume) -> Result<EventStream, CallError> {
        EventStream::new(self.opener().clone(), name, None, resume)
    }

    /// A long poller of the log `name`, from `cursor`, holding each poll up to `wait`.
    pub fn long_poller(&self, name: &str, cursor: u64, wait: Duration) -> LongPoller {
        LongPoller {
            opener: self.opener().clone(),
            name: name.to_owned(),
            cursor,
            wait,
        }
    }

    /// Polls `route` every `interval` with conditional fetch.
    pub fn poll(&self, route: &str, body: impl Into<Bytes>, interval: Duration) -> Poller {
        Poller::start(
            self.opener().clone(),
            route.to_owned(),
            body.into(),
            interval,
        )
    }

    /// Creates a session on the server.
    pub fn session(&self) -> Result<Session, CallError> {
        let reply = reply_ok(self.call(patterns::SESSION_OPEN, "")?)?;
        let token = String::from_utf8(reply.body.to_vec())
            .map_err(|_| CallError::Malformed("session token".into()))?;
        Ok(Session {
            opener: self.opener().clone(),
            token,
        })
    }

    /// Resumes the session `token` (created by this or another client).
    pub fn resume_session(&self, token: &str) -> Session {
        Session {
            opener: self.opener().clone(),
            token: token.to_owned(),
        }
    }
}
