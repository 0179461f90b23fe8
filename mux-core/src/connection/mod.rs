//! The sans-IO connection state machine: one endpoint of a mux connection.
//!
//! Read spec §6 (streams), §9 (flow control) and §11 (connection management)
//! first: this module implements them, and cites them where each rule is
//! enforced.
//!
//! # Driving a connection
//!
//! A [`Connection`] does no I/O and reads no clock. Its methods fall in four
//! groups (after quinn-proto):
//!
//! - **(A) getters**: [`Connection::side`], [`Connection::stats`],
//!   [`Connection::rtt`], [`Connection::stream_state`], [`Connection::is_closed`]...
//! - **(B) input**: [`Connection::handle_read`] with bytes from the transport,
//!   [`Connection::handle_timeout`] when the deadline from `poll_timeout`
//!   passes, [`Connection::handle_eof`] when the transport closes.
//! - **(C) application commands**: [`Connection::open`], [`Connection::push`],
//!   [`Connection::send`], [`Connection::finish`], [`Connection::read`],
//!   [`Connection::reset`], [`Connection::ping`], [`Connection::close`].
//! - **(D) output**: [`Connection::poll_transmit`] (bytes to write),
//!   [`Connection::poll_event`] (what happened), [`Connection::poll_timeout`]
//!   (when to call `handle_timeout`).
//!
//! **The single-mutation rule**: after every call of group B or C, drain group
//! D in this order: `poll_transmit` until it returns `false` (or the transport
//! is full), `poll_event` until `None`, then `poll_timeout`. Output that is not
//! drained is not lost, but the deadline may have moved and credit may wait.
//!
//! # Memory
//!
//! Everything the peer can make this machine hold is bounded (spec §13.1):
//! received data by the windows we grant; streams by MAX_CONCURRENT_STREAMS;
//! queued answers (PING and SETTINGS ACKs, RESETs) by the flood budgets; data
//! the application queues by [`Config::stream_send_buffer`] and
//! [`Config::connection_send_buffer`]. When control output backs up because the
//! transport is not being written, [`Connection::wants_read`] turns false: the
//! runtime stops reading until it has written.

mod commands;
mod config;
mod event;
mod flood;
mod flow_control;
#[cfg(any(test, fuzzing))]
mod invariants;
mod payload;
mod recv;
mod recv_queue;
mod send;
mod send_queue;
mod stats;
mod stream;
mod streams;
mod timers;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use self::config::Config;
pub use self::event::Event;
use self::flood::TokenBucket;
pub use self::flood::{Budget, FloodLimits};
use self::flow_control::{RecvWindow, SendWindow, Tick};
pub use self::recv_queue::PACK_BELOW;
pub use self::stats::{code_name, Stats, CODE_SLOTS, FRAME_TYPE_SLOTS};
use self::stream::Stream;
pub use self::stream::{Chunk, ChunkRef, StreamState};
use self::streams::{Removed, StreamsState};
use self::timers::{Timer, TimerTable};
use crate::error::{ConnectionError, ErrorCode, Flood};
use crate::frame::{Frame, GoAway, SettingId, Settings};
use crate::stream_id::{Side, StreamId};

/// The connection window both directions start with (spec §9.2.1).
pub const INITIAL_CONNECTION_WINDOW: u32 = 65_536;

/// Control frames queued beyond this make [`Connection::wants_read`] false:
/// the peer is sending faster than its answers are written. 1,024 frames of at
/// most a few dozen bytes each.
const MAX_QUEUED_CONTROL: usize = 1024;

/// PINGs of ours that may await their ACK at once; more `ping` calls are refused.
const MAX_OUTSTANDING_PINGS: usize = 16;

/// Why we sent a PING: only the application's answers become
/// [`Event::PingAcked`]; the others are the connection's own business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PingPurpose {
    /// [`Connection::ping`].
    Application,
    /// The keepalive probe (spec §11.2.3).
    Keepalive,
    /// An RTT sample for auto-tuning (spec §9.6.7).
    Measure,
}

