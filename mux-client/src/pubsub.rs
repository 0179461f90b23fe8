//! Publish/subscribe on the client (`spec/patterns.md` §3): one-shot
//! publications, publishing streams, and subscriptions that resubscribe
//! by themselves after a reconnect.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use mux_core::patterns::{self, FeedMessage};
use mux_core::Utf8Bytes;

use crate::call::{CallRequest, Upload};
use crate::client::{Client, Opener};
use crate::deliveries::{decode_delivery, lend_delivery, Unread};
use crate::error::CallError;
use crate::message_stream::MessageStream;
use crate::reopen::{is_lost, reopen, reply_ok, FeedStep, StreamReopen, SERVER_ENDED};

/// What a subscription yields (`spec/patterns.md` §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A publication.
    Message {
        /// The topic it was published on: a slice of the received frame,
        /// like the payload (no copy, no allocation).
        topic: Utf8Bytes,
        /// Its payload.
        payload: Bytes,
    },
    /// The server dropped this many messages because we read too slowly
    /// (the server's slow-subscriber policy), or a reconnect lost some.
    Lost(u64),
}

/// A delivery lent to a reader for the length of a call
/// ([`DirectSubscription::next_with`](crate::DirectSubscription::next_with)):
/// a [`Delivery`] whose topic and payload borrow the connection's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryRef<'a> {
    /// A publication.
    Message {
        /// The topic it was published on.
        topic: &'a str,
        /// Its payload.
        payload: &'a [u8],
    },
    /// As [`Delivery::Lost`].
    Lost(u64),
}

/// A subscription to a topic pattern. It resubscribes by itself after a
/// reconnect (reporting [`Delivery::Lost`] with a count of 0: messages
/// published meanwhile are not replayed; pub/sub is at-most-once). Dropping
/// it unsubscribes.
///
/// As a [`Stream`](futures_core::Stream) it never blocks: a resubscription
/// is awaited like any message (it waits for the client's next connection).
#[derive(Debug)]
pub struct Subscription {
    opener: Opener,
    pattern: String,
    stream: MessageStream,
    /// As a `Stream`: its resubscription, if one is in progress.
    reopen_state: StreamReopen,
    /// Publications received together and not yet read.
    unread: Unread,
}

/// The request that subscribes to `pattern` (`spec/patterns.md` §3.2),
/// taking Publications messages of up to `max_message` bytes (the largest
/// message the reader accepts).
pub(crate) fn subscription_request(
    pattern: &str,
    max_message: usize,
) -> Result<CallRequest, CallError> {
    patterns::check_pattern(pattern).map_err(|e| CallError::Malformed(e.to_string()))?;
    Ok(CallRequest::new(patterns::SUBSCRIBE, "")
        .header(Bytes::from_static(patterns::TOPIC), pattern.to_owned())
        .header(Bytes::from_static(patterns::BATCH), max_message.to_string()))
}

/// What a blocking read of a subscription found.
enum Step {
    Message(Bytes),
    /// The stream was lost and the subscription made anew.
    Resubscribed,
}

fn open_subscription(opener: &Opener, pattern: &str) -> Result<MessageStream, CallError> {
    let stream = opener.open_stream(subscription_request(pattern, opener.max_response())?);
    stream.head()?;
    Ok(stream)
}

impl Subscription {
    fn new(opener: &Opener, pattern: &str, stream: MessageStream) -> Self {
        Self {
            opener: opener.clone(),
            pattern: pattern.to_owned(),
            stream,
            reopen_state: StreamReopen::default(),
            unread: Unread::default(),
        }
    }

