//! [`LoopHandle`]: how other threads reach a loop: a bounded command queue
//! and a `mio::Waker` that is only rung when the loop may be asleep. Async
//! senders ([`LoopHandle::send_async`]) wait for room in the queue as a
//! future: the loop wakes them once it has taken commands out.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use crossbeam_channel::{Sender, TrySendError};
use mio::Waker;

use super::inline::{self, InlineSlot};
use super::local::{self, LocalInbox};

/// Async senders waiting for room in the command queue.
#[derive(Debug, Default)]
pub(super) struct RoomWaiters {
    /// Some wait: the loop wakes them after taking commands.
    waiting: AtomicBool,
    wakers: Mutex<Vec<std::task::Waker>>,
}

impl RoomWaiters {
    /// Wakes every waiting sender (the loop took commands: there is room).
    pub(super) fn wake_all(&self) {
        if self.waiting.swap(false, Ordering::AcqRel) {
            let wakers = self
                .wakers
                .lock()
                .map(|mut wakers| std::mem::take(&mut *wakers))
                .unwrap_or_default();
            for waker in wakers {
                waker.wake();
            }
        }
    }

    fn register(&self, waker: &std::task::Waker) {
        if let Ok(mut wakers) = self.wakers.lock() {
            if !wakers.iter().any(|w| w.will_wake(waker)) {
                wakers.push(waker.clone());
            }
        }
        self.waiting.store(true, Ordering::Release);
    }
}

/// A handle for other threads: sends commands to the loop and wakes it.
#[derive(Debug)]
pub struct LoopHandle<C> {
    pub(super) sender: Sender<C>,
    pub(super) waker: Arc<Waker>,
    /// The loop is (about to be) blocked in `poll`: only then does a command
    /// need the waker's syscall.
    pub(super) sleeping: Arc<AtomicBool>,
    /// Async senders waiting for room.
    pub(super) room: Arc<RoomWaiters>,
    /// The running loop's state, for [`LoopHandle::try_serve`].
    pub(super) inline: Arc<InlineSlot<C>>,
    /// Commands the loop's app sends the loop, for [`LoopHandle::send_here`].
    pub(super) local: Arc<LocalInbox<C>>,
}

impl<C> Clone for LoopHandle<C> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
            waker: Arc::clone(&self.waker),
            sleeping: Arc::clone(&self.sleeping),
            room: Arc::clone(&self.room),
            inline: Arc::clone(&self.inline),
            local: Arc::clone(&self.local),
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

    /// Sends a command without blocking the thread: a future that waits
    /// (its task woken by the loop) while the queue is full, and gives the
    /// command back if the loop has stopped.
    pub fn send_async(&self, command: C) -> SendCommand<'_, C> {
        SendCommand {
            handle: self,
            command: Some(command),
        }
    }

    /// Serves `command` on this thread, without a hop to the loop's, if the
    /// loop sleeps with an empty queue and no other thread holds its state;
    /// gives it back otherwise (to send it the usual way). What the app
    /// does with it runs here, under the lock of the loop's state.
    pub fn try_serve(&self, command: C) -> Result<(), C> {
        if !self.sleeping.load(Ordering::SeqCst) {
            return Err(command);
        }
        match self.inline.get().and_then(Weak::upgrade) {
            Some(state) => state.try_serve(command),
            None => Err(command),
        }
    }

    /// Whether this thread is serving one of the loop's commands (see
    /// [`LoopHandle::try_serve`]): the app's code is running here under the
    /// lock of the loop's state, and the loop's thread cannot go on (nor be
    /// joined) before it returns.
    pub fn is_serving_here(&self) -> bool {
        self.inline
            .get()
            .is_some_and(|state| inline::serving(inline::state_address(state.as_ptr())))
    }

    /// Hands `command` to the loop without its queue, when this thread runs
    /// the loop's app (the loop's own thread, or one serving a command
    /// inline): the loop serves it before the flush of the pass under way,
    /// where through the queue it would wait for the next pass. Gives it
    /// back on any other thread, and when the loop holds as many such
    /// commands as its queue would (then, until the loop has drained its
    /// queue, every command comes back, so that none overtakes the one the
    /// caller queues instead).
    pub fn send_here(&self, command: C) -> Result<(), C> {
        let runs_here = self.inline.get().is_some_and(|state| {
            let address = inline::state_address(state.as_ptr());
            inline::serving(address) || local::is_loop_thread(address)
        });
        if runs_here {
            self.local.push(command)
        } else {
            Err(command)
        }
    }

    /// Sends a command if the queue has room; gives it back otherwise.
    pub fn try_send(&self, command: C) -> Result<(), TrySendError<C>> {
        self.sender.try_send(command)?;
        self.wake();
        Ok(())
    }
}

