//! The event loop: one thread, one `mio::Poll`, the connections it owns in a
//! slab, an optional listener, a command channel with its `Waker`, and the
//! timer heap. The application logic (server routes, client calls) plugs in
//! through the [`App`] trait and runs on the loop thread, so that a request
//! is read, handled and answered with no thread hand-off.
//!
//! One iteration: wait for readiness (or the next timer); serve commands,
//! accepts and each ready connection (read until `WouldBlock`, feed
//! `mux-core`, hand its events to the app); fire due timers; flush every
//! connection the app touched; recompute each socket's interest.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use mux_core::{Config, Connection, ConnectionError, Event, Side};
use slab::Slab;

use crate::conn_io::{Closed, ConnIo};
use crate::socket::{self, SocketOptions};
use crate::timer::{TimerKind, Timers};

/// Token of the waker that announces commands.
pub const WAKER: Token = Token(0);
/// Token of the listener.
pub const LISTENER: Token = Token(1);
/// Connections use `Token(FIRST_CONN + slab index)`.
const FIRST_CONN: usize = 2;
/// Plain (non-mux) sockets use `Token(PLAIN_BASE + slab index)`, and plain
/// listeners `Token(PLAIN_LISTEN_BASE + slab index)`: far apart, so the
/// ranges never meet.
const PLAIN_BASE: usize = 1 << 40;
const PLAIN_LISTEN_BASE: usize = 1 << 41;

/// A plain TCP socket's handle (for proxies such as the sidecar): its slab
/// index and generation, like [`ConnKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlainKey {
    index: usize,
    generation: u64,
}

/// A plain TCP socket the loop watches for the application.
#[derive(Debug)]
struct Plain {
    socket: mio::net::TcpStream,
    generation: u64,
}

/// Commands served per wakeup before sockets get a turn (the rest wait for
/// the next iteration, which does not block).
const MAX_COMMANDS_PER_WAKEUP: usize = 1024;

/// How long the loop keeps polling without blocking before it sleeps (see
/// `run`). On these machines a sleeping thread takes tens of microseconds to
/// wake (ANCHORS.md); measured with the benchmark, 64-byte calls chained on
/// the loop went from ~9k/s to ~100k/s when both loops spun 200 µs instead of
/// sleeping at once. An idle loop spins this long once, then sleeps.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(200);

/// Readiness events fetched per `poll` call.
const EVENTS_CAPACITY: usize = 1024;

/// A connection's handle: its slab index and the generation of the slot, so
/// that a key kept after its connection ended never reaches a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    index: usize,
    generation: u64,
}

/// Loop configuration.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Protocol configuration of every connection.
    pub conn: Config,
    /// Socket options.
    pub socket: SocketOptions,
    /// Connections this loop holds at most; the listener stops accepting at
    /// this count and resumes below it.
    pub max_connections: usize,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            conn: Config::default(),
            socket: SocketOptions::default(),
            max_connections: 10_000,
        }
    }
}

/// Application logic run on the loop thread. Every callback must return
/// quickly: it runs between socket operations of all this loop's connections.
pub trait App {
    /// What other threads send to the loop.
    type Command: Send + 'static;

