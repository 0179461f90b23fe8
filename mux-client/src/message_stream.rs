//! [`MessageStream`]: the messages of a streaming response, as they come
//! (`spec/mux-v1.md` §7), read blocking, with a timeout, or as a future. The
//! base of every stream pattern: subscriptions, event streams, session feeds
//! and long polls.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use mux_core::rpc::ResponseHead;
use mux_runtime::{LoopHandle, SendPoll};

use crate::command::{Command, PendingCall};
use crate::error::CallError;
use crate::inbox::{Inbox, Next};

/// How long a stream pattern waits for the server's answer to its request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A stream of messages from the server (the response of a streaming call).
/// Dropping it before the server ends it cancels the stream.
#[derive(Debug)]
pub struct MessageStream {
    shared: Arc<Inbox>,
    /// Messages taken from the shared queue in one batch, handed out one by one.
    local: VecDeque<Bytes>,
    /// As a `Stream`, the failure was yielded: the stream is over.
    failed: bool,
    /// The stream's call, while the loop's command queue had no room for it
    /// (behind a lock so that `head` can send it through `&self`).
    unsent: std::sync::Mutex<Option<PendingCall>>,
    /// The loop must be told to read the stream again, and its command
    /// queue had no room for that yet.
    resume_unsent: bool,
    id: u64,
    handle: LoopHandle<Command>,
}

impl MessageStream {
    pub(crate) fn new(
        shared: Arc<Inbox>,
        id: u64,
        handle: LoopHandle<Command>,
        unsent: Option<PendingCall>,
    ) -> Self {
        Self {
            shared,
            local: VecDeque::new(),
            failed: false,
            unsent: std::sync::Mutex::new(unsent),
            resume_unsent: false,
            id,
            handle,
        }
    }

    /// Whether the server ended the stream and every message was taken.
    pub(crate) fn is_over(&self) -> bool {
        self.local.is_empty() && self.shared.is_over()
    }

    /// Waits for the response head: `Err(Rejected)` if the server refused.
    pub fn head(&self) -> Result<ResponseHead, CallError> {
        self.send_blocking();
        self.shared.head(HEAD_TIMEOUT)
    }

    fn take_unsent(&self) -> Option<PendingCall> {
        self.unsent
            .lock()
            .map(|mut unsent| unsent.take())
            .unwrap_or_else(|poisoned| poisoned.into_inner().take())
    }

    /// Hands the held call to the loop, blocking while its queue is full.
    fn send_blocking(&self) {
        if let Some(call) = self.take_unsent() {
            call.send_blocking(&self.handle);
        }
    }

    /// Hands the held call to the loop as a future: `false` while the
    /// queue is full (the task is woken when it has room).
    fn poll_sent(&self, cx: &Context<'_>) -> bool {
        let Some(call) = self.take_unsent() else {
            return true;
        };
        let Some(call) = call.poll_send(&self.handle, cx) else {
            return true;
        };
        if let Ok(mut unsent) = self.unsent.lock() {
            *unsent = Some(call);
        }
        false
    }

    /// The response head as a future (`Err(Rejected)` if the server
    /// refused), for any executor; it never blocks the thread.
    pub fn head_async(&self) -> impl Future<Output = Result<ResponseHead, CallError>> + '_ {
        std::future::poll_fn(|cx| match self.poll_head(cx) {
            Some(head) => Poll::Ready(head),
            None => Poll::Pending,
        })
    }

    /// The head if it has arrived; otherwise `cx`'s task is woken when it does.
    pub(crate) fn poll_head(&self, cx: &Context<'_>) -> Option<Result<ResponseHead, CallError>> {
        if !self.poll_sent(cx) {
            return None;
        }
        self.shared.poll_head(cx.waker())
    }

    /// Polls for the next message: `Ready(None)` at the end.
    pub(crate) fn poll_message(
        &mut self,
        cx: &Context<'_>,
    ) -> Poll<Option<Result<Bytes, CallError>>> {
        match self.take(None, Some(cx.waker())) {
            Next::Message(message) => Poll::Ready(Some(Ok(message))),
            Next::End => Poll::Ready(None),
            Next::Failed(err) => Poll::Ready(Some(Err(err))),
            Next::Nothing => Poll::Pending,
        }
    }

    fn take(&mut self, wait: Option<Duration>, waker: Option<&std::task::Waker>) -> Next {
        if waker.is_none() {
            // Through `&mut self` the lock costs nothing; through `lock` it
            // was two atomic operations per message read.
            let unsent = self.unsent.get_mut();
            if let Some(call) = unsent.unwrap_or_else(|p| p.into_inner()).take() {
                call.send_blocking(&self.handle);
            }
        }
        if let Some(message) = self.local.pop_front() {
            return Next::Message(message);
        }
        if self.resume_unsent {
            self.resume_unsent = !self.send_resume(waker);
        }
        let (next, resume) = self.shared.next(wait, waker, &mut self.local);
        if resume {
            // The loop stopped reading while our queue was full: room again.
            self.resume_unsent = !self.send_resume(waker);
        }
        next
    }

    /// Tells the loop to read the stream again; `false` if its command queue
    /// is full and an async reader must try again (its task is woken when
    /// there is room). Dropping it would leave the stream paused for good.
    fn send_resume(&self, waker: Option<&std::task::Waker>) -> bool {
        let resume = Command::Resume(self.id);
        match waker {
            // A blocking reader waits for room: the loop always makes some.
            None => {
                let _ = self.handle.send(resume);
                true
            }
            Some(waker) => !matches!(
                self.handle
                    .poll_send(&mut Context::from_waker(waker), resume),
                SendPoll::Full(_)
            ),
        }
    }

    /// The next message, blocking; `None` once the server ended the stream.
    /// A stream that failed returns its error from then on: stop at the first.
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
        self.stream.poll_message(cx)
    }
}

/// The messages as a [`Stream`](futures_core::Stream), for any executor:
/// `None` once the server ended the stream; a failure is the last item.
impl futures_core::Stream for MessageStream {
    type Item = Result<Bytes, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let next = self.poll_message(cx);
        if let Poll::Ready(Some(Err(_))) = &next {
            self.failed = true;
        }
        next
    }
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        if self.take_unsent().is_some() {
            return; // never reached the loop: nothing to cancel
        }
        if !self.shared.is_over() {
            let _ = self.handle.try_send(Command::Cancel(self.id));
        }
    }
}
