//! Cases against a client: the runner is a server that the client under
//! test connects to, one connection per case, while it makes calls (some
//! with bodies). Sections are those of `spec/mux-v1.md`.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::case::{fail, skip, Case, Level, Step};
use crate::common_cases::{self, Endpoint};
use crate::peer::{Got, Peer};
use crate::vectors::Vectors;
use crate::wire::{self, code, flag, kind, setting, Frame};

/// The listener the client under test connects to.
#[derive(Debug)]
pub struct Clients {
    listener: TcpListener,
    /// The longest wait for an answer.
    pub timeout: Duration,
    /// The longest wait for the client to (re)connect.
    pub connect_wait: Duration,
    /// How long to wait for the client's SETTINGS timer (§5.4.2.4).
    pub timers: Duration,
}

impl Clients {
    pub fn new(listener: TcpListener, timeout: Duration) -> Self {
        Self {
            listener,
            timeout,
            connect_wait: (timeout * 4).max(Duration::from_secs(10)),
            timers: Duration::from_secs(12),
        }
    }

    /// The client's next connection.
    fn accept(&self) -> Step<Peer> {
        let deadline = Instant::now() + self.connect_wait;
        let _ = self.listener.set_nonblocking(true);
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    return Ok(Peer::over(stream, self.timeout));
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(skip(format!(
                            "no client connected within {:?}",
                            self.connect_wait
                        )));
                    }
                    // Polling the listener: the runner has nothing else to do.
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(err) => return Err(skip(format!("accept failed: {err}"))),
            }
        }
    }

    /// A connection whose client sent a version-1 preface (§3.2).
    fn connected(&self) -> Step<Peer> {
        let mut peer = self.accept()?;
        let preface = peer.raw(8, self.timeout);
        if preface != wire::preface(wire::VERSION) {
            return Err(fail(
                "the client's preface, version 1, as its first bytes (§3.2)",
                format!("{preface:02x?}"),
            ));
        }
        Ok(peer)
    }

    /// A connection past the handshake, our SETTINGS being `settings`.
    fn session_with(&self, settings: &[(u16, u32)]) -> Step<Peer> {
        let mut peer = self.connected()?;
        let mut hello = wire::preface(wire::VERSION);
        hello.extend(wire::settings(settings));
        peer.send(&hello);
        peer.settings_exchange()?;
        Ok(peer)
    }
}

impl Endpoint for Clients {
    fn session(&self) -> Step<Peer> {
        self.session_with(&[])
    }
}

/// Waits for the client to open a stream (without END_STREAM when
/// `with_body`), refusing the others it opens meanwhile.
fn next_open(peer: &mut Peer, within: Duration, with_body: bool) -> Step<Frame> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match peer.wait_for(left, |f| f.is(kind::OPEN)) {
            Ok(open) if !with_body || !open.has(flag::END_STREAM) => return Ok(open),
            Ok(open) => peer.send(&wire::reset(open.stream(), code::REFUSED_STREAM)),
            Err(got) => {
                return Err(skip(format!(
                    "the client opened no stream{} ({}); make it call while the runner runs",
                    if with_body { " with a body" } else { "" },
                    got.describe()
                )))
            }
        }
    }
}

/// Frames for `within` (answering PINGs), or until the connection ends.
fn frames_for(peer: &mut Peer, within: Duration) -> Vec<Frame> {
    let before = peer.seen.len();
    let _ = peer.wait_for(within, |_| false);
    peer.seen[before..].to_vec()
}

/// The flags a frame type defines (§5).
fn defined_flags(kind: u8) -> u8 {
    match kind {
        kind::DATA => flag::END_STREAM | flag::END_MESSAGE,
        kind::OPEN | kind::PUSH | kind::SETTINGS | kind::PING => 0x1,
        _ => 0,
    }
}

pub fn cases(vectors: &Vectors) -> Vec<Case<Clients>> {
    let mut cases = handshake_cases();
    cases.extend(behaviour_cases());
    cases.extend(refusal_cases());
    cases.extend(common_cases::cases(vectors));
    cases
}

