//! The event loop: one thread, one `mio::Poll`, the connections it owns in a
//! slab, an optional listener, a command channel with its `Waker`, and the
//! timer heap. The application logic (server routes, client calls) plugs in
//! through the [`App`] trait and runs on the loop thread, so that a request
//! is read, handled and answered with no thread hand-off. While the loop
//! sleeps, a sender may serve a command on its own thread instead (see
//! `inline`): all but the poller sits behind a lock that the loop's thread
//! releases only to sleep.
//!
//! One iteration: wait for readiness (or the next timer); serve commands
//! (then let the app work through what they queued as a batch), accepts and
//! each ready connection (read until `WouldBlock`, feed
//! `mux-core`, hand its events to the app); fire due timers; serve the
//! commands the app sent the loop from its own code (see `local`); flush every
//! connection the app touched, each up to a budget (the rest on the next
//! iteration, after the commands: spec §12.3); recompute each socket's
//! interest.
//!
//! No protocol rule lives here: the loop hands every byte and every
//! deadline to `mux-core` (spec §11's timers fire through
//! `Connection::handle_timeout`).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use mux_core::{Connection, ConnectionError, Event, PrefaceError, Side};
use slab::Slab;

use crate::conn_io::{Closed, ConnIo, ReadOutcome, MAX_READS_PER_EVENT};
use crate::socket;
use crate::timer::{TimerKind, Timers};

mod app;
mod balance;
mod config;
mod context;
mod handle;
mod inline;
mod keys;
mod linger;
mod local;
mod plain;
mod scheduling;
mod spin;

pub use self::app::{App, LoopError};
pub use self::balance::{Balance, BalanceSeat};
pub use self::config::LoopConfig;
pub use self::context::Ctx;
use self::context::{queue_flush, AcceptState};
pub use self::handle::{LoopHandle, SendCommand, SendPoll};
use self::inline::{Inline, InlineSlot};
pub use self::keys::{ConnKey, PlainKey};
use self::linger::{Lingering, LINGER_BASE, LINGER_ON_EXIT};
use self::local::LocalInbox;
use self::plain::{PlainSockets, PLAIN_BASE, PLAIN_LISTEN_BASE};
pub use self::scheduling::ThreadScheduling;
pub use self::spin::SpinPolicy;
use self::spin::Spinner;

/// Token of the waker that announces commands.
pub const WAKER: Token = Token(0);
/// Token of the listener.
pub const LISTENER: Token = Token(1);
/// Connections use `Token(FIRST_CONN + slab index)`.
const FIRST_CONN: usize = 2;

/// The token of the connection in slab slot `index`.
fn conn_token(index: usize) -> Token {
    Token(FIRST_CONN + index)
}

/// Commands served per wakeup before sockets get a turn (the rest wait for
/// the next iteration, which does not block).
const MAX_COMMANDS_PER_WAKEUP: usize = 1024;

/// Readiness events fetched per `poll` call.
const EVENTS_CAPACITY: usize = 1024;

/// The loop itself; [`EventLoop::run`] consumes it on its thread.
#[derive(Debug)]
pub struct EventLoop<A: App> {
    poll: Poll,
    core: Core<A>,
    /// Where the running loop lets senders reach its state (see `inline`).
    inline: Arc<InlineSlot<A::Command>>,
}

