//! One raw connection to the endpoint under test: bytes out, frames in,
//! every wait bounded, and the checks cases share (a connection error
//! expected, a stream reset expected, the connection still alive).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::case::{fail, skip, Step};
use crate::wire::{self, code, flag, kind, setting, Frame};

/// What came next from the endpoint.
#[derive(Debug)]
pub enum Got {
    Frame(Frame),
    /// The endpoint closed the connection (or reset it).
    Closed,
    /// Nothing within the wait.
    Timeout,
}

impl Got {
    pub fn describe(&self) -> String {
        match self {
            Self::Frame(frame) => frame.describe(),
            Self::Closed => "the connection closed".into(),
            Self::Timeout => "nothing".into(),
        }
    }
}

/// A connection to the endpoint under test.
#[derive(Debug)]
pub struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    /// The connection ended in a reset (TCP RST), not the endpoint's FIN.
    reset: bool,
    /// The longest any single wait lasts.
    pub timeout: Duration,
    /// The endpoint's first SETTINGS (after [`Peer::handshake`]).
    pub settings: Vec<(u16, u32)>,
    /// Credit the endpoint granted on the connection, in all (§9.2.1).
    pub connection_credit: u64,
    /// Every frame read, in order (client mode checks them all).
    pub seen: Vec<Frame>,
    /// Whether waits answer the endpoint's PINGs (on by default; off where
    /// any frame from us would change what is checked).
    pub answer_pings: bool,
    pings: u64,
}