fn handshake_cases() -> Vec<Case<Clients>> {
    vec![
        Case::new(
            "3.2",
            Level::Must,
            "sends its preface, version 1, as its first bytes",
            |c: &Clients| c.connected().map(drop),
        ),
        Case::new(
            "3.6",
            Level::Must,
            "sends SETTINGS as its first frame and acknowledges ours",
            |c: &Clients| c.session().map(drop),
        ),
        Case::new(
            "3.5",
            Level::Must,
            "fails the connection when the server answers another version",
            |c: &Clients| {
                let mut peer = c.connected()?;
                let mut answer = wire::preface(2);
                answer.extend(wire::goaway(0, code::UNSUPPORTED_VERSION, b""));
                peer.send(&answer);
                // Frames it sent after its preface, before reading ours, are
                // allowed (§3.2); the connection must end.
                if peer.closes_within(c.timeout) {
                    Ok(())
                } else {
                    Err(fail("the connection closed", "still open"))
                }
            },
        ),
        Case::new(
            "3.6",
            Level::Must,
            "a first frame other than SETTINGS is a connection error (PROTOCOL_ERROR)",
            |c: &Clients| {
                let mut peer = c.connected()?;
                let mut bytes = wire::preface(wire::VERSION);
                bytes.extend(wire::ping(0, [7; 8]));
                peer.send(&bytes);
                peer.expect_connection_error(code::PROTOCOL_ERROR)
            },
        ),
        Case::new(
            "5.4.2.4",
            Level::Should,
            "SETTINGS left unacknowledged end the connection (SETTINGS_TIMEOUT)",
            |c: &Clients| {
                let mut peer = c.connected()?;
                let mut hello = wire::preface(wire::VERSION);
                hello.extend(wire::settings(&[]));
                peer.send(&hello);
                peer.expect_goaway(c.timers + c.timeout, code::SETTINGS_TIMEOUT)
            },
        ),
    ]
}

fn behaviour_cases() -> Vec<Case<Clients>> {
    vec![
        Case::new(
            "6.1.2",
            Level::Must,
            "opens streams with odd IDs, each above the last",
            |c: &Clients| {
                let mut peer = c.session()?;
                let mut last = 0;
                for _ in 0..3 {
                    let open = next_open(&mut peer, c.timeout * 2, false)?;
                    let id = open.stream();
                    if id % 2 == 0 || id <= last {
                        return Err(fail(
                            format!("an odd stream ID above {last}"),
                            open.describe(),
                        ));
                    }
                    last = id;
                    // Refused: not processed, so the client may retry it.
                    peer.send(&wire::reset(id, code::REFUSED_STREAM));
                }
                Ok(())
            },
        ),
        Case::new(
            "4.1",
            Level::Must,
            "sends the reserved bit as 0, no undefined flags, and no frame over our MAX_FRAME_SIZE",
            |c: &Clients| {
                let mut peer = c.session()?;
                let open = next_open(&mut peer, c.timeout * 2, true)?;
                let mut frames = peer.seen.clone();
                frames.push(open);
                frames.extend(frames_for(&mut peer, c.timeout / 4));
                for frame in &frames {
                    if frame.stream_field & 0x8000_0000 != 0 {
                        return Err(fail("R = 0 (§4.1)", frame.describe()));
                    }
                    if frame.flags & !defined_flags(frame.kind) != 0 {
                        return Err(fail("no undefined flag (§4.2.1)", frame.describe()));
                    }
                    if frame.payload.len() > wire::DEFAULT_MAX_FRAME as usize {
                        return Err(fail(
                            "no frame over 16,384 bytes (§4.1.1)",
                            frame.describe(),
                        ));
                    }
                }
                Ok(())
            },
        ),
        Case::new(
            "9.3.1",
            Level::Must,
            "sends no more DATA than the windows we granted",
            |c: &Clients| {
                const WINDOW: u32 = 1000;
                let mut peer = c.session_with(&[(setting::INITIAL_STREAM_WINDOW, WINDOW)])?;
                let open = next_open(&mut peer, c.timeout * 2, true)?;
                let id = open.stream();
                let sent = |frames: &[Frame]| -> usize {
                    frames
                        .iter()
                        .filter(|f| f.is(kind::DATA) && f.stream() == id)
                        .map(|f| f.payload.len())
                        .sum()
                };
                let first = sent(&frames_for(&mut peer, c.timeout / 4));
                if first > WINDOW as usize {
                    return Err(fail(format!("at most {WINDOW} bytes"), format!("{first}")));
                }
                peer.send(&wire::window_update(id, 500));
                let more = sent(&frames_for(&mut peer, c.timeout / 4));
                if first + more > WINDOW as usize + 500 {
                    return Err(fail(
                        format!(
                            "at most {} bytes after a 500-byte WINDOW_UPDATE",
                            WINDOW + 500
                        ),
                        format!("{}", first + more),
                    ));
                }
                Ok(())
            },
        ),
        Case::new(
            "11.3.1",
            Level::Must,
            "opens no stream after the server's GOAWAY",
            |c: &Clients| {
                let mut peer = c.session()?;
                peer.send(&wire::goaway(0, code::NO_ERROR, b"conformance"));
                // OPENs before the answer to a PING sent behind the GOAWAY may
                // have crossed it; after, the client had read it.
                match peer.fence() {
                    Ok(()) => {}
                    // Without active streams it may close at once (§11.3.1).
                    Err(Got::Closed) => return Ok(()),
                    Err(got) => {
                        return Err(fail("an answer to a PING behind GOAWAY", got.describe()))
                    }
                }
                match frames_for(&mut peer, c.timeout / 2)
                    .into_iter()
                    .find(|f| f.is(kind::OPEN))
                {
                    Some(open) => Err(fail("no OPEN after GOAWAY", open.describe())),
                    None => Ok(()),
                }
            },
        ),
        Case::new(
            "9.4.1",
            Level::Must,
            "DATA beyond a stream's window is a stream error (FLOW_CONTROL_ERROR)",
            |c: &Clients| {
                let mut peer = c.session()?;
                let open = next_open(&mut peer, c.timeout * 2, false)?;
                let window = u64::from(peer.setting(setting::INITIAL_STREAM_WINDOW));
                if window + 1 > peer.connection_credit {
                    return Err(skip("the stream window is not below the connection window"));
                }
                let mut bytes = Vec::new();
                let mut left = window + 1;
                while left > 0 {
                    let n = left.min(u64::from(wire::DEFAULT_MAX_FRAME));
                    bytes.extend(wire::data(open.stream(), 0, &vec![0x5a; n as usize]));
                    left -= n;
                }
                let before = peer.seen.len();
                peer.send(&bytes);
                let id = open.stream();
                peer.expect_reset(id, code::FLOW_CONTROL_ERROR).map_err(|outcome| {
                    // A client that returned the credit, or reset the stream
                    // (our bytes are no response it can read), before the
                    // last byte came did no wrong.
                    let moved = peer.seen[before..]
                        .iter()
                        .any(|f| f.stream() == id && (f.is(kind::WINDOW_UPDATE) || f.is(kind::RESET)));
                    if moved {
                        skip("inconclusive: the client returned the stream's credit or reset it before the window was exceeded")
                    } else {
                        outcome
                    }
                })
            },
        ),
    ]
}