/// Everything of a loop but its poller. While the loop runs, it sits behind
/// a lock that the loop's thread holds but while it sleeps in `poll`, so
/// that a sender may serve a command on its own thread meanwhile (see
/// `inline`).
#[derive(Debug)]
struct Core<A: App> {
    registry: Registry,
    waker: Arc<Waker>,
    /// While the loop sleeps in `poll`: when it wakes by itself (`None`:
    /// only for an event). `None` while it is awake.
    asleep: Option<Option<Instant>>,
    listener: Option<mio::net::TcpListener>,
    conns: Slab<ConnIo>,
    commands: Receiver<A::Command>,
    /// Async senders waiting for room in `commands`.
    room: Arc<handle::RoomWaiters>,
    sleeping: Arc<AtomicBool>,
    timers: Timers,
    config: LoopConfig,
    generations: u64,
    accepting: AcceptState,
    plain: PlainSockets,
    /// Closed connections waiting for their peer's end (spec §11.3.4).
    lingering: Lingering,
    /// The final counters of a closing connection, for `Ctx::closed_stats`.
    closed_stats: Option<(ConnKey, mux_core::Stats)>,
    /// The buffer every read of this loop goes through (see `conn_io`).
    scratch: Vec<u8>,
    /// Connections whose read budget ran out, or whose reading resumed: read
    /// them next iteration without waiting for a new edge.
    more_reads: Vec<usize>,
    /// Connections whose flush stopped at its budget: flush them again next
    /// iteration, after the commands and the other sockets.
    more_writes: Vec<usize>,
    /// This loop's place among the loops that share its listener, if any.
    balance: Option<BalanceSeat>,
    /// The connections a command served inline touched, and their flush
    /// (kept for their room).
    inline_dirty: Vec<usize>,
    inline_flushing: Vec<usize>,
    /// Protocol events of an inline flush (kept for its room).
    inline_events: Vec<Event>,
    /// Commands the app sent this loop from its own code (see `local`).
    local: Arc<LocalInbox<A::Command>>,
    /// The inbox's commands being served (kept for its room).
    local_batch: Vec<A::Command>,
    app: A,
}

impl<A: App> EventLoop<A> {
    /// A loop around `app`, with a command queue of `queue` entries.
    pub fn new(
        app: A,
        config: LoopConfig,
        listener: Option<mio::net::TcpListener>,
        queue: usize,
    ) -> io::Result<(Self, LoopHandle<A::Command>)> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (sender, commands) = crossbeam_channel::bounded(queue);
        let sleeping = Arc::new(AtomicBool::new(false));
        let room = Arc::new(handle::RoomWaiters::default());
        let inline = Arc::new(InlineSlot::default());
        let local = Arc::new(LocalInbox::new(queue));
        let mut listener = listener;
        let accepting = match listener.as_mut() {
            Some(listener) => {
                poll.registry()
                    .register(listener, LISTENER, Interest::READABLE)?;
                AcceptState::Accepting
            }
            None => AcceptState::None,
        };
        let core = Core {
            registry,
            waker: Arc::clone(&waker),
            asleep: None,
            listener,
            conns: Slab::new(),
            commands,
            room: Arc::clone(&room),
            sleeping: Arc::clone(&sleeping),
            timers: Timers::default(),
            config,
            generations: 0,
            accepting,
            more_reads: Vec::new(),
            more_writes: Vec::new(),
            plain: PlainSockets::default(),
            lingering: Lingering::default(),
            closed_stats: None,
            scratch: vec![0; crate::conn_io::READ_CHUNK],
            balance: None,
            inline_dirty: Vec::new(),
            inline_flushing: Vec::new(),
            inline_events: Vec::new(),
            local: Arc::clone(&local),
            local_batch: Vec::new(),
            app,
        };
        Ok((
            Self {
                poll,
                core,
                inline: Arc::clone(&inline),
            },
            LoopHandle {
                sender,
                waker,
                sleeping,
                room,
                inline,
                local,
            },
        ))
    }

    /// Spreads the connections this loop accepts over the loops of
    /// `seat`'s [`Balance`] (which share its listener), and takes the ones
    /// they hand to it.
    pub fn share_connections(&mut self, seat: BalanceSeat) {
        self.core.balance = Some(seat);
    }

    /// The app, to finish setting it up before [`EventLoop::run`].
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.core.app
    }

    /// Runs until the app says it is done.
    pub fn run(self) -> io::Result<()>
    where
        A: Send + 'static,
    {
        let Self {
            mut poll,
            core,
            inline,
        } = self;
        let shared = Arc::new(Mutex::new(core));
        let weak: Weak<dyn Inline<A::Command>> = Arc::downgrade(&shared) as _;
        let _ = inline.set(weak);
        local::set_loop_thread(inline::state_address(Arc::as_ptr(&shared)));
        // Once `drive` returns, the loop is never asleep again: nothing is
        // served inline any more.
        let result = drive(&mut poll, &shared);
        local::set_loop_thread(0);
        result
    }
}

