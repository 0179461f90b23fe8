//! Test harnesses for the connection state machine.
//!
//! - [`Pair`]: a client and a server `Connection` wired back to back through a
//!   simulated link (latency, optional bandwidth limit, bounded socket
//!   buffers, seeded splitting of the byte stream), with a simulated clock.
//! - [`Raw`]: one `Connection` driven by hand-built frames, for misbehaviour
//!   tests: what a broken or hostile peer would send.
//!
//! Test code, compiled only under `#[cfg(test)]` (see `lib.rs`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::connection::{Config, Connection, Event};
use crate::error::{ConnectionError, ErrorCode};
use crate::frame::{Data, Frame, Metadata, Open, Push, Reset, SettingId, Settings, WindowUpdate};
use crate::preface::Preface;
use crate::stream_id::{Side, StreamId};

/// Shorthand for a stream ID in tests.
pub(crate) fn sid(id: u32) -> StreamId {
    StreamId::new(id).expect("test stream IDs are valid")
}

/// Metadata with one `route` entry.
pub(crate) fn route(name: &str) -> Metadata {
    Metadata::from_pairs([(&b"route"[..], name.as_bytes())]).expect("short metadata")
}

/// A deterministic xorshift generator, so that link behaviour is reproducible.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// One direction of the simulated network.
#[derive(Debug)]
pub(crate) struct Link {
    /// One-way delay.
    pub(crate) latency: Duration,
    /// Serialisation rate; `None` is infinitely fast.
    pub(crate) bytes_per_second: Option<u64>,
    /// Bytes in flight with their arrival time.
    in_flight: VecDeque<(Instant, Bytes)>,
    /// When the link finishes sending what it has.
    free_at: Instant,
    /// Split arriving bytes at random points (as TCP may).
    pub(crate) split: bool,
    rng: Rng,
}

impl Link {
    fn new(now: Instant, seed: u64) -> Self {
        Self {
            latency: Duration::ZERO,
            bytes_per_second: None,
            in_flight: VecDeque::new(),
            free_at: now,
            split: true,
            rng: Rng::new(seed),
        }
    }

    fn send(&mut self, now: Instant, bytes: Bytes) {
        let departure = self.free_at.max(now);
        let serialisation = match self.bytes_per_second {
            Some(rate) => Duration::from_nanos(
                (bytes.len() as u64).saturating_mul(1_000_000_000) / rate.max(1),
            ),
            None => Duration::ZERO,
        };
        self.free_at = departure + serialisation;
        self.in_flight
            .push_back((self.free_at + self.latency, bytes));
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.front().map(|(at, _)| *at)
    }

    /// Bytes that have arrived by `now`, cut into pieces.
    fn arrived(&mut self, now: Instant) -> Vec<Bytes> {
        let mut pieces = Vec::new();
        while self.in_flight.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, mut bytes)) = self.in_flight.pop_front() else {
                break;
            };
            while self.split && bytes.len() > 1 && self.rng.below(4) == 0 {
                let cut = 1 + self.rng.below(bytes.len() as u64 - 1) as usize;
                pieces.push(bytes.split_to(cut));
            }
            pieces.push(bytes);
        }
        pieces
    }

    fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}

/// One endpoint inside a [`Pair`], with its transport buffers and what the
/// application saw.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) conn: Connection,
    /// Everything `poll_event` returned, in order.
    pub(crate) events: Vec<Event>,
    /// The error `handle_read` returned, if any.
    pub(crate) error: Option<ConnectionError>,
    /// Bytes received and not yet consumed whole by `handle_read`.
    rx: BytesMut,
    /// Bytes produced by `poll_transmit` and not yet taken by the link.
    outbox: BytesMut,
    /// The socket buffer: `poll_transmit` is not called while the outbox holds this much.
    pub(crate) write_capacity: usize,
    /// Whether the transport reads at all (a peer that never reads sets this false).
    pub(crate) reading: bool,
    /// Read every readable stream at once, keeping the bytes in `received`.
    pub(crate) auto_read: bool,
    pub(crate) received: HashMap<StreamId, Vec<u8>>,
    /// Message boundaries seen while auto-reading: (stream, offset after the message).
    pub(crate) boundaries: Vec<(StreamId, usize)>,
    pub(crate) finished: Vec<StreamId>,
}

