//! Server-to-client message streams (the response side of subscriptions,
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

use crate::CallError;

/// Messages buffered between the loop and the application per stream.
pub(crate) const FEED_QUEUE: usize = 256;

#[derive(Debug, Default)]
struct State {
    head: Option<Result<ResponseHead, CallError>>,
    queue: VecDeque<Bytes>,
    /// `Some(Ok)` once the server ended the stream, `Some(Err)` if it failed.
    ended: Option<Result<(), CallError>>,
    /// The loop stopped reading because `queue` was full.
    paused: bool,
    waker: Option<Waker>,
}

/// The state shared by the loop and a message stream's reader.
#[derive(Debug, Default)]
pub(crate) struct FeedShared {
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

impl FeedShared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn notify(&self, mut state: MutexGuard<'_, State>) {
        let waker = state.waker.take();
        drop(state);
        self.changed.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    // ---- loop side ----

    /// Whether the loop may read more of the stream.
    pub(crate) fn has_room(&self) -> bool {
        let mut state = self.lock();
        if state.queue.len() >= FEED_QUEUE {
            state.paused = true;
            return false;
        }
        true
    }

    pub(crate) fn set_head(&self, head: Result<ResponseHead, CallError>) {
        let mut state = self.lock();
        state.head.get_or_insert(head);
        self.notify(state);
    }

    pub(crate) fn push(&self, message: Bytes) {
        let mut state = self.lock();
        state.queue.push_back(message);
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
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(head) = &state.head {
                return head.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CallError::DeadlineExceeded);
            }
            state = match self.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Takes the next message; `wait` bounds the blocking (`None`: forever,
    /// `Some(ZERO)`: not at all). Returns whether the loop should resume reading.
    pub(crate) fn next(&self, wait: Option<Duration>, waker: Option<&Waker>) -> (Next, bool) {
        let deadline = wait.map(|w| Instant::now() + w);
        let mut state = self.lock();
        loop {
            if let Some(message) = state.queue.pop_front() {
                let resume = state.paused && state.queue.len() <= FEED_QUEUE / 2;
                if resume {
                    state.paused = false;
                }
                return (Next::Message(message), resume);
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
            state = match self.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Whether the stream is over (ended or failed).
    pub(crate) fn is_over(&self) -> bool {
        self.lock().ended.is_some()
    }
}
