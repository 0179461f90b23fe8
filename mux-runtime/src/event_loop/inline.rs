//! Serving a command, and reading its answer, on the sender's thread while
//! the loop sleeps.
//!
//! A command handed through the queue costs the loop a wake-up before it
//! is served, and an answer read by the loop costs the waiting thread
//! another: on a machine with more busy threads than cores each is a time
//! slice. While the loop sleeps, its state is unlocked (the loop's thread
//! holds it at all other times), and a sender that takes the lock serves
//! the command itself, as the loop would have: the app handles it, and the
//! connections it touched are flushed ([`Shared::try_serve`]). The loop is
//! woken only if that left it something to do before the wake-up it
//! planned (an earlier timer, a flush cut at its budget, the app done).
//!
//! A sender that then waits for the answer may read it itself
//! ([`Shared::drive`]): it waits for the connection's readiness in a second
//! poller, the driver's, and serves each as the loop would (read, the app's
//! events, flush) until its answer is in. The loop's poller still reports
//! that readiness, and the sleeping loop lets it pass without taking its
//! lock ([`Driving`]). Whenever the loop wakes for anything else, it takes
//! the connection back at once and wakes the driver, which then waits for
//! its answer as any other thread would: a driver never holds up the loop,
//! and the loop never reads a socket behind a driver's back. A connection
//! that closes under a driver wakes it too.
//!
//! Only when the loop sleeps, and its queue is empty: a command never
//! overtakes one queued before it, and a loop that is awake (or spinning)
//! takes commands from its queue faster than senders would contend for
//! its lock. What the app does on a sender's thread runs under the same
//! rules as on the loop's (it must return quickly). Implements no rule of
//! the spec.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError, Weak};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::{conn_token, lock, App, ConnKey, Core};

/// Where a running loop's state is found by its handles (set when it starts
/// running; a handle that finds it gone, or not yet there, queues).
pub(super) type InlineSlot<C> = OnceLock<Weak<dyn Inline<C>>>;

/// A loop's state, as its senders see it.
pub(super) trait Inline<C>: Send + Sync {
    /// Serves `command` on this thread if the loop sleeps, its queue is
    /// empty and no other thread holds its state; gives it back otherwise.
    fn try_serve(&self, command: C) -> Result<(), C>;

    /// Reads the connection the last command served here went out on, on
    /// this thread, until `done` or the loop takes it back.
    fn drive(&self, done: &dyn Fn() -> bool);
}

/// The token of a driven connection's socket in the driver's poller.
const DRIVEN: Token = Token(0);
/// The token of the driver's waker.
const DRIVER_WAKER: Token = Token(1);

/// The poller a driving thread waits in.
#[derive(Debug)]
pub(super) struct Driver {
    poll: Poll,
    events: Events,
    /// The connection whose socket is registered in `poll`, and its
    /// descriptor (registered once, while the same connection is driven
    /// call after call).
    registered: Option<(ConnKey, std::os::fd::RawFd)>,
}

impl Driver {
    /// A driver's poller, and the waker that interrupts its wait.
    pub(super) fn new() -> std::io::Result<(Self, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), DRIVER_WAKER)?);
        Ok((
            Self {
                poll,
                events: Events::with_capacity(4),
                registered: None,
            },
            waker,
        ))
    }
}

/// Which connection a sender's thread reads, as the loop's thread sees it
/// without the lock of the loop's state: readiness of that connection does
/// not end the loop's sleep (the driver reads it).
#[derive(Debug, Default)]
pub(super) struct Driving {
    /// The driven connection's token in the loop's poller, or 0.
    token: AtomicUsize,
    /// The loop let readiness of the driven connection pass since the
    /// driver last read it.
    passed: AtomicBool,
}

impl Driving {
    fn start(&self, token: Token) {
        self.passed.store(false, Ordering::SeqCst);
        self.token.store(token.0, Ordering::SeqCst);
    }

    /// The driver is about to read: what the loop let pass is read now.
    fn reading(&self) {
        self.passed.store(false, Ordering::SeqCst);
    }

    /// Ends the driving; whether the loop let readiness pass since the
    /// driver's last read (the loop must read the connection then).
    fn stop(&self) -> bool {
        self.token.store(0, Ordering::SeqCst);
        self.passed.swap(false, Ordering::SeqCst)
    }

