//! Backpressure between an uploading thread and the loop: the bytes a
//! writer handed over that the connection has not yet accepted are capped;
//! a writer over the cap blocks (or is told to wait) until the loop reports
//! bytes accepted, so no queue between them grows without bound.
//!
//! With the stream's send buffer and flow control (spec §9.4.2) it makes
//! backpressure end to end: a slow server slows the writing thread.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::error::CallError;

#[derive(Debug, Default)]
struct State {
    /// Handed to the loop, not yet accepted by the connection.
    outstanding: usize,
    /// The call ended; writes fail with this.
    failed: Option<CallError>,
    /// An async writer waiting for credit.
    waker: Option<Waker>,
}

/// The shared counter.
#[derive(Debug, Default)]
pub(crate) struct Credit {
    state: Mutex<State>,
    changed: Condvar,
}

impl Credit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves `len` bytes, waiting while more than `cap` would be outstanding
    /// (a write larger than `cap` waits until nothing is outstanding).
    pub(crate) fn acquire(&self, len: usize, cap: usize, wait: bool) -> Result<bool, CallError> {
        let mut state = self.lock();
        loop {
            if let Some(err) = &state.failed {
                return Err(err.clone());
            }
            if state.outstanding == 0 || state.outstanding + len <= cap {
                state.outstanding += len;
                return Ok(true);
            }
            if !wait {
                return Ok(false);
            }
            state = match self.changed.wait_timeout(state, Duration::from_secs(1)) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// [`Credit::acquire`] for async writers: `Pending` (and `waker` woken
    /// when bytes are accepted) instead of blocking.
    pub(crate) fn poll_acquire(
        &self,
        len: usize,
        cap: usize,
        waker: &Waker,
    ) -> Poll<Result<(), CallError>> {
        let mut state = self.lock();
        if let Some(err) = &state.failed {
            return Poll::Ready(Err(err.clone()));
        }
        if state.outstanding == 0 || state.outstanding + len <= cap {
            state.outstanding += len;
            return Poll::Ready(Ok(()));
        }
        state.waker = Some(waker.clone());
        Poll::Pending
    }

    fn wake(&self, mut state: MutexGuard<'_, State>) {
        let waker = state.waker.take();
        drop(state);
        self.changed.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The loop reports `len` bytes accepted by the connection.
    pub(crate) fn release(&self, len: usize) {
        if len == 0 {
            return;
        }
        let mut state = self.lock();
        state.outstanding = state.outstanding.saturating_sub(len);
        self.wake(state);
    }

    /// The call ended: wake writers with `error`.
    pub(crate) fn fail(&self, error: CallError) {
        let mut state = self.lock();
        state.failed.get_or_insert(error);
        self.wake(state);
    }
}