impl Endpoint {
    fn new(conn: Connection) -> Self {
        Self {
            conn,
            events: Vec::new(),
            error: None,
            rx: BytesMut::new(),
            outbox: BytesMut::new(),
            write_capacity: usize::MAX,
            reading: true,
            auto_read: true,
            received: HashMap::new(),
            boundaries: Vec::new(),
            finished: Vec::new(),
        }
    }

    /// Moves `poll_transmit` output to the outbox, within `write_capacity`.
    fn transmit(&mut self, now: Instant) {
        while self.outbox.len() < self.write_capacity
            && self.conn.poll_transmit(now, &mut self.outbox)
        {}
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            if let (true, Event::Readable { id }) = (self.auto_read, &event) {
                self.read_stream(*id);
            }
            self.events.push(event);
        }
    }

    /// Reads everything available on `id` into `received`.
    pub(crate) fn read_stream(&mut self, id: StreamId) {
        self.read_some(id, usize::MAX);
    }

    /// Reads what is available on `id`, `max` bytes per chunk, into `received`.
    pub(crate) fn read_some(&mut self, id: StreamId, max: usize) {
        while let Ok(Some(chunk)) = self.conn.read(id, max) {
            let buf = self.received.entry(id).or_default();
            buf.extend_from_slice(&chunk.bytes);
            if chunk.end_message {
                self.boundaries.push((id, buf.len()));
            }
            if chunk.fin {
                self.finished.push(id);
            }
        }
    }

    /// Whether an event matching `pred` was seen.
    pub(crate) fn saw(&self, pred: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(pred)
    }

    /// The error of the `Closed` event, if the connection closed.
    pub(crate) fn closed_with(&self) -> Option<Option<ConnectionError>> {
        self.events.iter().find_map(|event| match event {
            Event::Closed { error } => Some(error.clone()),
            _ => None,
        })
    }
}

/// Two connected endpoints, a simulated link each way, and a simulated clock.
#[derive(Debug)]
pub(crate) struct Pair {
    pub(crate) now: Instant,
    pub(crate) client: Endpoint,
    pub(crate) server: Endpoint,
    pub(crate) to_server: Link,
    pub(crate) to_client: Link,
}

impl Pair {
    pub(crate) fn new() -> Self {
        Self::with_configs(Config::default(), Config::default())
    }

    pub(crate) fn with_configs(client: Config, server: Config) -> Self {
        Self::seeded(client, server, 0x5eed)
    }

    pub(crate) fn seeded(client: Config, server: Config, seed: u64) -> Self {
        let now = Instant::now();
        Self {
            now,
            client: Endpoint::new(Connection::new(Side::Client, client, now)),
            server: Endpoint::new(Connection::new(Side::Server, server, now)),
            to_server: Link::new(now, seed),
            to_client: Link::new(now, seed.wrapping_mul(31).wrapping_add(7)),
        }
    }

    /// A pair that has completed its handshake.
    pub(crate) fn connected() -> Self {
        let mut pair = Self::new();
        pair.drive();
        pair
    }

    /// Sets the latency (one way) and bandwidth of both directions.
    pub(crate) fn set_link(&mut self, one_way: Duration, bytes_per_second: Option<u64>) {
        for link in [&mut self.to_server, &mut self.to_client] {
            link.latency = one_way;
            link.bytes_per_second = bytes_per_second;
        }
    }

    fn endpoint(&mut self, side: Side) -> (&mut Endpoint, &mut Link) {
        match side {
            Side::Client => (&mut self.client, &mut self.to_server),
            Side::Server => (&mut self.server, &mut self.to_client),
        }
    }

    /// One round: both sides transmit, arrived bytes are delivered, events
    /// drained. Returns whether anything moved.
    pub(crate) fn step(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for side in [Side::Client, Side::Server] {
            let (endpoint, link) = self.endpoint(side);
            endpoint.transmit(now);
            if !endpoint.outbox.is_empty() {
                link.send(now, endpoint.outbox.split().freeze());
                moved = true;
            }
        }
        for side in [Side::Server, Side::Client] {
            let (endpoint, link) = match side {
                Side::Server => (&mut self.server, &mut self.to_server),
                Side::Client => (&mut self.client, &mut self.to_client),
            };
            if !endpoint.reading {
                continue;
            }
            for piece in link.arrived(now) {
                moved = true;
                endpoint.rx.extend_from_slice(&piece);
                if let Err(error) = endpoint.conn.handle_read(now, &mut endpoint.rx) {
                    endpoint.error.get_or_insert(error);
                }
                endpoint.drain_events();
            }
            endpoint.drain_events();
        }
        moved
    }

