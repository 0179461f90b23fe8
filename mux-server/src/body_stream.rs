//! Response bodies that come as they are made: a [`Stream`] of messages
//! ([`Response::stream`](crate::Response::stream)), or a [`BodyWriter`] that
//! a handler (sync or async), or any thread it hands it to, writes to
//! ([`Response::channel`](crate::Response::channel)).
//!
//! The loop asks for the next message only when the stream's send buffer
//! has room, so flow control reaches the producer: a writer waits (its
//! thread, or its task with [`BodyWriter::write_async`]) while the client
//! reads slowly. A writer dropped without [`BodyWriter::finish`] (a handler
//! that failed halfway) resets the stream with INTERNAL_ERROR rather than
//! ending it as if the body were whole.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_core::Stream;

/// A body as the loop reads it: messages, then the end, or why it failed.
pub(crate) type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// The client went away, or the response was dropped: nobody reads the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the response body has no reader any more (the stream ended)")]
pub struct BodyClosed;

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    /// The writer finished: the body ends after the queue.
    finished: bool,
    /// The writer went away without finishing.
    abandoned: bool,
    /// The loop no longer reads (the stream ended or was reset).
    reader_gone: bool,
    /// The loop's waker, while it waits for a message.
    reader: Option<Waker>,
    /// An async writer waiting for room.
    writer: Option<Waker>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    room: Condvar,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Writes a streamed response body, message by message, waiting while the
/// client reads slowly. Made by [`Response::channel`](crate::Response::channel).
#[derive(Debug)]
pub struct BodyWriter {
    shared: Arc<Shared>,
    finished: bool,
}

impl BodyWriter {
    /// Writes one message, blocking the thread while `capacity` messages
    /// wait for the connection.
    pub fn write(&self, message: impl Into<Bytes>) -> Result<(), BodyClosed> {
        let mut state = self.shared.lock();
        loop {
            if state.reader_gone {
                return Err(BodyClosed);
            }
            if state.queue.len() < self.shared.capacity {
                break;
            }
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.queue.push_back(message.into());
        wake_reader(state);
        Ok(())
    }

    /// Writes one message as a future, for async handlers: the task (not
    /// the thread) waits while `capacity` messages wait for the connection.
    pub async fn write_async(&self, message: impl Into<Bytes>) -> Result<(), BodyClosed> {
        let mut message = Some(message.into());
        std::future::poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.reader_gone {
                return Poll::Ready(Err(BodyClosed));
            }
            if state.queue.len() >= self.shared.capacity {
                state.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if let Some(message) = message.take() {
                state.queue.push_back(message);
            }
            wake_reader(state);
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Ends the body: the stream ends once the written messages are sent.
    pub fn finish(mut self) {
        self.finished = true;
        let mut state = self.shared.lock();
        state.finished = true;
        wake_reader(state);
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.shared.lock();
            state.abandoned = true;
            wake_reader(state);
        }
    }
}

fn wake_reader(mut state: MutexGuard<'_, State>) {
    let waker = state.reader.take();
    drop(state);
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The loop's side of a [`BodyWriter`].
struct ChannelReader {
    shared: Arc<Shared>,
}

impl Stream for ChannelReader {
    type Item = Result<Bytes, String>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = self.shared.lock();
        if let Some(message) = state.queue.pop_front() {
            let writer = state.writer.take();
            drop(state);
            self.shared.room.notify_one();
            if let Some(writer) = writer {
                writer.wake();
            }
            return Poll::Ready(Some(Ok(message)));
        }
        if state.finished {
            return Poll::Ready(None);
        }
        if state.abandoned {
            return Poll::Ready(Some(Err(
                "the body's writer went away before finishing it".into()
            )));
        }
        state.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ChannelReader {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.reader_gone = true;
        let writer = state.writer.take();
        drop(state);
        self.shared.room.notify_all();
        if let Some(writer) = writer {
            writer.wake();
        }
    }
}

/// A channel of at most `capacity` waiting messages: its writer, and the
/// body the loop reads.
pub(crate) fn channel(capacity: usize) -> (BodyWriter, BodyStream) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        room: Condvar::new(),
        capacity: capacity.max(1),
    });
    let writer = BodyWriter {
        shared: Arc::clone(&shared),
        finished: false,
    };
    (writer, Box::pin(ChannelReader { shared }))
}

/// A stream of messages as a body that cannot fail.
pub(crate) fn from_stream(stream: impl Stream<Item = Bytes> + Send + 'static) -> BodyStream {
    Box::pin(Infallible(Box::pin(stream)))
}

struct Infallible(Pin<Box<dyn Stream<Item = Bytes> + Send>>);

impl Stream for Infallible {
    type Item = Result<Bytes, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx).map(|item| item.map(Ok))
    }
}
