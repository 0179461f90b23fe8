//! Serving a command on the sender's thread while the loop sleeps.
//!
//! A command handed through the queue costs the loop a wake-up before it
//! is served: when the loop sleeps in `poll`, the sender's thread waits for
//! the loop's to be scheduled, and on a machine with more busy threads than
//! cores that wait is a time slice. While the loop sleeps, its state is
//! unlocked (the loop's thread holds it at all other times), and a sender
//! that takes the lock serves the command itself, as the loop would have:
//! the app handles it, and the connections it touched are flushed. The
//! loop is woken only if that left it something to do before the wake-up it
//! planned (an earlier timer, a flush cut at its budget, or the app done).
//!
//! Only when the loop sleeps, and the queue is empty: a command never
//! overtakes one queued before it, and a loop that is awake (or spinning)
//! takes commands from its queue faster than senders would contend for
//! its lock. What the app does with an inline command runs on the sender's
//! thread, under the same rules as on the loop's (it must return quickly).
//! Implements no rule of the spec.

use std::cell::Cell;
use std::sync::{Mutex, OnceLock, TryLockError, Weak};
use std::time::Instant;

use super::{App, Core};

/// Where a running loop's state is found by its handles (set when it starts
/// running; a handle that finds it gone, or not yet there, queues).
pub(super) type InlineSlot<C> = OnceLock<Weak<dyn Inline<C>>>;

/// A loop's state, as its senders see it.
pub(super) trait Inline<C>: Send + Sync {
    /// Serves `command` on this thread if the loop sleeps, its queue is
    /// empty and no other thread holds its state; gives it back otherwise.
    fn try_serve(&self, command: C) -> Result<(), C>;
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

impl<A> Inline<A::Command> for Mutex<Core<A>>
where
    A: App + Send,
{
    fn try_serve(&self, command: A::Command) -> Result<(), A::Command> {
        let mut core = match self.try_lock() {
            Ok(core) => core,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(command),
        };
        match core.asleep {
            Some(wakes_at) if core.commands.is_empty() => {
                let outer = SERVING.with(|serving| serving.replace(state_address(self)));
                core.serve_inline(command, wakes_at);
                SERVING.with(|serving| serving.set(outer));
                Ok(())
            }
            _ => Err(command),
        }
    }
}

impl<A: App> Core<A> {
    /// Serves `command` as a pass of the loop would, and wakes the loop if
    /// that left it work before `wakes_at` (when its sleep ends by itself).
    fn serve_inline(&mut self, command: A::Command, wakes_at: Option<Instant>) {
        let now = Instant::now();
        let mut dirty = std::mem::take(&mut self.inline_dirty);
        let mut flushing = std::mem::take(&mut self.inline_flushing);
        let mut events = std::mem::take(&mut self.inline_events);
        {
            let (mut ctx, app) = self.split(now, &mut dirty);
            app.on_command(&mut ctx, command);
            app.on_commands_served(&mut ctx);
        }
        self.serve_local(now, &mut dirty);
        self.flush_all(now, &mut dirty, &mut flushing, &mut events);
        self.publish_load();
        let done = {
            let (mut ctx, app) = self.split(now, &mut dirty);
            app.on_pass_end(&mut ctx);
            app.is_done(&ctx)
        };
        let timer_sooner = self
            .timers
            .next()
            .is_some_and(|at| wakes_at.is_none_or(|wakes_at| at < wakes_at));
        let more =
            !self.more_writes.is_empty() || !self.more_reads.is_empty() || self.local.is_pending();
        if done || timer_sooner || more || !dirty.is_empty() {
            // Only fails if the loop is gone.
            let _ = self.waker.wake();
        }
        dirty.clear();
        self.inline_dirty = dirty;
        self.inline_flushing = flushing;
        self.inline_events = events;
    }
}