/// Where the handshake stands (spec §3, §3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the peer's preface.
    Preface,
    /// Preface received; the peer's first frame must be SETTINGS.
    Settings,
    /// Handshake done.
    Open,
    /// Ended; only queued output (a GOAWAY) remains to be written.
    Closed,
}

/// The peer's settings, as they apply to what we send (spec §5.4.1).
#[derive(Debug, Clone, Copy)]
struct PeerSettings {
    max_frame_size: u32,
    max_concurrent_streams: u32,
    initial_stream_window: u32,
    max_metadata_size: u32,
}

impl PeerSettings {
    fn defaults() -> Self {
        let default = |id: SettingId| id.default_value().unwrap_or(0);
        Self {
            max_frame_size: default(SettingId::MAX_FRAME_SIZE),
            max_concurrent_streams: default(SettingId::MAX_CONCURRENT_STREAMS),
            initial_stream_window: default(SettingId::INITIAL_STREAM_WINDOW),
            max_metadata_size: default(SettingId::MAX_METADATA_SIZE),
        }
    }
}

/// One flood budget per kind (spec §13.2).
#[derive(Debug, Clone, Copy)]
struct FloodBuckets {
    peer_resets: TokenBucket,
    refused_streams: TokenBucket,
    pings: TokenBucket,
    settings: TokenBucket,
    empty_frames: TokenBucket,
    stream_errors: TokenBucket,
}

impl FloodBuckets {
    fn new(limits: &FloodLimits, now: Instant) -> Self {
        Self {
            peer_resets: TokenBucket::new(limits.peer_resets, now),
            refused_streams: TokenBucket::new(limits.refused_streams, now),
            pings: TokenBucket::new(limits.pings, now),
            settings: TokenBucket::new(limits.settings, now),
            empty_frames: TokenBucket::new(limits.empty_frames, now),
            stream_errors: TokenBucket::new(limits.stream_errors, now),
        }
    }

    fn bucket(&mut self, kind: Flood) -> &mut TokenBucket {
        match kind {
            Flood::PeerResets => &mut self.peer_resets,
            Flood::RefusedStreams => &mut self.refused_streams,
            Flood::Pings => &mut self.pings,
            Flood::Settings => &mut self.settings,
            Flood::EmptyFrames => &mut self.empty_frames,
            Flood::StreamErrors => &mut self.stream_errors,
        }
    }
}

/// One endpoint of a mux connection, without I/O. See the module docs for the
/// driving contract.
#[derive(Debug)]
pub struct Connection {
    side: Side,
    config: Config,
    phase: Phase,
    /// The most recent time passed in; used where a command needs a clock.
    now: Instant,
    /// When the connection was made: the flow-control windows' clock
    /// counts from it (`Tick`).
    epoch: Instant,

    streams: StreamsState,
    timers: TimerTable,

    peer: PeerSettings,
    /// Our SETTINGS frames not yet acknowledged, with when they were sent.
    settings_in_flight: VecDeque<Instant>,
    /// The peer has acknowledged our first SETTINGS: our values bind it.
    settings_acked: bool,
    peer_settings_received: bool,

    conn_send: SendWindow,
    conn_recv: RecvWindow,
    /// Bytes the application queued and we have not sent yet, all streams.
    conn_queued: usize,
    /// Consumed bytes whose credit `poll_transmit` still has to process.
    /// Received DATA bytes whose connection credit is not yet returned.
    conn_consumed: u32,

    /// Our preface is queued or sent: the peer can read a GOAWAY from us.
    preface_queued: bool,
    preface_pending: bool,
    control: VecDeque<Frame>,
    events: VecDeque<Event>,

    /// Last Stream ID of the GOAWAY we sent, and of the one we received.
    goaway_sent: Option<StreamId>,
    goaway_received: Option<StreamId>,

