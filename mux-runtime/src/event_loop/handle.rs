//! [`LoopHandle`]: how other threads reach a loop: a bounded command queue
//! and a `mio::Waker` that is only rung when the loop may be asleep.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};
use mio::Waker;

/// A handle for other threads: sends commands to the loop and wakes it.
#[derive(Debug)]
pub struct LoopHandle<C> {
    pub(super) sender: Sender<C>,
    pub(super) waker: Arc<Waker>,
    /// The loop is (about to be) blocked in `poll`: only then does a command
    /// need the waker's syscall.
    pub(super) sleeping: Arc<AtomicBool>,
}

impl<C> Clone for LoopHandle<C> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
            waker: Arc::clone(&self.waker),
            sleeping: Arc::clone(&self.sleeping),
        }
    }
}

impl<C> LoopHandle<C> {
    /// Sends a command, blocking while the (bounded) command queue is full;
    /// gives the command back if the loop has stopped.
    pub fn send(&self, command: C) -> Result<(), C> {
        self.sender.send(command).map_err(|err| err.into_inner())?;
        self.wake();
        Ok(())
    }

    /// Wakes the loop if it sleeps. Pairs with the loop's check of the queue
    /// after it sets `sleeping` (both `SeqCst`): either the loop sees the
    /// command, or this sees the loop asleep.
    fn wake(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            // The waker only fails if the loop is gone; the command then
            // stays unread, as it would had the loop stopped a moment later.
            let _ = self.waker.wake();
        }
    }

    /// Wakes the loop whether or not it sleeps: for a thread that left the
    /// loop work outside the command queue (the loop then runs a pass at
    /// once, and its app looks for that work at the pass's end).
    pub fn nudge(&self) {
        let _ = self.waker.wake();
    }

    /// Sends a command if the queue has room; gives it back otherwise.
    pub fn try_send(&self, command: C) -> Result<(), TrySendError<C>> {
        self.sender.try_send(command)?;
        self.wake();
        Ok(())
    }
}
