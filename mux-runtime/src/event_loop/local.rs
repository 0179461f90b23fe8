//! Commands a loop sends itself.
//!
//! A command goes through the loop's queue when another thread sends it.
//! When the loop's own app sends one (a publication read on this loop, for
//! the subscribers this loop also holds), the queue costs it a pass: the
//! loop serves its queue at a pass's start, so the command waits for the
//! flush of the pass that sent it, a `poll` and the next pass. Sent with
//! [`LoopHandle::send_here`](super::LoopHandle::send_here) instead, it waits
//! in this inbox, which the loop serves before the flush of the pass under
//! way (and a command served inline, before its own flush).
//!
//! Only the thread that holds the loop's state pushes or takes (the loop's
//! own, or one serving a command inline), so the lock is never contended.
//! The inbox holds as many commands as the queue; when it is full, the
//! command goes through the queue, and so do the ones after it until the
//! loop has drained its queue: none overtakes a command sent before it.
//! Implements no rule of the spec.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// A loop's commands to itself, waiting for the pass's flush.
#[derive(Debug)]
pub(super) struct LocalInbox<C> {
    commands: Mutex<Vec<C>>,
    /// Commands wait: checked every pass without the lock.
    pending: AtomicBool,
    /// A full inbox sent a command through the queue, which the loop has
    /// not drained since.
    spilled: AtomicBool,
    capacity: usize,
}

impl<C> LocalInbox<C> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            commands: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            spilled: AtomicBool::new(false),
            capacity,
        }
    }

    /// Keeps `command` for the pass's flush; gives it back when the inbox
    /// is full, or since a command it gave back was not yet served.
    pub(super) fn push(&self, command: C) -> Result<(), C> {
        if self.spilled.load(Ordering::Relaxed) {
            return Err(command);
        }
        let Ok(mut commands) = self.commands.lock() else {
            return Err(command);
        };
        if commands.len() >= self.capacity {
            self.spilled.store(true, Ordering::Relaxed);
            return Err(command);
        }
        commands.push(command);
        self.pending.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Whether commands wait.
    pub(super) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Moves the waiting commands into `batch` (an empty vector, whose room
    /// the inbox takes in exchange).
    pub(super) fn take_into(&self, batch: &mut Vec<C>) {
        if let Ok(mut commands) = self.commands.lock() {
            std::mem::swap(&mut *commands, batch);
            self.pending.store(false, Ordering::Relaxed);
        }
    }

    /// The loop found its queue empty: every command a full inbox gave
    /// back has been served, and the inbox takes commands again.
    pub(super) fn queue_drained(&self) {
        self.spilled.store(false, Ordering::Relaxed);
    }
}

thread_local! {
    /// The state of the loop whose thread this is (its address), or 0.
    static LOOP_THREAD: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as the one running the loop at `address` (0: none).
pub(super) fn set_loop_thread(address: usize) {
    LOOP_THREAD.with(|thread| thread.set(address));
}

/// Whether this is the thread running the loop at `address`.
pub(super) fn is_loop_thread(address: usize) -> bool {
    address != 0 && LOOP_THREAD.with(Cell::get) == address
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_inbox_gives_commands_back_until_the_queue_is_drained() {
        let inbox = LocalInbox::new(2);
        assert!(!inbox.is_pending());
        assert_eq!(inbox.push(1), Ok(()));
        assert!(inbox.is_pending());
        assert_eq!(inbox.push(2), Ok(()));
        assert_eq!(inbox.push(3), Err(3), "full");
        let mut batch = Vec::new();
        inbox.take_into(&mut batch);
        assert_eq!(batch, [1, 2]);
        assert!(!inbox.is_pending());
        assert_eq!(
            inbox.push(4),
            Err(4),
            "3 went through the queue: 4 must not overtake it"
        );
        inbox.queue_drained();
        assert_eq!(inbox.push(5), Ok(()));
        batch.clear();
        inbox.take_into(&mut batch);
        assert_eq!(batch, [5]);
    }
}