    /// The pattern subscribed to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The next delivery, waiting at most `timeout` (`None` if nothing came).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Delivery, CallError>> {
        if let Some(delivery) = self.unread.next() {
            return Some(Ok(delivery));
        }
        self.next_step(timeout).map(|step| match step? {
            Step::Message(message) => decode_delivery(message, &mut self.unread),
            Step::Resubscribed => Ok(Delivery::Lost(0)),
        })
    }

    /// The next delivery, lent to `read` for the call and waiting at most
    /// `timeout` (`None`, and `read` not called, if nothing came): what
    /// `read` makes of it. The topic and payload are read where they lie
    /// in the message the client's loop handed over, so no handle on its
    /// buffer is taken per delivery beyond the message's own, which
    /// [`next_timeout`](Self::next_timeout)'s topic and payload add to. A
    /// resubscription is lent as [`DeliveryRef::Lost`] with a count of 0.
    pub fn next_with<R>(
        &mut self,
        timeout: Duration,
        read: impl FnOnce(DeliveryRef<'_>) -> R,
    ) -> Option<Result<R, CallError>> {
        let read = match self.unread.lend(read) {
            Ok(made) => return Some(Ok(made)),
            Err(read) => read,
        };
        self.next_step(timeout).map(|step| match step? {
            Step::Message(message) => {
                lend_delivery(&message, Some(&message), &mut self.unread, read)
            }
            Step::Resubscribed => Ok(read(DeliveryRef::Lost(0))),
        })
    }

    /// The next message, or the resubscription that replaced a lost stream.
    fn next_step(&mut self, timeout: Duration) -> Option<Result<Step, CallError>> {
        match self.stream.next_timeout(timeout) {
            Some(Ok(message)) => Some(Ok(Step::Message(message))),
            Some(Err(err)) if is_lost(&err) => Some(self.reopen(err).map(|()| Step::Resubscribed)),
            Some(Err(err)) => Some(Err(err)),
            None if self.stream.is_over() => Some(
                self.reopen(CallError::ConnectionLost(SERVER_ENDED.into()))
                    .map(|()| Step::Resubscribed),
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

    fn reopen(&mut self, last: CallError) -> Result<(), CallError> {
        let delay = |attempt: u32| Duration::from_millis(20 << attempt.min(5));
        self.stream = reopen(last, delay, || {
            open_subscription(&self.opener, &self.pattern)
        })?;
        Ok(())
    }
}

impl futures_core::Stream for Subscription {
    type Item = Result<Delivery, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(delivery) = this.unread.next() {
            return Poll::Ready(Some(Ok(delivery)));
        }
        let (opener, pattern) = (&this.opener, &this.pattern);
        let step = this.reopen_state.poll(&mut this.stream, cx, || {
            Ok(opener.open_stream(subscription_request(pattern, opener.max_response())?))
        });
        step.map(|step| {
            step.map(|step| match step {
                FeedStep::Message(message) => decode_delivery(message, &mut this.unread),
                // Messages published meanwhile are not replayed.
                FeedStep::Reopened(_) => Ok(Delivery::Lost(0)),
                FeedStep::Failed(err) => Err(err),
            })
        })
    }
}

/// A publishing stream (see [`Client::publisher`]). [`Publisher::finish`]
/// ends it and reports how many publications the server accepted.
#[derive(Debug)]
pub struct Publisher {
    upload: Upload,
}

impl Publisher {
    /// Publishes `payload` on `topic`, blocking while flow control pushes back.
    pub fn publish(&mut self, topic: &str, payload: impl Into<Bytes>) -> Result<(), CallError> {
        patterns::check_topic(topic).map_err(|e| CallError::Malformed(e.to_string()))?;
        let message = FeedMessage::Publication {
            topic: topic.into(),
            payload: payload.into(),
        };
        self.upload.write_message(message.encode())
    }

    /// [`Publisher::publish`] as a future: the task, not the thread, waits
    /// while flow control pushes back.
    pub async fn publish_async(
        &mut self,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), CallError> {
        patterns::check_topic(topic).map_err(|e| CallError::Malformed(e.to_string()))?;
        let message = FeedMessage::Publication {
            topic: topic.into(),
            payload: payload.into(),
        };
        self.upload.write_message_async(message.encode()).await
    }

    /// [`Publisher::finish`] as a future.
    pub async fn finish_async(self) -> Result<String, CallError> {
        let reply = reply_ok(self.upload.finish_async().await?)?;
        Ok(String::from_utf8_lossy(&reply.body).into_owned())
    }

    /// Ends the stream; the server's count of accepted and rejected publications.
    pub fn finish(self) -> Result<String, CallError> {
        let reply = reply_ok(self.upload.finish()?.wait()?)?;
        Ok(String::from_utf8_lossy(&reply.body).into_owned())
    }
}

impl Client {
    /// Publishes `payload` on `topic` (`spec/patterns.md` §3.4).
    pub fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<(), CallError> {
        reply_ok(self.call_with(publication(topic, payload)?)?).map(|_| ())
    }

    /// [`Client::publish`] as a future, for any executor: it never blocks
    /// the thread (a full command queue makes it wait).
    pub fn publish_async(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> impl Future<Output = Result<(), CallError>> + Send + 'static {
        let call = publication(topic, payload).map(|request| self.start_call(request));
        async move { reply_ok(call?.await?).map(|_| ()) }
    }

    /// [`Client::subscribe`] as a future, for any executor: it resolves once
    /// the server accepted the subscription, without blocking the thread.
    pub async fn subscribe_async(&self, pattern: &str) -> Result<Subscription, CallError> {
        let stream = self
            .opener()
            .open_stream(subscription_request(pattern, self.opener().max_response())?);
        stream.head_async().await?;
        Ok(Subscription::new(self.opener(), pattern, stream))
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
        Ok(Subscription::new(self.opener(), pattern, stream))
    }
}

/// The request of a one-shot publication.
fn publication(topic: &str, payload: impl Into<Bytes>) -> Result<CallRequest, CallError> {
    patterns::check_topic(topic).map_err(|e| CallError::Malformed(e.to_string()))?;
    Ok(CallRequest::new(patterns::PUBLISH, payload)
        .header(Bytes::from_static(patterns::TOPIC), topic.to_owned()))
}