/// Locks a loop's state; a panic in an app callback on another thread
/// leaves it no less consistent than one on the loop's own.
fn lock<A: App>(shared: &Mutex<Core<A>>) -> MutexGuard<'_, Core<A>> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls without blocking for up to `spin`, until an event or a command
/// arrives. Between polls the thread yields its core, so that on a
/// machine with fewer cores than busy threads the spin delays no one
/// (the thread that would bring the work least of all). Senders need no
/// wake-up while the loop spins: it checks the command queue itself.
fn spin<A: App>(
    poll: &mut Poll,
    core: &Core<A>,
    events: &mut Events,
    spin: Duration,
) -> io::Result<()> {
    #[cfg(test)]
    spin::note_spin();
    let spin_until = Instant::now() + spin;
    while core.commands.is_empty() && !core.has_handoffs() && Instant::now() < spin_until {
        poll.poll(events, Some(Duration::ZERO))?;
        if !events.is_empty() {
            break;
        }
        std::thread::yield_now();
    }
    Ok(())
}

/// The loop's passes, until its app is done. The thread holds the loop's
/// state throughout but while it sleeps in `poll`.
fn drive<A: App>(poll: &mut Poll, shared: &Mutex<Core<A>>) -> io::Result<()> {
    let mut core = lock(shared);
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let mut dirty: Vec<usize> = Vec::new();
    let mut flushing: Vec<usize> = Vec::new();
    let mut protocol_events: Vec<Event> = Vec::new();
    let mut more_reads: Vec<usize> = Vec::new();
    let mut more_commands = false;
    let mut ready: Vec<(usize, bool, bool)> = Vec::with_capacity(EVENTS_CAPACITY);
    let mut spinner = Spinner::new(core.config.spin);
    let mut stopping = false;
    if let Err(err) = scheduling::apply_to_current_thread(core.config.scheduling) {
        log::warn!(
            "the loop's thread keeps its scheduling class ({:?} refused: {err})",
            core.config.scheduling
        );
    }
    {
        let now = Instant::now();
        let (mut ctx, app) = core.split(now, &mut dirty);
        app.on_start(&mut ctx);
    }
    loop {
        let now = Instant::now();
        let busy = more_commands
            || core.local.is_pending()
            || !more_reads.is_empty()
            || !core.more_reads.is_empty()
            || !core.more_writes.is_empty();
        let timeout =
            if busy || !dirty.is_empty() || !core.commands.is_empty() || core.has_handoffs() {
                Some(Duration::ZERO)
            } else {
                core.timers
                    .next()
                    .map(|at| at.saturating_duration_since(now))
            };
        let mut polled = Ok(());
        events.clear();
        if timeout != Some(Duration::ZERO) {
            spinner.idle(now);
            let budget = spinner.budget();
            if !budget.is_zero() {
                polled = spin(poll, &core, &mut events, budget);
            }
        }
        if events.is_empty() && polled.is_ok() {
            // Senders wake the loop only after this store; a command sent
            // before it is seen by the check below.
            core.sleeping.store(true, Ordering::SeqCst);
            let timeout = if core.commands.is_empty() && !core.has_handoffs() {
                timeout
            } else {
                Some(Duration::ZERO)
            };
            if timeout == Some(Duration::ZERO) {
                polled = poll.poll(&mut events, timeout);
            } else {
                core.asleep = Some(timeout.map(|timeout| now + timeout));
                drop(core);
                polled = poll.poll(&mut events, timeout);
                core = lock(shared);
                core.asleep = None;
            }
        }
        core.sleeping.store(false, Ordering::SeqCst);
        if let Err(err) = polled {
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        let now = Instant::now();
        // Commands may have arrived without a wake-up (the loop was awake).
        more_commands = !core.commands.is_empty();
        if !events.is_empty() || more_commands {
            spinner.work(now);
        }
        ready.clear();
        for event in events.iter() {
            match event.token() {
                WAKER => more_commands = true,
                LISTENER => core.accept(now, &mut dirty),
                Token(token) if token >= LINGER_BASE => {
                    let core = &mut *core;
                    core.lingering
                        .on_readable(&core.registry, token, &mut core.scratch);
                }
                Token(token) if token >= PLAIN_BASE => {
                    core.serve_plain(now, token, event, &mut dirty);
                }
                Token(token) => {
                    let readable =
                        event.is_readable() || event.is_read_closed() || event.is_error();
                    // A failed connect may report only an error or a hang-up.
                    let writable =
                        event.is_writable() || event.is_write_closed() || event.is_error();
                    ready.push((token - FIRST_CONN, readable, writable));
                }
            }
        }
        more_reads.append(&mut core.more_reads);
        for index in more_reads.drain(..) {
            ready.push((index, true, false));
        }
        let core_ref = &mut *core;
        for index in core_ref.more_writes.drain(..) {
            if let Some(io) = core_ref.conns.get_mut(index) {
                queue_flush(io, &mut dirty, index);
            }
        }
        if core.has_handoffs() {
            core.adopt_handoffs(now, &mut dirty);
        }
        if more_commands {
            more_commands = core.serve_commands(now, &mut dirty);
        }
        for (index, readable, writable) in ready.drain(..) {
            core.serve_socket(
                now,
                index,
                readable,
                writable,
                &mut dirty,
                &mut protocol_events,
                &mut more_reads,
            );
        }
        if core.fire_timers(now, &mut dirty, &mut protocol_events) {
            // A timer ends a wait as work does: a loop that only its
            // periodic timers wake learns that spinning after them is waste.
            spinner.work(now);
        }
        core.serve_local(now, &mut dirty);
        core.flush_all(now, &mut dirty, &mut flushing, &mut protocol_events);
        core.update_listener();
        core.publish_load();
        let done = {
            let (mut ctx, app) = core.split(now, &mut dirty);
            app.on_pass_end(&mut ctx);
            app.is_done(&ctx)
        };
        // The loop outlives its last connection by the time its peers
        // take to end (spec §11.3.4), at most `LINGER_ON_EXIT`.
        if done && core.lingering.is_empty() {
            return Ok(());
        }
        if done && !stopping {
            stopping = true;
            for (at, timer) in core.lingering.stop_by(now + LINGER_ON_EXIT) {
                core.timers.insert(at, timer);
            }
        }
    }
}

impl<A: App> Core<A> {
    /// Flushes every connection in `dirty`, and those the flushes dirty.
    fn flush_all(
        &mut self,
        now: Instant,
        dirty: &mut Vec<usize>,
        flushing: &mut Vec<usize>,
        events: &mut Vec<Event>,
    ) {
        while !dirty.is_empty() {
            // Swapped, not taken: both vectors keep their room.
            std::mem::swap(dirty, flushing);
            for index in flushing.drain(..) {
                self.flush(now, index, dirty, events);
            }
        }
    }

    fn split<'a>(&'a mut self, now: Instant, dirty: &'a mut Vec<usize>) -> (Ctx<'a>, &'a mut A) {
        (
            Ctx {
                now,
                conns: &mut self.conns,
                registry: &self.registry,
                dirty,
                timers: &mut self.timers,
                config: &self.config,
                generations: &mut self.generations,
                accepting: &mut self.accepting,
                plain: &mut self.plain,
                closed: self.closed_stats.as_ref(),
            },
            &mut self.app,
        )
    }

    fn key_of(&self, index: usize) -> Option<ConnKey> {
        self.conns.get(index).map(|io| ConnKey {
            index,
            generation: io.generation,
        })
    }

    /// Serves queued commands; returns whether some are left.
    fn serve_commands(&mut self, now: Instant, dirty: &mut Vec<usize>) -> bool {
        let mut left = true;
        for _ in 0..MAX_COMMANDS_PER_WAKEUP {
            match self.commands.try_recv() {
                Ok(command) => {
                    let (mut ctx, app) = self.split(now, dirty);
                    app.on_command(&mut ctx, command);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                    left = false;
                    break;
                }
            }
        }
        // Commands were taken: async senders waiting for room may go on.
        self.room.wake_all();
        if !left {
            self.local.queue_drained();
        }
        let (mut ctx, app) = self.split(now, dirty);
        app.on_commands_served(&mut ctx);
        left
    }

    /// Serves the commands the app sent this loop from its own code during
    /// the pass (see `local`), before the pass's flush.
    fn serve_local(&mut self, now: Instant, dirty: &mut Vec<usize>) {
        if !self.local.is_pending() {
            return;
        }
        let mut batch = std::mem::take(&mut self.local_batch);
        self.local.take_into(&mut batch);
        let (mut ctx, app) = self.split(now, dirty);
        for command in batch.drain(..) {
            app.on_command(&mut ctx, command);
        }
        app.on_commands_served(&mut ctx);
        self.local_batch = batch;
    }

    /// Accepts until `WouldBlock` or capacity.
    fn accept(&mut self, now: Instant, dirty: &mut Vec<usize>) {
        if self.accepting != AcceptState::Accepting {
            return;
        }
        while self.conns.len() < self.config.max_connections {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    // EMFILE and friends: back off until a connection closes.
                    log::warn!("accept failed: {err}");
                    self.accepting = AcceptState::Paused;
                    return;
                }
            };
            let held = self.conns.len();
            let stream = match &self.balance {
                Some(seat) => match seat.hand_off(stream, held) {
                    Some(stream) => stream,
                    None => continue,
                },
                None => stream,
            };
            self.admit(now, stream, peer, dirty);
            self.publish_load();
        }
        // At capacity: stop listening until a connection ends (sozu's gate).
        self.accepting = AcceptState::Paused;
    }

    /// Takes a connection this loop accepted, or one another loop handed
    /// to it: registers it, and the app opens it.
    fn admit(
        &mut self,
        now: Instant,
        mut stream: mio::net::TcpStream,
        peer: SocketAddr,
        dirty: &mut Vec<usize>,
    ) {
        if let Err(err) = socket::configure(&stream, &self.config.socket) {
            log::debug!("socket options on an accepted connection: {err}");
        }
        let entry = self.conns.vacant_entry();
        let index = entry.key();
        if let Err(err) = self
            .registry
            .register(&mut stream, conn_token(index), Interest::READABLE)
        {
            log::warn!("register accepted connection: {err}");
            return;
        }
        self.generations += 1;
        let conn = Connection::new(Side::Server, self.config.conn.clone(), now);
        let mut io = ConnIo::new(stream, conn, false, self.generations, now);
        log::debug!("connection {index}: accepted from {peer}");
        if let Some(tls) = &self.config.tls_server {
            match tls.session() {
                Ok(session) => io = io.with_tls(session),
                Err(err) => {
                    log::warn!("TLS session for an accepted connection: {err}");
                    let _ = self.registry.deregister(&mut io.socket);
                    return;
                }
            }
        }
        io.flush_queued = true;
        entry.insert(io);
        dirty.push(index);
        if let Some(key) = self.key_of(index) {
            let (mut ctx, app) = self.split(now, dirty);
            app.on_open(&mut ctx, key);
        }
    }

    /// Whether other loops handed this one connections it has not adopted.
    fn has_handoffs(&self) -> bool {
        self.balance.as_ref().is_some_and(BalanceSeat::has_handoffs)
    }

    /// Adopts the connections other loops accepted and handed to this one;
    /// once this loop stopped accepting (it is shutting down), closes them,
    /// as its listener would have left them unaccepted.
    fn adopt_handoffs(&mut self, now: Instant, dirty: &mut Vec<usize>) {
        while let Some(stream) = self.balance.as_ref().and_then(BalanceSeat::adopt) {
            if self.accepting == AcceptState::Stopped {
                log::debug!("a connection handed over during shutdown is closed");
                continue;
            }
            match stream.peer_addr() {
                Ok(peer) => self.admit(now, stream, peer, dirty),
                // Reset before it was adopted: nothing to serve.
                Err(err) => log::debug!("a handed-over connection is gone: {err}"),
            }
        }
        self.publish_load();
    }

    /// Tells the other loops how many connections this one holds.
    fn publish_load(&self) {
        if let Some(seat) = &self.balance {
            seat.publish(self.conns.len());
        }
    }

    /// A readiness event on a plain socket or listener token.
    fn serve_plain(
        &mut self,
        now: Instant,
        token: usize,
        event: &mio::event::Event,
        dirty: &mut Vec<usize>,
    ) {
        if token >= PLAIN_LISTEN_BASE {
            return self.accept_plain(now, token - PLAIN_LISTEN_BASE, dirty);
        }
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        let writable = event.is_writable() || event.is_write_closed() || event.is_error();
        if let Some(key) = self.plain.key_at(token - PLAIN_BASE) {
            let (mut ctx, app) = self.split(now, dirty);
            app.on_plain(&mut ctx, key, readable, writable);
        }
    }

    /// Accepts plain connections until `WouldBlock`.
    fn accept_plain(&mut self, now: Instant, listener: usize, dirty: &mut Vec<usize>) {
        loop {
            let stream = match self.plain.accept(listener) {
                Ok(stream) => stream,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    log::warn!("plain accept failed: {err}");
                    return;
                }
            };
            let _ = socket::configure(&stream, &self.config.socket);
            let (mut ctx, app) = self.split(now, dirty);
            if let Ok(key) = ctx.insert_plain(stream) {
                app.on_plain_accept(&mut ctx, listener, key);
            }
        }
    }

    /// Registers or deregisters the listener as capacity and shutdown require.
    fn update_listener(&mut self) {
        let Some(listener) = self.listener.as_mut() else {
            return;
        };
        match self.accepting {
            // Re-arming an edge-triggered registration reports pending connections.
            AcceptState::Paused
                if self.conns.len() < self.config.max_connections
                    && self
                        .registry
                        .reregister(listener, LISTENER, Interest::READABLE)
                        .is_ok() =>
            {
                self.accepting = AcceptState::Accepting;
            }
            AcceptState::Stopped => {
                let _ = self.registry.deregister(listener);
                self.listener = None;
                if let Some(seat) = &self.balance {
                    seat.close();
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn serve_socket(
        &mut self,
        mut now: Instant,
        index: usize,
        readable: bool,
        writable: bool,
        dirty: &mut Vec<usize>,
        events: &mut Vec<Event>,
        more_reads: &mut Vec<usize>,
    ) {
        let Some(io) = self.conns.get_mut(index) else {
            return; // a spurious or stale event
        };
        if io.connecting && writable {
            match io.finish_connect() {
                Ok(true) => {
                    if let Some(key) = self.key_of(index) {
                        let (mut ctx, app) = self.split(now, dirty);
                        app.on_open(&mut ctx, key);
                    }
                }
                Ok(false) => return,
                Err(err) => return self.remove(now, index, Some(LoopError::Io(err)), dirty),
            }
        }
        if !self.conns.contains(index) {
            return;
        }
        if readable {
            let mut reads = 0;
            loop {
                let Some(io) = self.conns.get_mut(index) else {
                    return;
                };
                let outcome = match io.read_once(now, &mut self.scratch, events) {
                    Ok(outcome) => outcome,
                    Err(Closed::Io(err)) => {
                        return self.remove(now, index, Some(LoopError::Io(err)), dirty)
                    }
                    Err(Closed::Done) => return self.remove(now, index, None, dirty),
                };
                // The application consumes what arrived before the next read.
                self.dispatch(now, index, events, dirty);
                if outcome == ReadOutcome::Done {
                    break;
                }
                reads += 1;
                if reads == MAX_READS_PER_EVENT {
                    more_reads.push(index); // other connections get a turn first
                    break;
                }
                // More is waiting: write what the application answered, and
                // the credit it freed, before reading on. Behind the rest of
                // the batch (up to a megabyte) a 64-byte answer or a
                // WINDOW_UPDATE waits as long as the megabyte takes to read.
                self.flush(now, index, dirty, events);
                // What that flush sent (a PING among it) is answered by what
                // the next reads bring: read at the same instant it was sent,
                // an answer would measure a round trip of zero.
                now = Instant::now();
            }
        }
        if let Some(io) = self.conns.get_mut(index) {
            queue_flush(io, dirty, index);
        }
    }

    /// Hands collected protocol events to the app.
    fn dispatch(
        &mut self,
        now: Instant,
        index: usize,
        events: &mut Vec<Event>,
        dirty: &mut Vec<usize>,
    ) {
        let Some(key) = self.key_of(index) else {
            events.clear();
            return;
        };
        for event in events.drain(..) {
            let (mut ctx, app) = self.split(now, dirty);
            app.on_event(&mut ctx, key, event);
        }
    }

    /// Writes a connection's output, updates its timer and interest, and
    /// removes it once its transport is finished.
    fn flush(
        &mut self,
        now: Instant,
        index: usize,
        dirty: &mut Vec<usize>,
        events: &mut Vec<Event>,
    ) {
        let Some(io) = self.conns.get_mut(index) else {
            return;
        };
        io.flush_queued = false;
        let outcome = io.flush(now, events);
        if io.more_to_write {
            self.more_writes.push(index);
        }
        self.dispatch(now, index, events, dirty);
        match outcome {
            Err(Closed::Io(err)) => {
                return self.remove(now, index, Some(LoopError::Io(err)), dirty)
            }
            Err(Closed::Done) | Ok(Some(_)) => return self.remove(now, index, None, dirty),
            Ok(None) => {}
        }
        let Some(io) = self.conns.get_mut(index) else {
            return;
        };
        if let Some(deadline) = io.conn.poll_timeout() {
            if io.scheduled.is_none_or(|scheduled| deadline < scheduled) {
                io.scheduled = Some(deadline);
                self.timers.insert(
                    deadline,
                    TimerKind::Conn {
                        index,
                        generation: io.generation,
                    },
                );
            }
        }
        if io.read_paused && io.conn.wants_read() {
            io.read_paused = false;
            self.more_reads.push(index);
        }
        let wanted = io.wanted_interest();
        let token = conn_token(index);
        match wanted {
            Some(interest) if interest != io.interest => {
                if self
                    .registry
                    .reregister(&mut io.socket, token, interest)
                    .is_ok()
                {
                    io.interest = interest;
                }
            }
            // Reading paused and nothing to write: mio needs some interest, so
            // the old one stays; `read_paused` makes readiness wait.
            Some(_) | None => {}
        }
    }

    /// Fires the timers due at `now`; returns whether any was.
    fn fire_timers(
        &mut self,
        now: Instant,
        dirty: &mut Vec<usize>,
        events: &mut Vec<Event>,
    ) -> bool {
        let mut fired = false;
        while let Some((at, kind)) = self.timers.pop_due(now) {
            fired = true;
            match kind {
                TimerKind::App(token) => {
                    let (mut ctx, app) = self.split(now, dirty);
                    app.on_timer(&mut ctx, token);
                }
                TimerKind::Linger { index, generation } => {
                    self.lingering.expire(&self.registry, index, generation);
                }
                TimerKind::Conn { index, generation } => {
                    let Some(io) = self.conns.get_mut(index) else {
                        continue;
                    };
                    if io.generation != generation || io.scheduled != Some(at) {
                        continue; // stale entry
                    }
                    io.scheduled = None;
                    io.conn.handle_timeout(now);
                    io.drain_events(events);
                    self.dispatch(now, index, events, dirty);
                    if let Some(io) = self.conns.get_mut(index) {
                        queue_flush(io, dirty, index);
                    }
                }
            }
        }
        fired
    }

    fn remove(
        &mut self,
        now: Instant,
        index: usize,
        error: Option<LoopError>,
        dirty: &mut Vec<usize>,
    ) {
        if !self.conns.contains(index) {
            return;
        }
        let mut io = self.conns.remove(index);
        // Deregister before the slot can be reused (stale-token guard).
        let _ = self.registry.deregister(&mut io.socket);
        let key = ConnKey {
            index,
            generation: io.generation,
        };
        dirty.retain(|d| *d != index);
        let lingers = !io.peer_ended() && !matches!(error, Some(LoopError::Io(_)));
        let error = error.or_else(|| io.close_error.take().map(LoopError::Protocol));
        let error = match error {
            Some(LoopError::Protocol(ConnectionError::Preface(PrefaceError::BadMagic)))
                if io.tls_on_plain_port =>
            {
                Some(LoopError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a TLS handshake on a plaintext mux port (refused)",
                )))
            }
            other => other,
        };
        if log::log_enabled!(log::Level::Debug) {
            let peer = io
                .socket
                .peer_addr()
                .map_or_else(|_| "a peer".to_owned(), |peer| peer.to_string());
            let stats = io.conn.stats();
            let how = error
                .as_ref()
                .map_or_else(|| "cleanly".to_owned(), |err| format!("with {err}"));
            log::debug!(
                "connection {index} with {peer} closed {how} after {:.3?} ({} bytes of data in, {} out, {} streams opened by the peer)",
                now.saturating_duration_since(io.opened),
                stats.data_bytes_received,
                stats.data_bytes_sent,
                stats.streams_opened_by_peer,
            );
        }
        self.closed_stats = Some((key, io.conn.stats()));
        // The peer may still be sending: closing on unread bytes would
        // reset the connection, and what we wrote last could be lost.
        if lingers {
            let registry = &self.registry;
            if let Some((at, timer)) = self.lingering.start(registry, io.socket, now) {
                self.timers.insert(at, timer);
            }
        }
        let (mut ctx, app) = self.split(now, dirty);
        app.on_closed(&mut ctx, key, error);
        self.closed_stats = None;
    }
}