    rtt: Option<Duration>,
    /// The smallest RTT sample (spec §9.6.1), and when the last PING meant to
    /// refresh it was sent (spec §9.6.7).
    min_rtt: Option<Duration>,
    last_tuning_ping: Option<Instant>,
    /// Our PINGs awaiting ACK: payload counter, send time, and why.
    pings: VecDeque<(u64, Instant, PingPurpose)>,
    ping_counter: u64,
    last_received: Instant,
    /// Since when no stream is active (the idle timer's start), if none is.
    idle_since: Option<Instant>,

    floods: FloodBuckets,
    stats: Stats,
}

impl Connection {
    /// A connection for `side`, created at `now`.
    ///
    /// A client queues its preface and SETTINGS at once; a server waits for
    /// the client's preface (spec §3.3).
    pub fn new(side: Side, config: Config, now: Instant) -> Self {
        let conn_recv = RecvWindow::new(
            INITIAL_CONNECTION_WINDOW,
            config.initial_connection_window,
            config.max_connection_window,
            Tick::default(),
        );
        let mut conn = Self {
            side,
            phase: Phase::Preface,
            now,
            epoch: now,
            streams: StreamsState::new(side),
            timers: TimerTable::default(),
            peer: PeerSettings::defaults(),
            settings_in_flight: VecDeque::new(),
            settings_acked: false,
            peer_settings_received: false,
            conn_send: SendWindow::new(INITIAL_CONNECTION_WINDOW),
            conn_recv,
            conn_queued: 0,
            conn_consumed: 0,
            preface_queued: false,
            preface_pending: false,
            control: VecDeque::new(),
            events: VecDeque::new(),
            goaway_sent: None,
            goaway_received: None,
            rtt: None,
            min_rtt: None,
            last_tuning_ping: None,
            pings: VecDeque::new(),
            ping_counter: 0,
            last_received: now,
            idle_since: Some(now),
            floods: FloodBuckets::new(&config.floods, now),
            stats: Stats::default(),
            config,
        };
        conn.timers.assign(
            Timer::Handshake,
            now.checked_add(conn.config.handshake_timeout),
        );
        if side == Side::Client {
            conn.queue_handshake(now);
        }
        conn
    }

    /// Queues our preface, SETTINGS and the connection window grant (spec
    /// §3.2, §3.6, §9.2.1). The RTT PING waits for the SETTINGS' ACK (spec
    /// §9.6.7).
    fn queue_handshake(&mut self, now: Instant) {
        self.preface_queued = true;
        self.preface_pending = true;
        let config = &self.config;
        self.control.push_back(Frame::Settings(Settings::new(&[
            (SettingId::MAX_FRAME_SIZE, config.max_frame_size),
            (
                SettingId::MAX_CONCURRENT_STREAMS,
                config.max_concurrent_streams,
            ),
            (
                SettingId::INITIAL_STREAM_WINDOW,
                config.initial_stream_window,
            ),
            (SettingId::MAX_METADATA_SIZE, config.max_metadata_size),
        ])));
        self.settings_in_flight.push_back(now);
        self.refresh_settings_timer();
        if let Some(increment) = self.conn_recv.take_initial_update() {
            self.queue_window_update(StreamId::CONNECTION, increment);
        }
    }

    // ---- (A) getters ----

    /// Which side this endpoint is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The counters of what the peer did, since the connection began or
    /// since [`Connection::take_stats`] last emptied them.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The counters, emptied: a metrics reporter adds what it takes to its
    /// totals without keeping a copy of each connection's counters to
    /// subtract from (about 700 bytes per connection).
    pub fn take_stats(&mut self) -> Stats {
        core::mem::take(&mut self.stats)
    }