    /// Whether every one of `events` is the driven connection's, which the
    /// loop lets pass (its driver reads it). Pairs with `stop` (both
    /// `SeqCst`): either the loop sees the driving ended and serves the
    /// event, or the driver sees the event passed and hands it back.
    pub(super) fn lets_pass(&self, events: &Events) -> bool {
        if events.is_empty() {
            return false;
        }
        self.passed.store(true, Ordering::SeqCst);
        let token = self.token.load(Ordering::SeqCst);
        token != 0 && events.iter().all(|event| event.token().0 == token)
    }
}

/// How often senders served commands and read answers on their own
/// threads (see the module doc), for [`LoopHandle::inline_stats`](super::LoopHandle::inline_stats).
#[derive(Debug, Default)]
pub(super) struct InlineCounters {
    pub(super) served: AtomicU64,
    pub(super) driven: AtomicU64,
}

/// What [`LoopHandle::inline_stats`](super::LoopHandle::inline_stats) reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InlineStats {
    /// Commands served on a sender's thread while the loop slept.
    pub commands_served: u64,
    /// Readinesses of a connection served on a waiting sender's thread.
    pub reads_driven: u64,
}

impl InlineCounters {
    pub(super) fn snapshot(&self) -> InlineStats {
        InlineStats {
            commands_served: self.served.load(Ordering::Relaxed),
            reads_driven: self.driven.load(Ordering::Relaxed),
        }
    }
}

/// A running loop's state, and the driver's poller beside it.
pub(super) struct Shared<A: App> {
    pub(super) core: Mutex<Core<A>>,
    pub(super) driver: Mutex<Driver>,
}

thread_local! {
    /// The state of the loop this thread is serving a command of (its
    /// address), or 0.
    static SERVING: Cell<usize> = const { Cell::new(0) };
}

/// The address that identifies a loop's state in `SERVING`.
pub(super) fn state_address<T: ?Sized>(state: *const T) -> usize {
    state.cast::<()>() as usize
}

/// Whether this thread is serving a command of the loop at `address`
/// (the app's code runs under its lock: waiting for that loop's thread
/// would wait forever).
pub(super) fn serving(address: usize) -> bool {
    address != 0 && SERVING.with(Cell::get) == address
}

impl<A: App> Shared<A> {
    /// Runs `serve` on the loop's state, marked as served on this thread.
    fn serving<R>(&self, core: &mut Core<A>, serve: impl FnOnce(&mut Core<A>) -> R) -> R {
        let outer = SERVING.with(|serving| serving.replace(state_address(self)));
        let result = serve(core);
        SERVING.with(|serving| serving.set(outer));
        result
    }

    /// The loop's state if it sleeps and no other thread holds it.
    fn try_lock_asleep(&self) -> Option<MutexGuard<'_, Core<A>>> {
        let core = match self.core.try_lock() {
            Ok(core) => core,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        (core.asleep.is_some() && !core.stopped).then_some(core)
    }
}

impl<A> Inline<A::Command> for Shared<A>
where
    A: App + Send,
{
    fn try_serve(&self, command: A::Command) -> Result<(), A::Command> {
        match self.try_lock_asleep() {
            Some(mut core) if core.commands.is_empty() => {
                core.counters.served.fetch_add(1, Ordering::Relaxed);
                self.serving(&mut core, |core| core.serve_inline(command));
                Ok(())
            }
            _ => Err(command),
        }
    }

    fn drive(&self, done: &dyn Fn() -> bool) {
        let Ok(mut driver) = self.driver.try_lock() else {
            return; // another thread drives
        };
        let Some(mut core) = self.try_lock_asleep() else {
            return;
        };
        if done() {
            return;
        }
        let Some(key) = core.start_driving(&mut driver) else {
            return;
        };
        loop {
            drop(core);
            let Driver { poll, events, .. } = &mut *driver;
            let polled = poll.poll(events, None);
            core = lock(&self.core);
            if core.driven != Some(key) {
                return; // taken back: the loop reads for us
            }
            if polled.is_err() || core.asleep.is_none() || core.stopped {
                core.stop_driving(key);
                return;
            }
            core.driving.reading();
            core.counters.driven.fetch_add(1, Ordering::Relaxed);
            self.serving(&mut core, |core| core.serve_driven(key));
            if done() || core.driven != Some(key) {
                core.stop_driving(key);
                return;
            }
        }
    }
}

