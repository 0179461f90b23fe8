//! A one-shot completion: the result of an operation that the event loop
//! finishes on behalf of another thread, awaited in three styles: blocking
//! ([`Completion::wait`]), polling ([`Completion::try_take`]) or as a
//! `std::future::Future` that any executor can drive.
//!
//! Implements no rule of the spec.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use mux_runtime::deadline_within;

struct State<T> {
    value: Option<T>,
    /// The completer was dropped without a value.
    abandoned: bool,
    /// The completion was dropped: nobody waits for the value any more.
    cancelled: bool,
    waker: Option<Waker>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the state half-written
        // (every critical section is a few assignments), so a poisoned lock is
        // still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The waiting side.
pub(crate) struct Completion<T> {
    shared: Arc<Shared<T>>,
}

/// The completing side, held by the event loop.
pub(crate) struct Completer<T> {
    shared: Arc<Shared<T>>,
    done: bool,
}

impl<T> std::fmt::Debug for Completion<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion")
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl<T> std::fmt::Debug for Completer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completer")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// A linked completer and completion.
pub(crate) fn completion<T>() -> (Completer<T>, Completion<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            value: None,
            abandoned: false,
            cancelled: false,
            waker: None,
        }),
        ready: Condvar::new(),
    });
    (
        Completer {
            shared: Arc::clone(&shared),
            done: false,
        },
        Completion { shared },
    )
}

impl<T> Completer<T> {
    /// Delivers the value and wakes the waiter.
    pub(crate) fn complete(mut self, value: T) {
        self.done = true;
        let waker = {
            let mut state = self.shared.lock();
            state.value = Some(value);
            state.waker.take()
        };
        self.shared.ready.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the waiting side was dropped (the operation was cancelled).
    pub(crate) fn is_cancelled(&self) -> bool {
        self.shared.lock().cancelled
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let waker = {
            let mut state = self.shared.lock();
            state.abandoned = true;
            state.waker.take()
        };
        self.shared.ready.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Completion<T> {
    /// Whether the value (or the abandonment) has arrived.
    pub(crate) fn is_ready(&self) -> bool {
        let state = self.shared.lock();
        state.value.is_some() || state.abandoned
    }

    /// Takes the value if it has arrived; `Err(())` if it never will.
    pub(crate) fn try_take(&mut self) -> Result<Option<T>, Abandoned> {
        let mut state = self.shared.lock();
        match state.value.take() {
            Some(value) => Ok(Some(value)),
            None if state.abandoned => Err(Abandoned),
            None => Ok(None),
        }
    }

    /// Blocks until the value arrives; `Err` if the completer was dropped.
    pub(crate) fn wait(self) -> Result<T, Abandoned> {
        let mut state = self.shared.lock();
        loop {
            if let Some(value) = state.value.take() {
                return Ok(value);
            }
            if state.abandoned {
                return Err(Abandoned);
            }
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Blocks until the value arrives or `timeout` passes (`Ok(None)`).
    pub(crate) fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<T>, Abandoned> {
        let deadline = deadline_within(timeout);
        let mut state = self.shared.lock();
        loop {
            if let Some(value) = state.value.take() {
                return Ok(Some(value));
            }
            if state.abandoned {
                return Err(Abandoned);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            state = match self.shared.ready.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        self.shared.lock().cancelled = true;
    }
}

impl<T> Future for Completion<T> {
    type Output = Result<T, Abandoned>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.lock();
        if let Some(value) = state.value.take() {
            return Poll::Ready(Ok(value));
        }
        if state.abandoned {
            return Poll::Ready(Err(Abandoned));
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The completer was dropped without delivering a value (the event loop
/// stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Abandoned;

impl std::fmt::Display for Abandoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the event loop stopped before completing the operation")
    }
}

impl std::error::Error for Abandoned {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_wait_gets_the_value_from_another_thread() {
        let (completer, completion) = completion();
        let thread = std::thread::spawn(move || completer.complete(42));
        assert_eq!(completion.wait(), Ok(42));
        thread.join().expect("thread");
    }

    #[test]
    fn dropped_completer_abandons() {
        let (completer, mut completion) = completion::<u8>();
        drop(completer);
        assert_eq!(completion.try_take(), Err(Abandoned));
    }

    #[test]
    fn dropped_completion_cancels() {
        let (completer, completion) = completion::<u8>();
        assert!(!completer.is_cancelled());
        drop(completion);
        assert!(completer.is_cancelled());
    }

    #[test]
    fn wait_timeout_expires() {
        let (_completer, mut completion) = completion::<u8>();
        assert_eq!(completion.wait_timeout(Duration::from_millis(1)), Ok(None));
    }
}
