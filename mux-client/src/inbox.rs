//! The inbox of a message stream (the response side of subscriptions,
//! event streams, session feeds and long polls): messages cross from the
//! loop to the application through a bounded queue. When it is full the
//! loop stops reading the stream, so flow control pushes back on the server
//! end to end (`spec/mux-v1.md` §9.4.2).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_core::rpc::ResponseHead;
use mux_runtime::deadline_within;

use crate::error::CallError;

/// Messages buffered between the loop and the application per stream.
pub(crate) const FEED_QUEUE: usize = 256;

/// Bytes buffered between the loop and the application per stream: four of
/// the largest frames. With only [`FEED_QUEUE`] as the bound, a download of
/// 64 KiB messages kept up to 32 MiB between the two threads (the loop's
/// queue and the reader's): every read buffer was still held when the loop
/// needed room, so each was a fresh allocation, faulted in page by page
/// (32,000-200,000 page faults per 4 GiB). Bounded at 256 KiB, a 4 GiB
/// download through `Client` took a median of 1.9 s of client CPU against
/// 2.4 s at 1 MiB and 2.4 s unbounded (six, six and seven runs of one-off
/// programs, interleaved, all with the read buffer's block reuse; unbounded
/// and without it, 3.0 s over eight runs).
pub(crate) const FEED_BYTES: usize = 256 << 10;

/// How much more the loop may queue for a stream's reader.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Room {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

impl Room {
    /// No bound: a reader on the loop's own thread.
    pub(crate) const UNBOUNDED: Self = Self {
        messages: usize::MAX,
        bytes: usize::MAX,
    };

    pub(crate) fn is_empty(self) -> bool {
        self.messages == 0 || self.bytes == 0
    }
}

#[derive(Debug, Default)]
struct State {
    head: Option<Result<ResponseHead, CallError>>,
    queue: VecDeque<Bytes>,
    /// The bytes of the messages in `queue`.
    queued_bytes: usize,
    /// `Some(Ok)` once the server ended the stream, `Some(Err)` if it failed.
    ended: Option<Result<(), CallError>>,
    /// The loop stopped reading because `queue` was full.
    paused: bool,
    waker: Option<Waker>,
    /// Readers blocked on the condition variable: only then is a notify
    /// worth its system call.
    sleepers: u32,
}

/// The state shared by the loop and a message stream's reader.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    state: Mutex<State>,
    changed: Condvar,
}