impl Peer {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Step<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|err| skip(format!("cannot connect to {addr}: {err}")))?;
        Ok(Self::over(stream, timeout))
    }

    pub fn over(stream: TcpStream, timeout: Duration) -> Self {
        let _ = stream.set_nodelay(true);
        // An endpoint that stops reading must not hang the runner.
        let _ = stream.set_write_timeout(Some(timeout));
        Self {
            stream,
            buf: Vec::new(),
            eof: false,
            reset: false,
            timeout,
            settings: Vec::new(),
            connection_credit: wire::INITIAL_CONNECTION_WINDOW,
            seen: Vec::new(),
            answer_pings: true,
            pings: 0,
        }
    }

    /// Whether the connection ended in a reset (TCP RST) rather than the
    /// endpoint's end of the byte stream (FIN).
    pub fn was_reset(&self) -> bool {
        self.reset
    }

    /// Sends bytes; a connection the endpoint already closed is not an
    /// error here (the next read says so).
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// The endpoint's value of a setting, or its default (§5.4.1).
    pub fn setting(&self, id: u16) -> u32 {
        let default = match id {
            setting::MAX_FRAME_SIZE => wire::DEFAULT_MAX_FRAME,
            setting::MAX_CONCURRENT_STREAMS => 100,
            setting::INITIAL_STREAM_WINDOW => 65_536,
            _ => 16_384,
        };
        self.settings
            .iter()
            .rev()
            .find(|(entry, _)| *entry == id)
            .map_or(default, |(_, value)| *value)
    }

    /// Reads more bytes, waiting until `deadline`; `false` at the deadline
    /// or at the end of the connection.
    fn fill(&mut self, deadline: Instant) -> bool {
        if self.eof {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = self.stream.set_read_timeout(Some(left));
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(err) if err.kind() == ErrorKind::Interrupted => true,
            Err(err) => {
                self.eof = true;
                self.reset = err.kind() == ErrorKind::ConnectionReset;
                false
            }
        }
    }

    /// Exactly `n` raw bytes (a preface), or what came before the wait ended.
    pub fn raw(&mut self, n: usize, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        while self.buf.len() < n && self.fill(deadline) {}
        let take = n.min(self.buf.len());
        self.buf.drain(..take).collect()
    }

    /// The next frame, within `within`.
    pub fn next_within(&mut self, within: Duration) -> Got {
        let deadline = Instant::now() + within;
        loop {
            if let Some(frame) = wire::take_frame(&mut self.buf) {
                if frame.is(kind::WINDOW_UPDATE) && frame.stream() == 0 {
                    if let Some(increment) = frame.word(0) {
                        self.connection_credit += u64::from(increment & 0x7fff_ffff);
                    }
                }
                self.seen.push(frame.clone());
                return Got::Frame(frame);
            }
            if !self.fill(deadline) {
                return if self.eof { Got::Closed } else { Got::Timeout };
            }
        }
    }

    /// The next frame, within the runner's timeout.
    pub fn next_frame(&mut self) -> Got {
        self.next_within(self.timeout)
    }

    /// Whether the endpoint closes the connection within `within`, reading
    /// (and dropping) whatever comes first.
    pub fn closes_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            match self.next_within(deadline.saturating_duration_since(Instant::now())) {
                Got::Closed => return true,
                Got::Timeout => return false,
                Got::Frame(_) => {}
            }
        }
    }

    /// Answers a PING the endpoint sent (cases that wait for something
    /// else must not leave the endpoint's keepalive unanswered).
    fn answer_ping(&mut self, frame: &Frame) {
        if self.answer_pings && frame.is(kind::PING) && !frame.has(flag::ACK) {
            let mut data = [0u8; 8];
            data.copy_from_slice(frame.payload.get(..8).unwrap_or(&[0; 8]));
            self.send(&wire::ping(flag::ACK, data));
        }
    }

    /// As a client: our preface and `settings`, then the endpoint's preface
    /// (version 1), its first SETTINGS (the first frame, §3.6), our ACK, and
    /// its ACK of ours.
    pub fn handshake(&mut self, settings: &[(u16, u32)]) -> Step<()> {
        let mut hello = wire::preface(wire::VERSION);
        hello.extend(wire::settings(settings));
        self.send(&hello);
        let preface = self.raw(8, self.timeout);
        if preface != wire::preface(wire::VERSION) {
            return Err(fail(
                "the server's preface, version 1 (§3.4)",
                format!("{preface:02x?}"),
            ));
        }
        self.settings_exchange()
    }

    /// The endpoint's first SETTINGS, our ACK of it, and its ACK of ours.
    pub fn settings_exchange(&mut self) -> Step<()> {
        let first = self.next_frame();
        match &first {
            Got::Frame(frame) if frame.is(kind::SETTINGS) && !frame.has(flag::ACK) => {
                self.settings = frame.settings();
                self.send(&wire::settings_ack());
            }
            other => return Err(fail("SETTINGS as the first frame (§3.6)", other.describe())),
        }
        self.wait_for(self.timeout, |f| f.is(kind::SETTINGS) && f.has(flag::ACK))
            .map(drop)
            .map_err(|got| fail("an ACK of our SETTINGS (§5.4.2.1)", got.describe()))
    }

    /// Sends a PING and waits for its ACK, answering the endpoint's own
    /// PINGs and keeping every other frame in `seen`: the endpoint has
    /// processed everything sent before (§5.5 answers in order).
    pub fn fence(&mut self) -> Result<(), Got> {
        self.pings += 1;
        let data = (0xC0FF_EE00_0000_0000 | self.pings).to_be_bytes();
        self.send(&wire::ping(0, data));
        self.wait_for(self.timeout, |f| {
            f.is(kind::PING) && f.has(flag::ACK) && f.payload == data
        })
        .map(drop)
    }

    /// The connection is still up: a PING sent now is answered.
    pub fn expect_alive(&mut self, after: &str) -> Step<()> {
        self.fence().map_err(|got| {
            fail(
                format!("the connection to go on after {after}"),
                got.describe(),
            )
        })
    }

    /// What was sent must be a connection error with `expected`: a GOAWAY
    /// with that code and the connection closed, or (§8.3: GOAWAY is a
    /// SHOULD) the connection closed. A PING sent behind the offending bytes
    /// must not be answered.
    pub fn expect_connection_error(&mut self, expected: u32) -> Step<()> {
        self.send(&wire::ping(0, *b"behind!!"));
        let want = format!("GOAWAY {} and the connection closed", code::name(expected));
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.next_within(deadline.saturating_duration_since(Instant::now())) {
                Got::Frame(frame) if frame.is(kind::GOAWAY) => {
                    let got = frame.error_code().unwrap_or(u32::MAX);
                    if got != expected {
                        return Err(fail(want, frame.describe()));
                    }
                    if !self.closes_within(self.timeout) {
                        return Err(fail(
                            want,
                            "GOAWAY, but the connection stayed open (§8.3: MUST close)",
                        ));
                    }
                    return Ok(());
                }
                Got::Frame(frame) if frame.is(kind::PING) && frame.payload == b"behind!!" => {
                    return Err(fail(
                        want,
                        "the frame was accepted (a PING behind it was answered)",
                    ));
                }
                Got::Frame(frame) => self.answer_ping(&frame),
                Got::Closed => return Ok(()),
                Got::Timeout => {
                    return Err(fail(want, format!("nothing within {:?}", self.timeout)))
                }
            }
        }
    }

    /// What was sent must be a stream error: RESET `expected` on `stream`,
    /// the connection alive.
    pub fn expect_reset(&mut self, stream: u32, expected: u32) -> Step<()> {
        let want = format!("RESET {} on stream {stream}", code::name(expected));
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.next_within(deadline.saturating_duration_since(Instant::now())) {
                Got::Frame(frame) if frame.is(kind::RESET) && frame.stream() == stream => {
                    if frame.error_code() != Some(expected) {
                        return Err(fail(want, frame.describe()));
                    }
                    return self.expect_alive("a stream error");
                }
                Got::Frame(frame) if frame.is(kind::GOAWAY) => {
                    return Err(fail(want, frame.describe()))
                }
                Got::Frame(frame) => self.answer_ping(&frame),
                other => return Err(fail(want, other.describe())),
            }
        }
    }

    /// Reads (answering PINGs) until a GOAWAY, within `within`: it must
    /// carry `expected`.
    pub fn expect_goaway(&mut self, within: Duration, expected: u32) -> Step<()> {
        let want = format!("GOAWAY {} within {within:?}", code::name(expected));
        match self.wait_for(within, |f| f.is(kind::GOAWAY)) {
            Ok(frame) if frame.error_code() == Some(expected) => Ok(()),
            Ok(frame) | Err(Got::Frame(frame)) => Err(fail(want, frame.describe())),
            Err(got) => Err(fail(want, got.describe())),
        }
    }

    /// Reads until a frame `matches`, answering PINGs; `Err` with what came
    /// instead (a GOAWAY, the end, nothing).
    pub fn wait_for(
        &mut self,
        within: Duration,
        matches: impl Fn(&Frame) -> bool,
    ) -> Result<Frame, Got> {
        let deadline = Instant::now() + within;
        loop {
            match self.next_within(deadline.saturating_duration_since(Instant::now())) {
                Got::Frame(frame) if matches(&frame) => return Ok(frame),
                Got::Frame(frame) if frame.is(kind::GOAWAY) => return Err(Got::Frame(frame)),
                Got::Frame(frame) => self.answer_ping(&frame),
                other => return Err(other),
            }
        }
    }
}