impl<A: App> Core<A> {
    /// Serves `command` as a pass of the loop would.
    fn serve_inline(&mut self, command: A::Command) {
        let now = Instant::now();
        let mut dirty = std::mem::take(&mut self.inline_dirty);
        {
            let (mut ctx, app) = self.split(now, &mut dirty);
            app.on_command(&mut ctx, command);
            app.on_commands_served(&mut ctx);
        }
        self.last_inline = match dirty.as_slice() {
            [index] => self.key_of(*index),
            _ => None,
        };
        self.end_inline_pass(now, dirty);
    }

    /// Reads the driven connection `key`, as a pass of the loop would.
    fn serve_driven(&mut self, key: ConnKey) {
        let now = Instant::now();
        let mut dirty = std::mem::take(&mut self.inline_dirty);
        let mut events = std::mem::take(&mut self.inline_events);
        let mut more_reads = Vec::new();
        self.serve_socket(
            now,
            key.index,
            true,
            false,
            &mut dirty,
            &mut events,
            &mut more_reads,
        );
        self.more_reads.append(&mut more_reads);
        self.inline_events = events;
        self.end_inline_pass(now, dirty);
    }

    /// Flushes what a pass on a sender's thread touched, ends the pass, and
    /// wakes the loop if that left it work before it wakes by itself.
    fn end_inline_pass(&mut self, now: Instant, mut dirty: Vec<usize>) {
        let mut flushing = std::mem::take(&mut self.inline_flushing);
        let mut events = std::mem::take(&mut self.inline_events);
        self.flush_all(now, &mut dirty, &mut flushing, &mut events);
        self.publish_load();
        let done = {
            let (mut ctx, app) = self.split(now, &mut dirty);
            app.on_pass_end(&mut ctx);
            app.is_done(&ctx)
        };
        let wakes_at = self.asleep.flatten();
        let timer_sooner = self
            .timers
            .next()
            .is_some_and(|at| wakes_at.is_none_or(|wakes_at| at < wakes_at));
        let more = !self.more_writes.is_empty() || !self.more_reads.is_empty();
        if done || timer_sooner || more || !dirty.is_empty() {
            // Only fails if the loop is gone.
            let _ = self.waker.wake();
        }
        dirty.clear();
        self.inline_dirty = dirty;
        self.inline_flushing = flushing;
        self.inline_events = events;
    }

    /// Lets this thread read the connection the last inline command went
    /// out on (registered in `driver`'s poller), if it waits for nothing
    /// but to read.
    fn start_driving(&mut self, driver: &mut Driver) -> Option<ConnKey> {
        let key = self.last_inline?;
        if self.driven.is_some() {
            return None;
        }
        let io = self
            .conns
            .get(key.index)
            .filter(|io| io.generation == key.generation)?;
        if io.connecting || io.wanted_interest() != Some(Interest::READABLE) {
            return None;
        }
        let fd = io.socket.as_raw_fd();
        if driver.registered != Some((key, fd)) {
            if let Some((_, old)) = driver.registered.take() {
                // Gone with its socket already, or still open and driven no more.
                let _ = driver.poll.registry().deregister(&mut SourceFd(&old));
            }
            driver
                .poll
                .registry()
                .register(&mut SourceFd(&fd), DRIVEN, Interest::READABLE)
                .ok()?;
            driver.registered = Some((key, fd));
        }
        self.driving.start(conn_token(key.index));
        self.driven = Some(key);
        Some(key)
    }

    /// The driver of `key` is done with it: the loop's poller reports it
    /// again, and what the loop let pass while it was driven is read by
    /// the loop.
    pub(super) fn stop_driving(&mut self, key: ConnKey) {
        if self.driven != Some(key) {
            return;
        }
        self.driven = None;
        if self.driving.stop() {
            self.more_reads.push(key.index);
            let _ = self.waker.wake();
        }
    }

    /// The loop (awake for anything) takes back a driven connection, reads
    /// it this pass, and wakes its driver.
    pub(super) fn take_back(&mut self) {
        if let Some(key) = self.driven.take() {
            self.driving.stop();
            self.more_reads.push(key.index);
            let _ = self.driver_waker.wake();
        }
    }
}
