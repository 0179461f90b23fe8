//! Async handlers ([`ServerBuilder::route_async`](crate::ServerBuilder::route_async)):
//! each request's future is polled on the loop that owns its stream, and its
//! waker asks that loop to poll it again. No runtime and no thread per
//! request: a handler can await any `Send` future, whichever executor or
//! thread completes it (a database client's, a timer thread's), because a
//! wake is only a message to the loop.
//!
//! A wake sends [`Command::Poll`] without blocking. When the loop's command
//! queue is full (so the loop has work queued and will run), the task is put
//! on a deferred list and the loop's waker rung; the loop takes the list at
//! the end of its pass and polls those tasks from a timer due at once, so
//! that their answers are written and flushed like any other.
//!
//! A task ends with its answer, or is dropped (its future cancelled) when
//! its stream is reset, its connection closes, or its deadline passes (504).
//!
//! Streamed response bodies (`body_stream.rs`) are woken the same way: their
//! wakes come back as [`Polled::Body`], and the loop writes more of them.

use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crossbeam_channel::TrySendError;
use mux_core::rpc::Status;
use mux_core::StreamId;
use mux_runtime::{ConnKey, LoopHandle, PlainKey, StreamMap};

use crate::command::{Command, ReplyTo};
use crate::request::{HandlerError, HandlerResult, Request, Response};

/// A request's future, as an async handler returns it.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;

/// An async handler as the server stores it.
pub(crate) type AsyncHandlerFn = Arc<dyn Fn(Request) -> HandlerFuture + Send + Sync>;

/// Timer tokens of task deadlines: this bit, and the task number below.
const DEADLINE_TIMER: u64 = 1 << 61;
/// The timer that polls tasks whose wake found the command queue full.
pub(crate) const DEFERRED_TIMER: u64 = 3;

/// Whether a timer token is a task deadline.
pub(crate) fn is_deadline_timer(token: u64) -> bool {
    token & DEADLINE_TIMER != 0 && token & (1 << 62) == 0
}

/// One request's future and where its answer goes.
struct Task {
    to: ReplyTo,
    future: HandlerFuture,
    waker: Arc<TaskWaker>,
}

/// Wakes a task: a command to its loop, sent once until the task is polled.
struct TaskWaker {
    task: u64,
    /// A poll is already asked for.
    scheduled: AtomicBool,
    handle: LoopHandle<Command>,
    deferred: Arc<Deferred>,
}

/// Wakes that found the loop's command queue full. The flag lets the loop
/// check for them at the end of every pass without taking the lock.
#[derive(Debug, Default)]
struct Deferred {
    any: AtomicBool,
    tasks: Mutex<Vec<u64>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        match self.handle.try_send(Command::Poll(self.task)) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                // Never block the waking thread (it may be the loop itself).
                if let Ok(mut tasks) = self.deferred.tasks.lock() {
                    tasks.push(self.task);
                }
                self.deferred.any.store(true, Ordering::Release);
                self.handle.nudge();
            }
        }
    }
}

/// What a poll of a task came to.
pub(crate) enum Polled {
    /// The handler's answer, for this requester.
    Answer(ReplyTo, Response),
    /// A streamed response body was woken: write more of it.
    Body(ReplyTo),
    /// Not done yet, or no such task (it ended meanwhile).
    Pending,
}

/// The loop's async tasks.
#[derive(Default)]
pub(crate) struct Tasks {
    tasks: HashMap<u64, Task>,
    by_stream: StreamMap<u64>,
    /// Tasks answering HTTP edge requests, by connection (one at a time).
    by_http: HashMap<PlainKey, u64>,
    /// Streamed response bodies' wakers, by number (a wake writes more).
    bodies: HashMap<u64, (ReplyTo, Arc<TaskWaker>)>,
    bodies_by_stream: StreamMap<u64>,
    bodies_by_http: HashMap<PlainKey, u64>,
    next: u64,
    deferred: Arc<Deferred>,
}

impl Tasks {
    /// Starts `request`'s future and polls it once; returns the answer if it
    /// is ready at once, and the token of the deadline timer to set if not.
    pub(crate) fn start(
        &mut self,
        handle: &LoopHandle<Command>,
        handler: &AsyncHandlerFn,
        to: ReplyTo,
        request: Request,
    ) -> (Polled, Option<u64>) {
        let future = match catch_unwind(AssertUnwindSafe(|| handler(request))) {
            Ok(future) => future,
            Err(_) => return (Polled::Answer(to, panicked()), None),
        };
        let (number, waker) = self.new_waker(handle);
        self.tasks.insert(number, Task { to, future, waker });
        match to {
            ReplyTo::Stream(key, id) => self.by_stream.insert(key, id, number),
            ReplyTo::Http(key, _) => self.by_http.insert(key, number),
        };
        match self.poll(number) {
            Polled::Pending => (Polled::Pending, Some(DEADLINE_TIMER | number)),
            answer => (answer, None),
        }
    }

    fn new_waker(&mut self, handle: &LoopHandle<Command>) -> (u64, Arc<TaskWaker>) {
        self.next += 1;
        let number = self.next;
        let waker = Arc::new(TaskWaker {
            task: number,
            scheduled: AtomicBool::new(false),
            handle: handle.clone(),
            deferred: Arc::clone(&self.deferred),
        });
        (number, waker)
    }