    /// The smallest round-trip time measured: what window auto-tuning uses.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// The smoothed round-trip time, once a PING or SETTINGS was acknowledged.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// A stream's state, or `None` if it is not in memory (idle, or closed and read).
    pub fn stream_state(&self, id: StreamId) -> Option<StreamState> {
        self.streams.get(id).map(Stream::state)
    }

    /// Streams in memory.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Active streams opened by this endpoint and by the peer (spec §6.4).
    pub fn active_streams(&self) -> (u32, u32) {
        self.streams.active()
    }

    /// Bytes `send` would accept on `id` now.
    pub fn send_capacity(&self, id: StreamId) -> usize {
        match self.streams.get(id) {
            Some(stream) if stream.send.state == stream::SendState::Open => {
                self.capacity_of(stream)
            }
            _ => 0,
        }
    }

    /// Bytes queued for sending on all streams.
    pub fn queued_send_bytes(&self) -> usize {
        self.conn_queued
    }

    /// Data received and not yet read by the application, on all streams.
    pub fn buffered_recv_bytes(&self) -> usize {
        self.streams.iter().map(|(_, s)| s.recv.queue.held()).sum()
    }

    /// Memory held for received, unread data on all streams: the bytes and
    /// their bookkeeping (spec §13.1.2: about the bytes, however many frames
    /// or messages carried them).
    pub fn recv_memory(&self) -> usize {
        self.streams
            .iter()
            .map(|(_, s)| s.recv.queue.memory())
            .sum()
    }

    /// Our connection send window and the receive window we granted.
    pub fn connection_windows(&self) -> (u32, u32) {
        (self.conn_send.available(), self.conn_recv.granted())
    }

    /// The receive credit the peer holds on a stream (granted, or spent on
    /// bytes not yet consumed), and the stream's target (spec §9.6.9).
    #[cfg(test)]
    pub(crate) fn stream_credit_held(&self, id: StreamId) -> Option<(u32, u32)> {
        self.streams
            .get(id)
            .map(|s| (s.recv.window.held_by_peer(), s.recv.window.target()))
    }

    /// A stream's send window, and the receive window target auto-tuning reached.
    pub fn stream_windows(&self, id: StreamId) -> Option<(u32, u32)> {
        self.streams
            .get(id)
            .map(|s| (s.send.window.available(), s.recv.window.target()))
    }

    /// The peer's MAX_CONCURRENT_STREAMS: how many streams we may have active.
    pub fn peer_max_concurrent_streams(&self) -> u32 {
        self.peer.max_concurrent_streams
    }

    /// Whether the handshake is complete and the connection not ended.
    pub fn is_established(&self) -> bool {
        self.phase == Phase::Open
    }

    /// The connection has ended. Once `poll_transmit` returns `false`, the
    /// runtime closes the transport.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the runtime should read from the transport: `false` while our
    /// answers to the peer pile up unwritten (backpressure on a peer that does
    /// not read, spec §13.1).
    pub fn wants_read(&self) -> bool {
        self.phase != Phase::Closed && self.control.len() < MAX_QUEUED_CONTROL
    }

    /// Closes the connection (spec §11.3). With `NO_ERROR` the shutdown is
    /// graceful: streams already accepted finish, new ones are refused, and
    /// the connection ends when none is left (or after the drain timeout).
    /// With any other code it ends at once.
    pub fn close(&mut self, now: Instant, code: ErrorCode, reason: &str) {
        self.now = now;
        if self.phase == Phase::Closed {
            return;
        }
        let debug =
            Bytes::copy_from_slice(reason.as_bytes().get(..256).unwrap_or(reason.as_bytes()));
        if code != ErrorCode::NO_ERROR {
            self.fail(ConnectionError::Local { code }, debug);
            return;
        }
        if self.goaway_sent.is_none() {
            let last = self.streams.last_peer_id();
            self.goaway_sent = Some(last);
            self.refresh_idle_timer();
            // Before our preface the peer could not read a GOAWAY (spec §3.3).
            if self.preface_queued {
                self.control.push_back(Frame::GoAway(GoAway {
                    last_stream: last,
                    code,
                    debug,
                }));
            }
            self.timers
                .assign(Timer::Drain, now.checked_add(self.config.drain_timeout));
        }
        self.check_drained();
    }