    /// The next time something is due: an arrival, or a timer.
    fn next_wakeup(&self) -> Option<Instant> {
        let mut next = [
            if self.server.reading {
                self.to_server.next_arrival()
            } else {
                None
            },
            if self.client.reading {
                self.to_client.next_arrival()
            } else {
                None
            },
        ]
        .into_iter()
        .flatten()
        .min();
        for timer in [
            self.client.conn.poll_timeout(),
            self.server.conn.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        {
            // Timers only count while bytes are in flight; `advance` runs idle timers.
            if next.is_some_and(|n| timer < n) {
                next = Some(timer);
            }
        }
        next
    }

    fn fire_timers(&mut self) {
        let now = self.now;
        for endpoint in [&mut self.client, &mut self.server] {
            if endpoint.conn.poll_timeout().is_some_and(|t| t <= now) {
                endpoint.conn.handle_timeout(now);
                endpoint.drain_events();
            }
        }
    }

    /// Runs until nothing is in flight and nothing is left to send; fails
    /// after `max_steps` (a livelock).
    pub(crate) fn drive_bounded(&mut self, max_steps: usize) {
        for _ in 0..max_steps {
            let moved = self.step();
            let in_flight = (self.server.reading && !self.to_server.is_empty())
                || (self.client.reading && !self.to_client.is_empty());
            if !moved && !in_flight {
                return;
            }
            if !moved {
                if let Some(next) = self.next_wakeup() {
                    self.now = self.now.max(next);
                    self.fire_timers();
                }
            }
        }
        panic!("pair did not settle within {max_steps} steps: livelock");
    }

    /// Runs the pair until `until`, moving the clock from one arrival or
    /// timer to the next (never past `until`), so that a test can sample
    /// progress at points of simulated time while bytes keep flowing.
    pub(crate) fn run_until(&mut self, until: Instant) {
        loop {
            if self.step() {
                continue;
            }
            match self.next_wakeup() {
                Some(next) if next <= until => {
                    self.now = self.now.max(next);
                    self.fire_timers();
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
        self.fire_timers();
    }

    pub(crate) fn drive(&mut self) {
        self.drive_bounded(100_000);
    }

    /// Moves the clock forward by `by`, firing every timer on the way, and drives.
    pub(crate) fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            self.drive();
            let timer = [
                self.client.conn.poll_timeout(),
                self.server.conn.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .filter(|t| *t <= end)
            .min();
            match timer {
                Some(at) => {
                    self.now = self.now.max(at);
                    self.fire_timers();
                }
                None => break,
            }
        }
        self.now = end;
        self.fire_timers();
        self.drive();
    }
}

/// One connection driven by hand-built frames: the test plays the peer.
#[derive(Debug)]
pub(crate) struct Raw {
    pub(crate) now: Instant,
    pub(crate) conn: Connection,
    pub(crate) events: Vec<Event>,
    pub(crate) error: Option<ConnectionError>,
    rx: BytesMut,
    out: BytesMut,
}

impl Raw {
    /// A connection of `side`, with nothing exchanged yet.
    pub(crate) fn new(side: Side, config: Config) -> Self {
        let now = Instant::now();
        Self {
            now,
            conn: Connection::new(side, config, now),
            events: Vec::new(),
            error: None,
            rx: BytesMut::new(),
            out: BytesMut::new(),
        }
    }

    /// An endpoint of `side` that received our preface and nothing more.
    pub(crate) fn after_preface(side: Side, config: Config) -> Self {
        let mut raw = Self::new(side, config);
        let mut hello = BytesMut::new();
        Preface::CURRENT.encode(&mut hello);
        raw.feed(&hello);
        raw
    }

    /// A server that received our preface and empty SETTINGS, and whose
    /// handshake output (preface, SETTINGS, ...) we read and acknowledged.
    pub(crate) fn server(config: Config) -> Self {
        let mut raw = Self::after_preface(Side::Server, config);
        raw.send(Frame::Settings(Settings::new(&[])));
        raw.send(Frame::Settings(Settings::ack()));
        raw.take_frames();
        raw
    }

    /// A client whose handshake we answered as a server would.
    pub(crate) fn client(config: Config) -> Self {
        let mut raw = Self::after_preface(Side::Client, config);
        raw.send(Frame::Settings(Settings::new(&[])));
        raw.send(Frame::Settings(Settings::ack()));
        raw.take_frames();
        raw
    }

    /// Feeds raw bytes.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        if let Err(error) = self.conn.handle_read(self.now, &mut self.rx) {
            self.error.get_or_insert(error);
        }
        while let Some(event) = self.conn.poll_event() {
            self.events.push(event);
        }
    }

    /// Feeds one frame, encoded.
    pub(crate) fn send(&mut self, frame: Frame) {
        let mut bytes = BytesMut::new();
        frame.encode(&mut bytes).expect("test frames encode");
        self.feed(&bytes);
    }

    /// Everything the connection wants to send, as raw bytes.
    pub(crate) fn take_bytes(&mut self) -> BytesMut {
        while self.conn.poll_transmit(self.now, &mut self.out) {}
        while let Some(event) = self.conn.poll_event() {
            self.events.push(event);
        }
        self.out.split()
    }

    /// Everything the connection wants to send, decoded (skipping a preface).
    pub(crate) fn take_frames(&mut self) -> Vec<Frame> {
        let mut bytes = self.take_bytes();
        if bytes.starts_with(&crate::preface::MAGIC) {
            let _ = Preface::decode(&mut bytes);
        }
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = Frame::decode(&mut bytes, crate::frame::MAX_LENGTH_FIELD) {
            frames.push(frame);
        }
        assert!(
            bytes.is_empty(),
            "connection wrote a partial or invalid frame"
        );
        frames
    }

    /// The code of the GOAWAY among `frames`, if any.
    pub(crate) fn goaway_code(frames: &[Frame]) -> Option<ErrorCode> {
        frames.iter().find_map(|frame| match frame {
            Frame::GoAway(go_away) => Some(go_away.code),
            _ => None,
        })
    }

    /// The RESET codes among `frames`, by stream.
    pub(crate) fn resets(frames: &[Frame]) -> Vec<(StreamId, ErrorCode)> {
        frames
            .iter()
            .filter_map(|frame| match frame {
                Frame::Reset(reset) => Some((reset.stream, reset.code)),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.conn.handle_timeout(self.now);
        while let Some(event) = self.conn.poll_event() {
            self.events.push(event);
        }
    }

    /// The error the connection closed with, as its `Closed` event said.
    pub(crate) fn closed_error(&self) -> Option<ConnectionError> {
        self.events.iter().find_map(|event| match event {
            Event::Closed { error } => error.clone(),
            _ => None,
        })
    }
}

/// Frame builders for misbehaviour tests (after h2's `frames::` DSL).
pub(crate) mod frames {
    use super::*;

    pub(crate) fn open(id: u32) -> Frame {
        Frame::Open(Open {
            stream: sid(id),
            end_stream: false,
            metadata: route("echo"),
        })
    }

    pub(crate) fn open_with(id: u32, metadata: Metadata) -> Frame {
        Frame::Open(Open {
            stream: sid(id),
            end_stream: false,
            metadata,
        })
    }

    pub(crate) fn data(id: u32, bytes: &[u8]) -> Frame {
        Frame::Data(Data::new(sid(id), Bytes::copy_from_slice(bytes)))
    }

    pub(crate) fn data_len(id: u32, len: usize) -> Frame {
        Frame::Data(Data::new(sid(id), Bytes::from(vec![0x5a; len])))
    }

    pub(crate) fn reset(id: u32, code: ErrorCode) -> Frame {
        Frame::Reset(Reset {
            stream: sid(id),
            code,
        })
    }

    pub(crate) fn window_update(id: u32, increment: u32) -> Frame {
        Frame::WindowUpdate(WindowUpdate {
            stream: StreamId::new(id).unwrap_or_default(),
            increment,
        })
    }

    pub(crate) fn settings(entries: &[(SettingId, u32)]) -> Frame {
        Frame::Settings(Settings::new(entries))
    }

    pub(crate) fn push(promised: u32, associated: u32) -> Frame {
        Frame::Push(Push {
            promised: sid(promised),
            associated: StreamId::new(associated).unwrap_or_default(),
            end_stream: false,
            metadata: route("news"),
        })
    }
}