    /// The waker of a streamed response body going to `to`: its wakes
    /// come back from [`Tasks::poll`] as [`Polled::Body`].
    pub(crate) fn body_waker(&mut self, handle: &LoopHandle<Command>, to: ReplyTo) -> Waker {
        let (number, waker) = self.new_waker(handle);
        self.bodies.insert(number, (to, Arc::clone(&waker)));
        let old = match to {
            ReplyTo::Stream(key, id) => self.bodies_by_stream.insert(key, id, number),
            ReplyTo::Http(key, _) => self.bodies_by_http.insert(key, number),
        };
        if let Some(old) = old {
            self.bodies.remove(&old);
        }
        Waker::from(waker)
    }

    /// Polls task `number`, if it still exists.
    pub(crate) fn poll(&mut self, number: u64) -> Polled {
        if let Some((to, waker)) = self.bodies.get(&number) {
            // Cleared as the wake is served: the next wake asks again.
            waker.scheduled.store(false, Ordering::Release);
            return Polled::Body(*to);
        }
        let Some(task) = self.tasks.get_mut(&number) else {
            return Polled::Pending;
        };
        // Cleared before polling: a wake during the poll asks for another.
        task.waker.scheduled.store(false, Ordering::Release);
        let waker = Waker::from(Arc::clone(&task.waker));
        let mut cx = Context::from_waker(&waker);
        let outcome = catch_unwind(AssertUnwindSafe(|| task.future.as_mut().poll(&mut cx)));
        let response = match outcome {
            Ok(Poll::Pending) => return Polled::Pending,
            Ok(Poll::Ready(Ok(response))) => response,
            Ok(Poll::Ready(Err(err))) => err.into(),
            Err(_) => panicked(),
        };
        match self.remove(number) {
            Some(to) => Polled::Answer(to, response),
            None => Polled::Pending,
        }
    }

    /// Tasks whose wake found the command queue full: poll them now.
    pub(crate) fn take_deferred(&mut self) -> Vec<u64> {
        self.deferred.any.store(false, Ordering::Release);
        self.deferred
            .tasks
            .lock()
            .map(|mut tasks| std::mem::take(&mut *tasks))
            .unwrap_or_default()
    }

    /// Whether some wakes wait on the deferred list (without locking it).
    pub(crate) fn has_deferred(&self) -> bool {
        self.deferred.any.load(Ordering::Acquire)
    }

    /// The deadline timer `token` fired: the task's requester, if it still
    /// runs (the task is dropped: it answers 504).
    pub(crate) fn expire(&mut self, token: u64) -> Option<ReplyTo> {
        self.remove(token & !DEADLINE_TIMER)
    }

    /// The stream was reset: its task is dropped, cancelling its future.
    pub(crate) fn forget_stream(&mut self, key: ConnKey, id: StreamId) {
        if let Some(number) = self.by_stream.remove(key, id) {
            self.tasks.remove(&number);
        }
        if let Some(number) = self.bodies_by_stream.remove(key, id) {
            self.bodies.remove(&number);
        }
    }

    /// The connection closed: its tasks are dropped.
    pub(crate) fn forget_conn(&mut self, key: ConnKey) {
        for (_, number) in self.by_stream.remove_conn(key) {
            self.tasks.remove(&number);
        }
        for (_, number) in self.bodies_by_stream.remove_conn(key) {
            self.bodies.remove(&number);
        }
    }

    /// An HTTP edge connection closed or moved on: its task and streamed
    /// body are dropped.
    pub(crate) fn forget_http(&mut self, key: PlainKey) {
        if let Some(number) = self.by_http.remove(&key) {
            self.tasks.remove(&number);
        }
        if let Some(number) = self.bodies_by_http.remove(&key) {
            self.bodies.remove(&number);
        }
    }

    fn remove(&mut self, number: u64) -> Option<ReplyTo> {
        let task = self.tasks.remove(&number)?;
        match task.to {
            ReplyTo::Stream(key, id) => {
                self.by_stream.remove(key, id);
            }
            ReplyTo::Http(key, _) => {
                self.by_http.remove(&key);
            }
        }
        Some(task.to)
    }
}

fn panicked() -> Response {
    HandlerError::new(Status::INTERNAL, "handler panicked").into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::Event;
    use mux_runtime::{App, Ctx, EventLoop, LoopConfig, LoopError};

    /// A loop that is never run: only its command queue is used.
    struct Idle;

    impl App for Idle {
        type Command = Command;
        fn on_event(&mut self, _: &mut Ctx<'_>, _: ConnKey, _: Event) {}
        fn on_closed(&mut self, _: &mut Ctx<'_>, _: ConnKey, _: Option<LoopError>) {}
        fn on_command(&mut self, _: &mut Ctx<'_>, _: Command) {}
        fn is_done(&self, _: &Ctx<'_>) -> bool {
            true
        }
    }

    #[test]
    fn a_wake_that_finds_the_queue_full_is_deferred_not_lost_or_blocking() {
        let (_loop, handle) = EventLoop::new(Idle, LoopConfig::default(), None, 1).expect("a loop");
        let mut tasks = Tasks::default();
        let (number, waker) = tasks.new_waker(&handle);
        // The queue holds one command: the first wake takes it.
        waker.wake_by_ref();
        assert!(!tasks.has_deferred(), "the first wake went to the queue");
        // Served (the flag cleared as a poll would); the queue is still full.
        waker.scheduled.store(false, Ordering::Release);
        waker.wake_by_ref();
        assert!(tasks.has_deferred(), "a full queue defers the wake");
        assert_eq!(tasks.take_deferred(), vec![number]);
        assert!(!tasks.has_deferred());
        // A second wake before the poll asks for nothing more.
        waker.wake_by_ref();
        assert!(!tasks.has_deferred(), "one wake per poll");
    }
}