/// The future of [`LoopHandle::send_async`].
#[derive(Debug)]
#[must_use = "a command is sent only when the future is awaited"]
pub struct SendCommand<'a, C> {
    handle: &'a LoopHandle<C>,
    command: Option<C>,
}

impl<C: Unpin> Future for SendCommand<'_, C> {
    type Output = Result<(), C>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(command) = self.command.take() else {
            return Poll::Ready(Ok(()));
        };
        match self.handle.poll_send(cx, command) {
            SendPoll::Sent => Poll::Ready(Ok(())),
            SendPoll::Closed(command) => Poll::Ready(Err(command)),
            SendPoll::Full(command) => {
                self.command = Some(command);
                Poll::Pending
            }
        }
    }
}

/// What [`LoopHandle::poll_send`] did with a command.
#[derive(Debug)]
pub enum SendPoll<C> {
    /// It is in the queue.
    Sent,
    /// The queue is full: the task is woken when the loop has taken
    /// commands; here is the command back, to try again then.
    Full(C),
    /// The loop has stopped: the command back.
    Closed(C),
}

impl<C> LoopHandle<C> {
    /// Sends `command` if the queue has room; when it is full, registers
    /// `cx`'s task to be woken once the loop has taken commands out. For
    /// futures that hold their command themselves.
    pub fn poll_send(&self, cx: &mut Context<'_>, command: C) -> SendPoll<C> {
        let command = match self.try_send(command) {
            Ok(()) => return SendPoll::Sent,
            Err(TrySendError::Disconnected(command)) => return SendPoll::Closed(command),
            Err(TrySendError::Full(command)) => command,
        };
        // Registered before the second try: either that try finds room, or
        // the loop takes commands after the registration and wakes us.
        self.room.register(cx.waker());
        match self.try_send(command) {
            Ok(()) => SendPoll::Sent,
            Err(TrySendError::Disconnected(command)) => SendPoll::Closed(command),
            Err(TrySendError::Full(command)) => SendPoll::Full(command),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;
    use std::time::{Duration, Instant};

    use mux_core::Event;

    use super::*;
    use crate::event_loop::{App, ConnKey, Ctx, EventLoop, LoopConfig, LoopError};

    /// Counts commands; stops after `stop_after`.
    struct Counter {
        seen: usize,
        stop_after: usize,
    }

    impl App for Counter {
        type Command = u32;
        fn on_event(&mut self, _: &mut Ctx<'_>, _: ConnKey, _: Event) {}
        fn on_closed(&mut self, _: &mut Ctx<'_>, _: ConnKey, _: Option<LoopError>) {}
        fn on_command(&mut self, _: &mut Ctx<'_>, _: u32) {
            self.seen += 1;
        }
        fn is_done(&self, _: &Ctx<'_>) -> bool {
            self.seen >= self.stop_after
        }
    }

    /// Counts wakes.
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn an_async_send_waits_for_room_and_the_loop_wakes_it() {
        let app = Counter {
            seen: 0,
            stop_after: 2,
        };
        let (event_loop, handle) =
            EventLoop::new(app, LoopConfig::default(), None, 1).expect("a loop");
        handle.try_send(1).expect("the queue has room for one");
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut send = handle.send_async(2);
        assert!(
            Pin::new(&mut send).poll(&mut cx).is_pending(),
            "a full queue makes the send wait, without blocking"
        );
        let thread = std::thread::spawn(move || event_loop.run());
        let deadline = Instant::now() + Duration::from_secs(10);
        while wakes.0.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the loop never woke the sender");
            std::thread::yield_now();
        }
        assert!(
            Pin::new(&mut send).poll(&mut cx).is_ready(),
            "room after the wake"
        );
        thread
            .join()
            .expect("the loop thread")
            .expect("the loop took both commands");
    }

    /// Records whether each command was served on a thread serving it
    /// inline; stops after the first.
    struct Served {
        handle: Option<LoopHandle<u32>>,
        inline: Arc<AtomicUsize>,
        seen: usize,
    }

    impl App for Served {
        type Command = u32;
        fn on_event(&mut self, _: &mut Ctx<'_>, _: ConnKey, _: Event) {}
        fn on_closed(&mut self, _: &mut Ctx<'_>, _: ConnKey, _: Option<LoopError>) {}
        fn on_command(&mut self, _: &mut Ctx<'_>, _: u32) {
            self.seen += 1;
            if self
                .handle
                .as_ref()
                .is_some_and(LoopHandle::is_serving_here)
            {
                self.inline.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn is_done(&self, _: &Ctx<'_>) -> bool {
            self.seen >= 1
        }
    }

    #[test]
    fn a_sleeping_loop_is_served_on_the_senders_thread_and_woken_when_done() {
        let inline = Arc::new(AtomicUsize::new(0));
        let app = Served {
            handle: None,
            inline: Arc::clone(&inline),
            seen: 0,
        };
        let (mut event_loop, handle) =
            EventLoop::new(app, LoopConfig::default(), None, 4).expect("a loop");
        event_loop.app_mut().handle = Some(handle.clone());
        assert_eq!(
            handle.try_serve(1),
            Err(1),
            "a loop that has not started is not served inline"
        );
        assert!(!handle.is_serving_here());
        let thread = std::thread::spawn(move || event_loop.run());
        let deadline = Instant::now() + Duration::from_secs(10);
        // The loop sleeps in its poller once its first spin (200 µs) ends.
        let mut command = 1;
        while let Err(back) = handle.try_serve(command) {
            assert!(Instant::now() < deadline, "the loop never slept");
            command = back;
            std::thread::yield_now();
        }
        assert_eq!(
            inline.load(Ordering::SeqCst),
            1,
            "the app saw its command served inline"
        );
        assert!(!handle.is_serving_here(), "only while serving");
        thread
            .join()
            .expect("the loop thread")
            .expect("the loop woke, saw its app done, and stopped");
    }

    /// What [`SendsItself`] saw: each command with the pass it was served
    /// in (passes counted at their end).
    #[derive(Default)]
    struct Log {
        served: Vec<(u32, usize)>,
        passes: usize,
    }

    /// Sends itself `command + 100` for each command below 100, with
    /// `send_here`; stops once it has served `stop_after` commands.
    struct SendsItself {
        handle: Option<LoopHandle<u32>>,
        log: Arc<Mutex<Log>>,
        stop_after: usize,
    }

    impl App for SendsItself {
        type Command = u32;
        fn on_event(&mut self, _: &mut Ctx<'_>, _: ConnKey, _: Event) {}
        fn on_closed(&mut self, _: &mut Ctx<'_>, _: ConnKey, _: Option<LoopError>) {}
        fn on_command(&mut self, _: &mut Ctx<'_>, command: u32) {
            let mut log = self.log.lock().expect("the log");
            let pass = log.passes;
            log.served.push((command, pass));
            drop(log);
            if command < 100 {
                if let Some(handle) = &self.handle {
                    handle
                        .send_here(command + 100)
                        .expect("the loop's own code sends it here");
                }
            }
        }
        fn on_pass_end(&mut self, _: &mut Ctx<'_>) {
            self.log.lock().expect("the log").passes += 1;
        }
        fn is_done(&self, _: &Ctx<'_>) -> bool {
            self.log.lock().expect("the log").served.len() >= self.stop_after
        }
    }

    #[test]
    fn a_command_the_loop_sends_itself_is_served_in_the_same_pass() {
        let log = Arc::new(Mutex::new(Log::default()));
        let app = SendsItself {
            handle: None,
            log: Arc::clone(&log),
            stop_after: 6,
        };
        let (mut event_loop, handle) =
            EventLoop::new(app, LoopConfig::default(), None, 8).expect("a loop");
        event_loop.app_mut().handle = Some(handle.clone());
        assert_eq!(
            handle.send_here(7),
            Err(7),
            "another thread's command goes through the queue"
        );
        // Queued before the loop runs: served on the loop's thread.
        handle.try_send(1).expect("room");
        handle.try_send(2).expect("room");
        let thread = std::thread::spawn(move || event_loop.run());
        let deadline = Instant::now() + Duration::from_secs(10);
        // Served inline once the loop sleeps: on this thread, under its lock.
        let mut command = 3;
        while let Err(back) = handle.try_serve(command) {
            assert!(Instant::now() < deadline, "the loop never slept");
            command = back;
            std::thread::yield_now();
        }
        thread
            .join()
            .expect("the loop thread")
            .expect("the loop stopped once its app was done");
        let log = log.lock().expect("the log");
        let pass_of = |command: u32| {
            log.served
                .iter()
                .find(|(served, _)| *served == command)
                .map(|(_, pass)| *pass)
        };
        for command in [1, 2, 3] {
            assert!(
                pass_of(command).is_some(),
                "{command} served: {:?}",
                log.served
            );
            assert_eq!(
                pass_of(command + 100),
                pass_of(command),
                "{} served in the pass that sent it: {:?}",
                command + 100,
                log.served
            );
        }
        let order: Vec<u32> = log.served.iter().map(|(command, _)| *command).collect();
        assert_eq!(order, [1, 2, 101, 102, 3, 103], "queued ones first");
    }
}