    /// Called once when the loop starts, before any I/O.
    fn on_start(&mut self, _ctx: &mut Ctx<'_>) {}

    /// A protocol event of connection `key`.
    fn on_event(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, event: Event);

    /// A connection was accepted (servers) or connected (clients).
    fn on_open(&mut self, _ctx: &mut Ctx<'_>, _key: ConnKey) {}

    /// A connection's transport is gone; `error` says why, `None` if it ended cleanly.
    fn on_closed(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, error: Option<LoopError>);

    /// A command from another thread.
    fn on_command(&mut self, ctx: &mut Ctx<'_>, command: Self::Command);

    /// An application timer set with [`Ctx::set_timer`] is due.
    fn on_timer(&mut self, _ctx: &mut Ctx<'_>, _token: u64) {}

    /// Whether the loop should stop (checked after every iteration).
    fn is_done(&self, ctx: &Ctx<'_>) -> bool;

    /// A plain socket became readable and/or writable (edge-triggered: read
    /// or write until `WouldBlock`, or remember to come back).
    fn on_plain(&mut self, _ctx: &mut Ctx<'_>, _key: PlainKey, _readable: bool, _writable: bool) {}

    /// A plain listener (from [`Ctx::listen_plain`]) accepted `key`.
    fn on_plain_accept(&mut self, _ctx: &mut Ctx<'_>, _listener: usize, _key: PlainKey) {}
}

/// Why a connection ended, as the loop reports it.
#[derive(Debug)]
pub enum LoopError {
    /// The protocol ended it with an error.
    Protocol(ConnectionError),
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for LoopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Protocol(err) => write!(f, "{err}"),
            Self::Io(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for LoopError {}

impl From<LoopError> for io::Error {
    fn from(err: LoopError) -> Self {
        match err {
            LoopError::Io(err) => err,
            LoopError::Protocol(err) => Self::new(io::ErrorKind::ConnectionAborted, err),
        }
    }
}

/// What the app may do during a callback.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The time of this loop iteration.
    pub now: Instant,
    conns: &'a mut Slab<ConnIo>,
    registry: &'a Registry,
    dirty: &'a mut Vec<usize>,
    timers: &'a mut Timers,
    config: &'a LoopConfig,
    generations: &'a mut u64,
    accepting: &'a mut AcceptState,
    plain: &'a mut Slab<Plain>,
    plain_listeners: &'a mut Slab<mio::net::TcpListener>,
}

/// Whether the listener is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptState {
    /// No listener.
    None,
    /// Registered and accepting.
    Accepting,
    /// Deregistered at capacity; re-registered below it.
    Paused,
    /// Deregistered for good (shutdown).
    Stopped,
}

impl Ctx<'_> {
    /// The state machine of connection `key`; the loop flushes it after the callback.
    pub fn conn(&mut self, key: ConnKey) -> Option<&mut Connection> {
        let io = self
            .conns
            .get_mut(key.index)
            .filter(|io| io.generation == key.generation)?;
        queue_flush(io, self.dirty, key.index);
        Some(&mut io.conn)
    }

    /// Closes connection `key` (gracefully with `NO_ERROR`, see `Connection::close`).
    pub fn close(&mut self, key: ConnKey, code: mux_core::ErrorCode, reason: &str) {
        let now = self.now;
        if let Some(conn) = self.conn(key) {
            conn.close(now, code, reason);
        }
    }

    /// Closes every connection of this loop.
    pub fn close_all(&mut self, code: mux_core::ErrorCode, reason: &str) {
        for key in self.keys() {
            self.close(key, code, reason);
        }
    }

    /// Keys of every connection of this loop.
    pub fn keys(&self) -> Vec<ConnKey> {
        self.conns
            .iter()
            .map(|(index, io)| ConnKey {
                index,
                generation: io.generation,
            })
            .collect()
    }

    /// Connections this loop holds.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Starts a client connection to `addr`; [`App::on_open`] follows once
    /// the TCP handshake completes, or [`App::on_closed`] if it fails.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnKey> {
        let mut stream = socket::connect(addr, &self.config.socket)?;
        let entry = self.conns.vacant_entry();
        let index = entry.key();
        self.registry
            .register(&mut stream, Token(FIRST_CONN + index), Interest::WRITABLE)?;
        *self.generations += 1;
        let conn = Connection::new(Side::Client, self.config.conn.clone(), self.now);
        let mut io = ConnIo::new(stream, conn, true, *self.generations);
        io.interest = Interest::WRITABLE;
        let generation = io.generation;
        io.flush_queued = true;
        entry.insert(io);
        self.dirty.push(index);
        Ok(ConnKey { index, generation })
    }

    /// Listens for plain TCP connections on `addr`; accepted sockets arrive in
    /// [`App::on_plain_accept`] with the returned listener number.
    pub fn listen_plain(&mut self, addr: SocketAddr) -> io::Result<(usize, SocketAddr)> {
        let mut listener = socket::listen(addr, false, &self.config.socket)?;
        let local = listener.local_addr()?;
        let entry = self.plain_listeners.vacant_entry();
        let index = entry.key();
        self.registry.register(
            &mut listener,
            Token(PLAIN_LISTEN_BASE + index),
            Interest::READABLE,
        )?;
        entry.insert(listener);
        Ok((index, local))
    }

    fn insert_plain(&mut self, mut socket: mio::net::TcpStream) -> io::Result<PlainKey> {
        let entry = self.plain.vacant_entry();
        let index = entry.key();
        self.registry.register(
            &mut socket,
            Token(PLAIN_BASE + index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        *self.generations += 1;
        let generation = *self.generations;
        entry.insert(Plain { socket, generation });
        Ok(PlainKey { index, generation })
    }

    /// Starts a plain TCP connection to `addr`; [`App::on_plain`] reports it
    /// writable once connected (check [`Ctx::plain_connected`]).
    pub fn connect_plain(&mut self, addr: SocketAddr) -> io::Result<PlainKey> {
        let socket = socket::connect(addr, &self.config.socket)?;
        self.insert_plain(socket)
    }

    fn plain_socket(&mut self, key: PlainKey) -> io::Result<&mut mio::net::TcpStream> {
        self.plain
            .get_mut(key.index)
            .filter(|p| p.generation == key.generation)
            .map(|p| &mut p.socket)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "plain socket closed"))
    }

    /// Whether a plain connect completed (`Err` if it failed).
    pub fn plain_connected(&mut self, key: PlainKey) -> io::Result<bool> {
        let socket = self.plain_socket(key)?;
        if let Some(err) = socket.take_error()? {
            return Err(err);
        }
        match socket.peer_addr() {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Reads from a plain socket (`WouldBlock` when drained, `Ok(0)` at end of file).
    pub fn plain_read(&mut self, key: PlainKey, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Read;
        self.plain_socket(key)?.read(buf)
    }

    /// Writes to a plain socket (`WouldBlock` when full).
    pub fn plain_write(&mut self, key: PlainKey, buf: &[u8]) -> io::Result<usize> {
        use std::io::Write;
        self.plain_socket(key)?.write(buf)
    }

    /// Ends the write side of a plain socket (half-close).
    pub fn plain_shutdown_write(&mut self, key: PlainKey) -> io::Result<()> {
        self.plain_socket(key)?.shutdown(std::net::Shutdown::Write)
    }

    /// Closes a plain socket, abortively (RST) when `abort`.
    pub fn plain_close(&mut self, key: PlainKey, abort: bool) {
        if self
            .plain
            .get(key.index)
            .is_none_or(|p| p.generation != key.generation)
        {
            return;
        }
        let mut plain = self.plain.remove(key.index);
        let _ = self.registry.deregister(&mut plain.socket);
        if abort {
            let _ = socket2::SockRef::from(&plain.socket).set_linger(Some(Duration::ZERO));
        }
    }

    /// Plain sockets open.
    pub fn plain_count(&self) -> usize {
        self.plain.len()
    }

    /// Asks for [`App::on_timer`] with `token` at `at`.
    pub fn set_timer(&mut self, at: Instant, token: u64) {
        self.timers.insert(at, TimerKind::App(token));
    }

    /// Stops accepting connections for good (the first step of a graceful shutdown).
    pub fn stop_accepting(&mut self) {
        if *self.accepting != AcceptState::None {
            *self.accepting = AcceptState::Stopped;
        }
    }

    /// Whether this loop still accepts connections.
    pub fn is_accepting(&self) -> bool {
        matches!(
            *self.accepting,
            AcceptState::Accepting | AcceptState::Paused
        )
    }
}

/// Adds a connection to this iteration's flush list, once.
fn queue_flush(io: &mut ConnIo, dirty: &mut Vec<usize>, index: usize) {
    if !io.flush_queued {
        io.flush_queued = true;
        dirty.push(index);
    }
}

/// A handle for other threads: sends commands to the loop and wakes it.
#[derive(Debug)]
pub struct LoopHandle<C> {
    sender: Sender<C>,
    waker: Arc<Waker>,
    /// The loop is (about to be) blocked in `poll`: only then does a command
    /// need the waker's syscall.
    sleeping: Arc<AtomicBool>,
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

    /// Sends a command if the queue has room; gives it back otherwise.
    pub fn try_send(&self, command: C) -> Result<(), TrySendError<C>> {
        self.sender.try_send(command)?;
        self.wake();
        Ok(())
    }
}

/// The loop itself; [`EventLoop::run`] consumes it on its thread.
#[derive(Debug)]
pub struct EventLoop<A: App> {
    poll: Poll,
    listener: Option<mio::net::TcpListener>,
    conns: Slab<ConnIo>,
    commands: Receiver<A::Command>,
    sleeping: Arc<AtomicBool>,
    timers: Timers,
    config: LoopConfig,
    generations: u64,
    accepting: AcceptState,
    plain: Slab<Plain>,
    plain_listeners: Slab<mio::net::TcpListener>,
    /// The buffer every read of this loop goes through (see `conn_io`).
    scratch: Vec<u8>,
    /// Connections whose read budget ran out, or whose reading resumed: read
    /// them next iteration without waiting for a new edge.
    more_reads: Vec<usize>,
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
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (sender, commands) = crossbeam_channel::bounded(queue);
        let sleeping = Arc::new(AtomicBool::new(false));
        let mut listener = listener;
        let accepting = match listener.as_mut() {
            Some(listener) => {
                poll.registry()
                    .register(listener, LISTENER, Interest::READABLE)?;
                AcceptState::Accepting
            }
            None => AcceptState::None,
        };
        let event_loop = Self {
            poll,
            listener,
            conns: Slab::new(),
            commands,
            sleeping: Arc::clone(&sleeping),
            timers: Timers::default(),
            config,
            generations: 0,
            accepting,
            more_reads: Vec::new(),
            plain: Slab::new(),
            plain_listeners: Slab::new(),
            scratch: vec![0; crate::conn_io::READ_CHUNK],
            app,
        };
        Ok((
            event_loop,
            LoopHandle {
                sender,
                waker,
                sleeping,
            },
        ))
    }

    /// The app, to finish setting it up before [`EventLoop::run`].
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }

    /// Runs until the app says it is done; returns the app.
    pub fn run(mut self) -> io::Result<A> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut dirty: Vec<usize> = Vec::new();
        let mut protocol_events: Vec<Event> = Vec::new();
        let mut more_reads: Vec<usize> = Vec::new();
        let mut more_commands = false;
        let mut ready: Vec<(usize, bool, bool)> = Vec::with_capacity(EVENTS_CAPACITY);
        {
            let now = Instant::now();
            let (mut ctx, app) = self.split(now, &mut dirty);
            app.on_start(&mut ctx);
        }
        loop {
            let now = Instant::now();
            self.sleeping.store(true, Ordering::SeqCst);
            let busy = more_commands || !more_reads.is_empty() || !self.more_reads.is_empty();
            let timeout = if busy || !dirty.is_empty() || !self.commands.is_empty() {
                Some(Duration::ZERO)
            } else {
                self.timers
                    .next()
                    .map(|at| at.saturating_duration_since(now))
            };
            let mut polled = Ok(());
            events.clear();
            if timeout != Some(Duration::ZERO) {
                // Before sleeping, look again for a short while: waking a
                // sleeping loop costs tens of microseconds on these machines
                // (ANCHORS.md), more than a small request's round trip.
                let spin_until = Instant::now() + SPIN_BEFORE_SLEEP;
                while events.is_empty() && Instant::now() < spin_until && self.commands.is_empty() {
                    polled = self.poll.poll(&mut events, Some(Duration::ZERO));
                    if polled.is_err() {
                        break;
                    }
                }
            }
            if events.is_empty() && polled.is_ok() {
                let timeout = if self.commands.is_empty() {
                    timeout
                } else {
                    Some(Duration::ZERO)
                };
                polled = self.poll.poll(&mut events, timeout);
            }
            self.sleeping.store(false, Ordering::SeqCst);
            if let Err(err) = polled {
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            let now = Instant::now();
            // Commands may have arrived without a wake-up (the loop was awake).
            more_commands = !self.commands.is_empty();
            ready.clear();
            for event in events.iter() {
                match event.token() {
                    WAKER => more_commands = true,
                    LISTENER => self.accept(now, &mut dirty),
                    Token(token) if token >= PLAIN_LISTEN_BASE => {
                        self.accept_plain(now, token - PLAIN_LISTEN_BASE, &mut dirty);
                    }
                    Token(token) if token >= PLAIN_BASE => {
                        let index = token - PLAIN_BASE;
                        let readable =
                            event.is_readable() || event.is_read_closed() || event.is_error();
                        let writable =
                            event.is_writable() || event.is_write_closed() || event.is_error();
                        if let Some(plain) = self.plain.get(index) {
                            let key = PlainKey {
                                index,
                                generation: plain.generation,
                            };
                            let (mut ctx, app) = self.split(now, &mut dirty);
                            app.on_plain(&mut ctx, key, readable, writable);
                        }
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
            more_reads.append(&mut self.more_reads);
            for index in more_reads.drain(..) {
                ready.push((index, true, false));
            }
            if more_commands {
                more_commands = self.serve_commands(now, &mut dirty);
            }
            for (index, readable, writable) in ready.drain(..) {
                self.serve_socket(
                    now,
                    index,
                    readable,
                    writable,
                    &mut dirty,
                    &mut protocol_events,
                    &mut more_reads,
                );
            }
            self.fire_timers(now, &mut dirty, &mut protocol_events);
            while !dirty.is_empty() {
                let batch: Vec<usize> = std::mem::take(&mut dirty);
                for index in batch {
                    self.flush(now, index, &mut dirty, &mut protocol_events);
                }
            }
            self.update_listener();
            let done = {
                let (ctx, app) = self.split(now, &mut dirty);
                app.is_done(&ctx)
            };
            if done {
                return Ok(self.app);
            }
        }
    }

    fn split<'a>(&'a mut self, now: Instant, dirty: &'a mut Vec<usize>) -> (Ctx<'a>, &'a mut A) {
        (
            Ctx {
                now,
                conns: &mut self.conns,
                registry: self.poll.registry(),
                dirty,
                timers: &mut self.timers,
                config: &self.config,
                generations: &mut self.generations,
                accepting: &mut self.accepting,
                plain: &mut self.plain,
                plain_listeners: &mut self.plain_listeners,
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
        for _ in 0..MAX_COMMANDS_PER_WAKEUP {
            match self.commands.try_recv() {
                Ok(command) => {
                    let (mut ctx, app) = self.split(now, dirty);
                    app.on_command(&mut ctx, command);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return false,
            }
        }
        true
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
            let (mut stream, _peer) = match listener.accept() {
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
            if let Err(err) = socket::configure(&stream, &self.config.socket) {
                log::debug!("socket options on an accepted connection: {err}");
            }
            let entry = self.conns.vacant_entry();
            let index = entry.key();
            if let Err(err) = self.poll.registry().register(
                &mut stream,
                Token(FIRST_CONN + index),
                Interest::READABLE,
            ) {
                log::warn!("register accepted connection: {err}");
                continue;
            }
            self.generations += 1;
            let conn = Connection::new(Side::Server, self.config.conn.clone(), now);
            let mut io = ConnIo::new(stream, conn, false, self.generations);
            io.flush_queued = true;
            entry.insert(io);
            dirty.push(index);
            if let Some(key) = self.key_of(index) {
                let (mut ctx, app) = self.split(now, dirty);
                app.on_open(&mut ctx, key);
            }
        }
        // At capacity: stop listening until a connection ends (sozu's gate).
        self.accepting = AcceptState::Paused;
    }

    /// Accepts plain connections until `WouldBlock`.
    fn accept_plain(&mut self, now: Instant, listener: usize, dirty: &mut Vec<usize>) {
        loop {
            let Some(socket) = self.plain_listeners.get(listener) else {
                return;
            };
            let (stream, _peer) = match socket.accept() {
                Ok(accepted) => accepted,
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
                        .poll
                        .registry()
                        .reregister(listener, LISTENER, Interest::READABLE)
                        .is_ok() =>
            {
                self.accepting = AcceptState::Accepting;
            }
            AcceptState::Stopped => {
                let _ = self.poll.registry().deregister(listener);
                self.listener = None;
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn serve_socket(
        &mut self,
        now: Instant,
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
        let Some(io) = self.conns.get_mut(index) else {
            return;
        };
        if readable {
            match io.read(now, &mut self.scratch, events) {
                Ok(true) => more_reads.push(index),
                Ok(false) => {}
                Err(Closed::Io(err)) => {
                    return self.remove(now, index, Some(LoopError::Io(err)), dirty)
                }
                Err(Closed::Done) => return self.remove(now, index, None, dirty),
            }
            self.dispatch(now, index, events, dirty);
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
        let token = Token(FIRST_CONN + index);
        match wanted {
            Some(interest) if interest != io.interest => {
                if self
                    .poll
                    .registry()
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

    fn fire_timers(&mut self, now: Instant, dirty: &mut Vec<usize>, events: &mut Vec<Event>) {
        while let Some((at, kind)) = self.timers.pop_due(now) {
            match kind {
                TimerKind::App(token) => {
                    let (mut ctx, app) = self.split(now, dirty);
                    app.on_timer(&mut ctx, token);
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
        let _ = self.poll.registry().deregister(&mut io.socket);
        let key = ConnKey {
            index,
            generation: io.generation,
        };
        dirty.retain(|d| *d != index);
        let error = error.or_else(|| io.close_error.take().map(LoopError::Protocol));
        let (mut ctx, app) = self.split(now, dirty);
        app.on_closed(&mut ctx, key, error);
    }
}