/// What a reader gets next.
pub(crate) enum Next {
    Message(Bytes),
    End,
    Failed(CallError),
    Nothing,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn notify(&self, mut state: MutexGuard<'_, State>) {
        let waker = state.waker.take();
        let sleepers = state.sleepers;
        drop(state);
        if sleepers > 0 {
            self.changed.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    // ---- loop side ----

    /// How much more the loop may queue now; when nothing, the loop stops
    /// reading the stream until the reader resumes it.
    pub(crate) fn room(&self) -> Room {
        let mut state = self.lock();
        let room = Room {
            messages: FEED_QUEUE.saturating_sub(state.queue.len()),
            bytes: FEED_BYTES.saturating_sub(state.queued_bytes),
        };
        if room.is_empty() {
            state.paused = true;
        }
        room
    }

    pub(crate) fn set_head(&self, head: Result<ResponseHead, CallError>) {
        let mut state = self.lock();
        state.head.get_or_insert(head);
        self.notify(state);
    }

    /// Queues a batch of messages without waking the reader; returns whether
    /// [`Inbox::wake`] must follow. The loop wakes readers once it has read
    /// every ready socket, so that a woken reader does not preempt it halfway.
    /// A full queue afterwards pauses the loop's reading.
    pub(crate) fn push_all(&self, messages: Vec<Bytes>) -> bool {
        if messages.is_empty() {
            return false;
        }
        let mut state = self.lock();
        state.queued_bytes += messages.iter().map(Bytes::len).sum::<usize>();
        state.queue.extend(messages);
        if state.queue.len() >= FEED_QUEUE || state.queued_bytes >= FEED_BYTES {
            state.paused = true;
        }
        true
    }

    /// Wakes the reader (after [`Inbox::push_all`]).
    pub(crate) fn wake(&self) {
        let state = self.lock();
        self.notify(state);
    }

    pub(crate) fn end(&self, outcome: Result<(), CallError>) {
        let mut state = self.lock();
        if state.head.is_none() {
            let error = outcome
                .clone()
                .err()
                .unwrap_or(CallError::Malformed("stream ended before its head".into()));
            state.head = Some(Err(error));
        }
        state.ended.get_or_insert(outcome);
        self.notify(state);
    }

    // ---- application side ----

    /// Waits for the response head (up to `timeout`).
    pub(crate) fn head(&self, timeout: Duration) -> Result<ResponseHead, CallError> {
        let deadline = deadline_within(timeout);
        let mut state = self.lock();
        loop {
            if let Some(head) = &state.head {
                return head.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CallError::DeadlineExceeded);
            }
            state.sleepers += 1;
            state = match self.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
            state.sleepers -= 1;
        }
    }

    /// The response head if it has arrived; otherwise registers `waker`.
    pub(crate) fn poll_head(&self, waker: &Waker) -> Option<Result<ResponseHead, CallError>> {
        let mut state = self.lock();
        if let Some(head) = &state.head {
            return Some(head.clone());
        }
        if let Some(Err(err)) = &state.ended {
            return Some(Err(err.clone()));
        }
        state.waker = Some(waker.clone());
        None
    }

    /// Takes the next message; `wait` bounds the blocking (`None`: forever,
    /// `Some(ZERO)`: not at all). Returns whether the loop should resume reading.
    ///
    /// Every queued message moves to the reader's `local` queue at once (it
    /// must be empty), so that a fast stream costs one lock per batch, not
    /// per message; the reader and the loop then hold at most two queues' worth.
    pub(crate) fn next(
        &self,
        wait: Option<Duration>,
        waker: Option<&Waker>,
        local: &mut VecDeque<Bytes>,
    ) -> (Next, bool) {
        let deadline = wait.map(deadline_within);
        let mut state = self.lock();
        loop {
            if !state.queue.is_empty() {
                std::mem::swap(&mut state.queue, local);
                state.queued_bytes = 0;
                let resume = std::mem::take(&mut state.paused);
                return match local.pop_front() {
                    Some(message) => (Next::Message(message), resume),
                    None => (Next::Nothing, resume),
                };
            }
            match &state.ended {
                Some(Ok(())) => return (Next::End, false),
                Some(Err(err)) => return (Next::Failed(err.clone()), false),
                None => {}
            }
            if let Some(waker) = waker {
                state.waker = Some(waker.clone());
                return (Next::Nothing, false);
            }
            let left = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return (Next::Nothing, false);
                    }
                    left
                }
                None => Duration::from_secs(3600),
            };
            state.sleepers += 1;
            state = match self.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
            state.sleepers -= 1;
        }
    }

    /// Whether the stream is over (ended or failed).
    pub(crate) fn is_over(&self) -> bool {
        self.lock().ended.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_pauses_at_four_large_messages_and_resumes_when_they_are_taken() {
        let inbox = Inbox::default();
        let message = Bytes::from(vec![0u8; 64 << 10]);
        let mut pushed = 0;
        while !inbox.room().is_empty() {
            inbox.push_all(vec![message.clone()]);
            pushed += 1;
        }
        assert_eq!(pushed, FEED_BYTES / message.len());
        let mut local = VecDeque::new();
        let (next, resume) = inbox.next(Some(Duration::ZERO), None, &mut local);
        assert!(matches!(next, Next::Message(_)) && resume);
        assert_eq!(local.len(), pushed - 1, "the whole queue moved at once");
        assert_eq!(inbox.room().bytes, FEED_BYTES);
    }

    #[test]
    fn small_messages_are_bounded_by_count() {
        let inbox = Inbox::default();
        inbox.push_all(vec![Bytes::from_static(b"x"); FEED_QUEUE]);
        let room = inbox.room();
        assert!(room.is_empty() && room.messages == 0, "{room:?}");
    }
}