fn refusal_cases() -> Vec<Case<Clients>> {
    let block = || wire::metadata(&[(b"route", b"conformance")]);
    vec![
        Case::new(
            "5.2.3",
            Level::Must,
            "OPEN from a server is a connection error (PROTOCOL_ERROR)",
            |c: &Clients| c.rejects(&wire::open(2, 0, "x"), code::PROTOCOL_ERROR),
        ),
        Case::new(
            "5.8.2",
            Level::Must,
            "PUSH on an odd stream is a connection error (PROTOCOL_ERROR)",
            move |c: &Clients| c.rejects(&wire::push(1, 0, 0, &block()), code::PROTOCOL_ERROR),
        ),
        Case::new(
            "10.3",
            Level::Must,
            "PUSH tied to an even stream is a connection error (PROTOCOL_ERROR)",
            move |c: &Clients| c.rejects(&wire::push(2, 4, 0, &block()), code::PROTOCOL_ERROR),
        ),
        Case::new(
            "10.3",
            Level::Must,
            "PUSH tied to an idle stream is a connection error (PROTOCOL_ERROR)",
            move |c: &Clients| {
                c.rejects(
                    &wire::push(2, 0x7fff_fff1, 0, &block()),
                    code::PROTOCOL_ERROR,
                )
            },
        ),
        Case::new(
            "10.2",
            Level::Must,
            "refuses a PUSH beyond its MAX_CONCURRENT_STREAMS with REFUSED_STREAM",
            move |c: &Clients| {
                let mut peer = c.session()?;
                let limit = peer.setting(setting::MAX_CONCURRENT_STREAMS);
                if limit > 1000 {
                    return Err(skip(format!(
                        "MAX_CONCURRENT_STREAMS {limit} is more than the runner pushes"
                    )));
                }
                let bytes: Vec<u8> = (1..=limit + 1)
                    .flat_map(|n| wire::push(2 * n, 0, 0, &block()))
                    .collect();
                peer.send(&bytes);
                peer.expect_reset(2 * (limit + 1), code::REFUSED_STREAM)
            },
        ),
    ]
}