    /// Ends the connection with `error`: GOAWAY (when the peer speaks mux),
    /// every stream dropped, [`Event::Closed`].
    fn fail(&mut self, error: ConnectionError, debug: Bytes) {
        if self.phase == Phase::Closed {
            return;
        }
        let speaks_mux = !matches!(
            error,
            ConnectionError::Preface(crate::PrefaceError::BadMagic)
                | ConnectionError::TransportClosed
                | ConnectionError::Remote { .. }
        );
        if speaks_mux && self.preface_queued {
            self.control.push_back(Frame::GoAway(GoAway {
                last_stream: self.streams.last_peer_id(),
                code: error.code(),
                debug,
            }));
        }
        if matches!(error, ConnectionError::Flood(_)) {
            self.stats.floods += 1;
        }
        self.phase = Phase::Closed;
        self.streams.clear();
        self.timers.clear();
        self.conn_queued = 0;
        self.events.push_back(Event::Closed { error: Some(error) });
    }

    /// After a graceful GOAWAY (either way), ends the connection once no
    /// stream is active (spec §11.3.1).
    fn check_drained(&mut self) {
        let going_away = self.goaway_sent.is_some() || self.goaway_received.is_some();
        if going_away && self.phase != Phase::Closed && self.streams.none_active() {
            // Closed streams may still hold data the application has not
            // read: it stays readable (nothing accepted is lost).
            self.phase = Phase::Closed;
            self.events.push_back(Event::Closed { error: None });
        }
    }

    /// Takes one token from a flood budget; on exhaustion ends the connection.
    fn spend(&mut self, kind: Flood) -> Result<(), ConnectionError> {
        if self.floods.bucket(kind).take(self.now) {
            Ok(())
        } else {
            Err(ConnectionError::Flood(kind))
        }
    }

    /// Removes a stream from memory, discarding its queued and unread data
    /// (whose connection credit went back on receipt, spec §9.4.2).
    fn remove_stream(&mut self, id: StreamId) -> Option<Removed> {
        let removed = self.streams.remove(id)?;
        self.conn_queued -= removed.queued;
        if removed.active {
            self.deactivate(id);
        }
        Some(removed)
    }

    fn deactivate(&mut self, id: StreamId) {
        self.streams.deactivate(id);
        if self.streams.none_active() {
            self.set_idle(true);
        }
        self.check_drained();
    }

    /// Applies the consequences of a stream's state change: it stops counting
    /// against the concurrency limit once closed (spec §6.4.1), and leaves
    /// memory once the application has nothing more to read.
    fn update_stream(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(id) else {
            return;
        };
        let closed = stream.state() == StreamState::Closed;
        let finished = stream.is_finished();
        if closed && stream.active {
            stream.active = false;
            self.deactivate(id);
        }
        if finished {
            self.streams.remove(id);
        }
    }

    // ---- (D) output ----

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The transport reached end of file: the peer will send nothing more.
    pub fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        if self.phase == Phase::Closed {
            return;
        }
        if self.streams.none_active() && self.goaway_received.is_some() {
            self.phase = Phase::Closed;
            self.events.push_back(Event::Closed { error: None });
        } else {
            self.fail(ConnectionError::TransportClosed, Bytes::new());
        }
    }

    /// Sends the bytes of a buffer of frames to `buf`; helper for the
    /// transmit path, which lives in `send.rs`.
    fn queue_window_update(&mut self, stream: StreamId, increment: u32) {
        self.control
            .push_back(Frame::WindowUpdate(crate::frame::WindowUpdate {
                stream,
                increment,
            }));
    }
}
