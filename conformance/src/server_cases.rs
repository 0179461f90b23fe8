//! Cases against a server: the runner is the client, one connection per
//! case. Sections are those of `spec/mux-v1.md`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::case::{fail, skip, Case, Level, Step};
use crate::common_cases::{self, Endpoint};
use crate::peer::{Got, Peer};
use crate::vectors::Vectors;
use crate::wire::{self, code, flag, kind, setting, MAX_WINDOW};

/// The server under test and how long to wait.
#[derive(Debug, Clone)]
pub struct Server {
    pub addr: SocketAddr,
    /// The longest wait for an answer.
    pub timeout: Duration,
    /// How long to wait for the server's own handshake and SETTINGS timers
    /// (§11.4, §5.4.2.4; RECOMMENDED 10 seconds).
    pub timers: Duration,
    /// How long to wait for its idle timeout and keepalive (§11.2); `None`
    /// skips those cases.
    pub idle: Option<Duration>,
}

/// The route the runner's streams ask for: no server has it, every server
/// answers it (with an error status).
const ROUTE: &str = "mux-conformance";

impl Server {
    fn connect(&self) -> Step<Peer> {
        Peer::connect(self.addr, self.timeout)
    }
}

impl Endpoint for Server {
    fn session(&self) -> Step<Peer> {
        let mut peer = self.connect()?;
        peer.handshake(&[])?;
        Ok(peer)
    }
}

/// Concatenates frames.
fn join(frames: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    frames.into_iter().flatten().collect()
}

/// Client stream IDs 1, 3, 5…
fn client_stream(n: u32) -> u32 {
    2 * n + 1
}

/// A refused preface: the connection closes, with nothing sent before or
/// only the server's preface and GOAWAY PROTOCOL_ERROR (§3.3).
fn refuses_preface(server: &Server, bytes: &[u8]) -> Step<()> {
    let mut peer = server.connect()?;
    peer.send(bytes);
    let expected =
        "the connection closed, nothing or a preface and GOAWAY PROTOCOL_ERROR sent (§3.3)";
    let head = peer.raw(8, server.timeout);
    if head.is_empty() {
        return if peer.closes_within(server.timeout) {
            Ok(())
        } else {
            Err(fail(expected, "the connection stayed open"))
        };
    }
    if head.len() < 8 || head[..6] != wire::MAGIC {
        return Err(fail(expected, format!("{head:02x?}")));
    }
    match peer.next_frame() {
        Got::Frame(frame)
            if frame.is(kind::GOAWAY) && frame.error_code() == Some(code::PROTOCOL_ERROR) =>
        {
            if peer.closes_within(server.timeout) {
                Ok(())
            } else {
                Err(fail(expected, "GOAWAY, then the connection stayed open"))
            }
        }
        other => Err(fail(
            expected,
            format!("a preface, then {}", other.describe()),
        )),
    }
}

pub fn cases(vectors: &Vectors) -> Vec<Case<Server>> {
    let mut cases = preface_cases(vectors);
    cases.extend(frame_cases());
    cases.extend(common_cases::cases(vectors));
    cases.extend(frame_type_cases());
    cases.extend(stream_cases());
    cases.extend(flow_control_cases());
    cases.extend(management_cases());
    cases.extend(flood_cases());
    cases
}

fn preface_cases(vectors: &Vectors) -> Vec<Case<Server>> {
    let mut cases = vec![
        Case::new(
            "3.3",
            Level::Must,
            "sends nothing before the client's preface",
            |s: &Server| {
                let mut peer = s.connect()?;
                let early = peer.raw(1, s.timeout.min(Duration::from_millis(500)));
                if early.is_empty() {
                    Ok(())
                } else {
                    Err(fail("nothing", format!("{early:02x?}")))
                }
            },
        ),
        Case::new(
            "3.3",
            Level::Must,
            "fails the connection at a wrong first byte, without waiting for 8 bytes",
            |s: &Server| refuses_preface(s, &[0x16]),
        ),
    ];
    for vector in &vectors.prefaces {
        let bytes = vector.bytes.clone();
        cases.push(Case::new(
            "3.3",
            Level::Must,
            format!("refuses the preface vector {}", vector.name),
            move |s: &Server| refuses_preface(s, &bytes),
        ));
    }
    cases.push(Case::new(
        "3.4",
        Level::Must,
        "answers an unknown version with its own, GOAWAY UNSUPPORTED_VERSION (last stream 0), and closes, processing nothing sent after the preface",
        |s: &Server| {
            let mut peer = s.connect()?;
            let mut bytes = wire::preface(0xfffe);
            bytes.extend(wire::settings(&[]));
            bytes.extend(wire::open(1, flag::END_STREAM, ROUTE));
            bytes.extend(wire::ping(0, *b"ignored!"));
            peer.send(&bytes);
            let head = peer.raw(8, s.timeout);
            if head.len() < 8 || head[..6] != wire::MAGIC || head[6..8] == [0xff, 0xfe] {
                return Err(fail("a preface naming another version", format!("{head:02x?}")));
            }
            match peer.next_frame() {
                Got::Frame(frame)
                    if frame.is(kind::GOAWAY)
                        && frame.word(0) == Some(0)
                        && frame.error_code() == Some(code::UNSUPPORTED_VERSION) => {}
                other => {
                    return Err(fail(
                        "GOAWAY, last stream 0, UNSUPPORTED_VERSION, as the only frame",
                        other.describe(),
                    ))
                }
            }
            match peer.next_frame() {
                Got::Closed => Ok(()),
                other => Err(fail("the connection closed after GOAWAY", other.describe())),
            }
        },
    ));
    cases.push(Case::new(
        "3.4",
        Level::Must,
        "answers version 1 with version 1, then SETTINGS as its first frame",
        |s: &Server| s.session().map(drop),
    ));
    for (title, first) in [
        (
            "a first frame other than SETTINGS is a connection error (PROTOCOL_ERROR)",
            wire::ping(0, [1; 8]),
        ),
        (
            "an unknown frame type as the first frame is a connection error (PROTOCOL_ERROR)",
            wire::frame(0x0c, 0, 0, b"x"),
        ),
        (
            "a SETTINGS ACK as the first frame is a connection error (PROTOCOL_ERROR)",
            wire::settings_ack(),
        ),
    ] {
        cases.push(Case::new("3.6", Level::Must, title, move |s: &Server| {
            let mut peer = s.connect()?;
            let mut bytes = wire::preface(wire::VERSION);
            bytes.extend(first.clone());
            peer.send(&bytes);
            let _ = peer.raw(8, s.timeout);
            peer.expect_connection_error(code::PROTOCOL_ERROR)
        }));
    }
    cases
}

fn frame_cases() -> Vec<Case<Server>> {
    vec![
        Case::new(
            "4.1.1",
            Level::Must,
            "a frame longer than its MAX_FRAME_SIZE is refused from the header alone (FRAME_SIZE_ERROR)",
            |s: &Server| {
                let mut peer = s.session()?;
                let over = peer.setting(setting::MAX_FRAME_SIZE) + 1;
                peer.send(&wire::frame_with_length(kind::DATA, 0, 1, over, &[]));
                peer.expect_connection_error(code::FRAME_SIZE_ERROR)
            },
        ),
        Case::new("4.2.1", Level::Must, "ignores flags a frame type does not define", |s: &Server| {
            let mut peer = s.session()?;
            let data = *b"flagged!";
            peer.send(&wire::ping(0xfe, data));
            peer.wait_for(s.timeout, |f| f.is(kind::PING) && f.has(flag::ACK) && f.payload == data)
                .map(drop)
                .map_err(|got| fail("the PING answered", got.describe()))
        }),
        Case::new(
            "4.3.2",
            Level::Should,
            "refuses a length its type forbids from the header alone (FRAME_SIZE_ERROR)",
            |s: &Server| {
                let mut peer = s.session()?;
                peer.send(&wire::frame_with_length(kind::PING, 0, 0, 9, &[]));
                let want = "GOAWAY FRAME_SIZE_ERROR before the payload arrived";
                match peer.wait_for(s.timeout, |f| f.is(kind::GOAWAY)) {
                    Ok(f) if f.error_code() == Some(code::FRAME_SIZE_ERROR) => Ok(()),
                    Err(Got::Closed) => Ok(()),
                    Ok(frame) | Err(Got::Frame(frame)) => Err(fail(want, frame.describe())),
                    Err(got) => Err(fail(want, got.describe())),
                }
            },
        ),
        Case::new("4.4.3", Level::Must, "accepts an error code it does not know", |s: &Server| {
            let bytes = join([wire::open(1, 0, ROUTE), wire::reset(1, 0xdead_beef)]);
            s.accepts(&bytes, "RESET with code 0xdeadbeef").map(drop)
        }),
    ]
}

fn frame_type_cases() -> Vec<Case<Server>> {
    vec![
        Case::new(
            "5.2.2",
            Level::Must,
            "resets a stream whose metadata exceeds its MAX_METADATA_SIZE (METADATA_TOO_LARGE), and goes on",
            |s: &Server| {
                let mut peer = s.session()?;
                let (limit, frame) = (
                    peer.setting(setting::MAX_METADATA_SIZE) as usize,
                    peer.setting(setting::MAX_FRAME_SIZE) as usize,
                );
                if limit + 16 > frame || limit + 1 > 65_535 {
                    return Err(skip(format!("MAX_METADATA_SIZE {limit} leaves no room below the frame size")));
                }
                let value = vec![b'v'; limit + 1];
                let block = wire::metadata(&[(b"route", ROUTE.as_bytes()), (b"big", &value)]);
                peer.send(&wire::frame(kind::OPEN, 0, 1, &block));
                peer.expect_reset(1, code::METADATA_TOO_LARGE)
            },
        ),
        Case::new(
            "5.2.2",
            Level::Must,
            "a metadata block both malformed and too large is a connection error (PROTOCOL_ERROR)",
            |s: &Server| {
                let mut peer = s.session()?;
                let limit = peer.setting(setting::MAX_METADATA_SIZE) as usize;
                if limit + 16 > peer.setting(setting::MAX_FRAME_SIZE) as usize || limit + 1 > 65_535 {
                    return Err(skip(format!("MAX_METADATA_SIZE {limit} leaves no room below the frame size")));
                }
                let mut block = wire::metadata(&[(b"pad", &vec![b'p'; limit + 1])]);
                block.extend_from_slice(&[0, 0, 0]); // an entry with Name Len 0
                peer.send(&wire::frame(kind::OPEN, 0, 1, &block));
                peer.expect_connection_error(code::PROTOCOL_ERROR)
            },
        ),
        Case::new("5.2.3", Level::Must, "OPEN on an even stream is a connection error (PROTOCOL_ERROR)", |s: &Server| {
            s.rejects(&wire::open(2, 0, ROUTE), code::PROTOCOL_ERROR)
        }),
        Case::new("5.4.2.1", Level::Must, "acknowledges every SETTINGS it receives", |s: &Server| {
            let mut peer = s.session()?;
            let before = peer.seen.len();
            peer.send(&join([
                wire::settings(&[(setting::MAX_CONCURRENT_STREAMS, 50)]),
                wire::settings(&[(setting::MAX_CONCURRENT_STREAMS, 60)]),
            ]));
            peer.expect_alive("two SETTINGS")?;
            let acks = peer.seen[before..]
                .iter()
                .filter(|f| f.is(kind::SETTINGS) && f.has(flag::ACK))
                .count();
            if acks == 2 {
                Ok(())
            } else {
                Err(fail("2 SETTINGS ACKs before the PING's answer", format!("{acks}")))
            }
        }),
        Case::new(
            "5.4.2.4",
            Level::Should,
            "SETTINGS left unacknowledged end the connection (SETTINGS_TIMEOUT)",
            |s: &Server| {
                let mut peer = s.connect()?;
                let mut hello = wire::preface(wire::VERSION);
                hello.extend(wire::settings(&[]));
                peer.send(&hello);
                let _ = peer.raw(8, s.timeout);
                expect_goaway_within(&mut peer, s.timers + s.timeout, code::SETTINGS_TIMEOUT)
            },
        ),
        Case::new("5.8.3", Level::Must, "PUSH from a client is a connection error (PROTOCOL_ERROR)", |s: &Server| {
            s.rejects(&wire::push(2, 0, 0, &wire::metadata(&[(b"route", b"x")])), code::PROTOCOL_ERROR)
        }),
    ]
}

/// Reads (answering PINGs) until GOAWAY `expected`, within `within`.
fn expect_goaway_within(peer: &mut Peer, within: Duration, expected: u32) -> Step<()> {
    let want = format!("GOAWAY {} within {within:?}", code::name(expected));
    match peer.wait_for(within, |f| f.is(kind::GOAWAY)) {
        Ok(frame) if frame.error_code() == Some(expected) => Ok(()),
        Ok(frame) | Err(Got::Frame(frame)) => Err(fail(want, frame.describe())),
        Err(got) => Err(fail(want, got.describe())),
    }
}

fn stream_cases() -> Vec<Case<Server>> {
    let mut cases = vec![Case::new(
        "6.1.2",
        Level::Must,
        "OPEN with an ID not above the last one opened is a connection error (PROTOCOL_ERROR)",
        |s: &Server| {
            let bytes = join([
                wire::open(5, flag::END_STREAM, ROUTE),
                wire::open(3, flag::END_STREAM, ROUTE),
            ]);
            s.rejects(&bytes, code::PROTOCOL_ERROR)
        },
    )];
    let idle_rows: [(&str, Vec<u8>); 5] = [
        (
            "DATA on an idle stream is a connection error (PROTOCOL_ERROR)",
            wire::data(7, 0, b"x"),
        ),
        (
            "WINDOW_UPDATE on an idle stream is a connection error (PROTOCOL_ERROR)",
            wire::window_update(7, 1),
        ),
        (
            "RESET on an idle stream is a connection error (PROTOCOL_ERROR)",
            wire::reset(7, code::CANCEL),
        ),
        (
            "OPEN on a stream already open is a connection error (PROTOCOL_ERROR)",
            join([wire::open(1, 0, ROUTE), wire::open(1, 0, ROUTE)]),
        ),
        (
            "OPEN on a closed stream is a connection error (PROTOCOL_ERROR)",
            join([
                wire::open(1, 0, ROUTE),
                wire::reset(1, code::CANCEL),
                wire::open(1, 0, ROUTE),
            ]),
        ),
    ];
    for (title, bytes) in idle_rows {
        cases.push(Case::new("6.3", Level::Must, title, move |s: &Server| {
            s.rejects(&bytes, code::PROTOCOL_ERROR)
        }));
    }
    cases.push(Case::new(
        "6.3",
        Level::Must,
        "DATA on a half-closed (remote) stream is a stream error (STREAM_CLOSED)",
        |s: &Server| {
            let mut peer = s.session()?;
            peer.send(&join([
                wire::open(1, flag::END_STREAM, ROUTE),
                wire::data(1, 0, b"late"),
            ]));
            peer.expect_reset(1, code::STREAM_CLOSED)
        },
    ));
    let accepted_rows: [(&str, Vec<u8>); 4] = [
        (
            "accepts DATA on an open stream",
            join([
                wire::open(1, 0, ROUTE),
                wire::data(1, flag::END_STREAM, b"body"),
            ]),
        ),
        (
            "discards DATA on a closed stream",
            join([
                wire::open(1, 0, ROUTE),
                wire::reset(1, code::CANCEL),
                wire::data(1, 0, &[0; 100]),
            ]),
        ),
        (
            "ignores WINDOW_UPDATE and RESET on a closed stream",
            join([
                wire::open(1, 0, ROUTE),
                wire::reset(1, code::CANCEL),
                wire::window_update(1, 100),
                wire::reset(1, code::CANCEL),
            ]),
        ),
        (
            "accepts WINDOW_UPDATE on a half-closed (remote) stream",
            join([
                wire::open(1, flag::END_STREAM, ROUTE),
                wire::window_update(1, 100),
            ]),
        ),
    ];
    for (title, bytes) in accepted_rows {
        cases.push(Case::new("6.3", Level::Must, title, move |s: &Server| {
            let peer = s.accepts(&bytes, "the frame")?;
            no_error_reset(&peer, 1)
        }));
    }
    cases.push(Case::new(
        "6.4.2",
        Level::Must,
        "refuses an OPEN beyond its MAX_CONCURRENT_STREAMS with REFUSED_STREAM",
        |s: &Server| {
            let mut peer = s.session()?;
            let limit = peer.setting(setting::MAX_CONCURRENT_STREAMS);
            if limit > 1000 {
                return Err(skip(format!(
                    "MAX_CONCURRENT_STREAMS {limit} is more than the runner opens"
                )));
            }
            peer.send(&join(
                (0..=limit).map(|n| wire::open(client_stream(n), 0, ROUTE)),
            ));
            peer.expect_reset(client_stream(limit), code::REFUSED_STREAM)
        },
    ));
    cases.push(Case::new(
        "8.2",
        Level::Must,
        "does not answer RESET with RESET",
        |s: &Server| {
            let bytes = join([wire::open(1, 0, ROUTE), wire::reset(1, code::CANCEL)]);
            let peer = s.accepts(&bytes, "RESET")?;
            match peer.seen.iter().find(|f| {
                f.is(kind::RESET) && f.stream() == 1 && f.error_code() != Some(code::NO_ERROR)
            }) {
                Some(frame) => Err(fail("no RESET on the stream we reset", frame.describe())),
                None => Ok(()),
            }
        },
    ));
    cases
}

/// No RESET other than NO_ERROR (an answer sent without reading the whole
/// request, §8.1) on `stream`.
fn no_error_reset(peer: &Peer, stream: u32) -> Step<()> {
    match peer.seen.iter().find(|f| {
        f.is(kind::RESET) && f.stream() == stream && f.error_code() != Some(code::NO_ERROR)
    }) {
        Some(frame) => Err(fail("no stream error", frame.describe())),
        None => Ok(()),
    }
}

fn flow_control_cases() -> Vec<Case<Server>> {
    vec![
        Case::new(
            "9.4.1",
            Level::Must,
            "DATA beyond a stream's window is a stream error (FLOW_CONTROL_ERROR)",
            |s: &Server| {
                let mut peer = s.session()?;
                let window = u64::from(peer.setting(setting::INITIAL_STREAM_WINDOW));
                if window + 1 > peer.connection_credit {
                    return Err(skip("the stream window is not below the connection window"));
                }
                let frames = data_frames(1, window + 1, peer.setting(setting::MAX_FRAME_SIZE));
                let before = peer.seen.len();
                peer.send(&join([wire::open(1, 0, ROUTE), frames]));
                peer.expect_reset(1, code::FLOW_CONTROL_ERROR).map_err(|outcome| {
                    // A server that returned the stream's credit, or ended
                    // the stream, before the last byte came did no wrong.
                    let moved = peer.seen[before..].iter().any(|f| {
                        f.stream() == 1
                            && (f.is(kind::WINDOW_UPDATE)
                                || f.is(kind::RESET)
                                || (f.is(kind::DATA) && f.has(flag::END_STREAM)))
                    });
                    if moved {
                        skip("inconclusive: the server returned the stream's credit or ended it before the window was exceeded")
                    } else {
                        outcome
                    }
                })
            },
        ),
        Case::new(
            "9.4.1",
            Level::Must,
            "DATA beyond the connection window is a connection error (FLOW_CONTROL_ERROR)",
            |s: &Server| {
                let mut peer = s.session()?;
                let window = u64::from(peer.setting(setting::INITIAL_STREAM_WINDOW)).max(1);
                let total = peer.connection_credit + 1;
                let streams = total.div_ceil(window);
                if streams > u64::from(peer.setting(setting::MAX_CONCURRENT_STREAMS))
                    || streams > 1000
                {
                    return Err(skip(format!(
                        "the connection window ({} bytes) is more than its streams' windows can carry at once",
                        peer.connection_credit
                    )));
                }
                let max_frame = peer.setting(setting::MAX_FRAME_SIZE);
                let mut bytes = Vec::new();
                let mut left = total;
                for n in 0..streams as u32 {
                    let id = client_stream(n);
                    let share = left.min(window);
                    bytes.extend(wire::open(id, 0, ROUTE));
                    bytes.extend(data_frames(id, share, max_frame));
                    left -= share;
                }
                let granted = peer.connection_credit;
                peer.send(&bytes);
                peer.expect_connection_error(code::FLOW_CONTROL_ERROR).map_err(|outcome| {
                    // Credit returned as bytes arrived (§9.4.2) made room.
                    if peer.connection_credit > granted {
                        skip("inconclusive: the server returned connection credit before the window was exceeded")
                    } else {
                        outcome
                    }
                })
            },
        ),
        Case::new(
            "9.5.1",
            Level::Must,
            "WINDOW_UPDATE past 2^31-1 on a stream resets it (FLOW_CONTROL_ERROR)",
            |s: &Server| {
                let mut peer = s.session()?;
                peer.send(&join([
                    wire::open(1, 0, ROUTE),
                    wire::window_update(1, MAX_WINDOW as u32),
                ]));
                peer.expect_reset(1, code::FLOW_CONTROL_ERROR)
            },
        ),
    ]
}

/// `total` bytes of DATA on `stream` in frames of at most `max_frame`
/// (and at most 16,384, the default every endpoint takes).
fn data_frames(stream: u32, total: u64, max_frame: u32) -> Vec<u8> {
    let size = u64::from(max_frame.min(wire::DEFAULT_MAX_FRAME));
    let mut bytes = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(size);
        bytes.extend(wire::data(stream, 0, &vec![0x5a; n as usize]));
        left -= n;
    }
    bytes
}

fn management_cases() -> Vec<Case<Server>> {
    vec![
        Case::new(
            "11.3.1",
            Level::Must,
            "an OPEN after the client's GOAWAY is a connection error (PROTOCOL_ERROR)",
            |s: &Server| {
                let bytes = join([
                    wire::goaway(0, code::NO_ERROR, b""),
                    wire::open(1, 0, ROUTE),
                ]);
                s.rejects(&bytes, code::PROTOCOL_ERROR)
            },
        ),
        Case::new(
            "11.3.1",
            Level::Must,
            "a GOAWAY whose Last Stream ID increases is a connection error (PROTOCOL_ERROR)",
            |s: &Server| {
                let bytes = join([
                    wire::goaway(0, code::NO_ERROR, b""),
                    wire::goaway(2, code::NO_ERROR, b""),
                ]);
                s.rejects(&bytes, code::PROTOCOL_ERROR)
            },
        ),
        Case::new(
            "11.4.1",
            Level::Should,
            "closes a connection that sends nothing, without sending anything",
            |s: &Server| {
                let mut peer = s.connect()?;
                let within = s.timers + s.timeout;
                let early = peer.raw(1, within);
                if !early.is_empty() {
                    return Err(fail("nothing sent", format!("{early:02x?}")));
                }
                if peer.closes_within(s.timeout) {
                    Ok(())
                } else {
                    Err(fail(
                        format!("the connection closed within {within:?}"),
                        "still open",
                    ))
                }
            },
        ),
        Case::new(
            "11.4.1",
            Level::Should,
            "a preface without SETTINGS ends in GOAWAY SETTINGS_TIMEOUT",
            |s: &Server| {
                let mut peer = s.connect()?;
                // Its RTT probe (§11.2.2) stays unanswered: an answer would
                // be our first frame.
                peer.answer_pings = false;
                peer.send(&wire::preface(wire::VERSION));
                let _ = peer.raw(8, s.timeout);
                expect_goaway_within(&mut peer, s.timers + s.timeout, code::SETTINGS_TIMEOUT)?;
                if peer.closes_within(s.timeout) {
                    Ok(())
                } else {
                    Err(fail("the connection closed after GOAWAY", "still open"))
                }
            },
        ),
        Case::new(
            "11.2.3",
            Level::Should,
            "sends a keepalive PING after a silence",
            |s: &Server| {
                let within = s
                    .idle
                    .ok_or_else(|| skip("needs --idle-wait longer than its keepalive interval"))?;
                let mut peer = s.session()?;
                let before = peer.seen.len();
                match peer.wait_for(within, |f| f.is(kind::PING) && !f.has(flag::ACK)) {
                    Ok(_) => Ok(()),
                    Err(got) if peer.seen.len() > before => Err(fail("a PING", got.describe())),
                    Err(got) => Err(fail(format!("a PING within {within:?}"), got.describe())),
                }
            },
        ),
        Case::new(
            "11.2.4",
            Level::Should,
            "closes an idle connection with GOAWAY IDLE_TIMEOUT",
            |s: &Server| {
                let within = s
                    .idle
                    .ok_or_else(|| skip("needs --idle-wait longer than its idle timeout"))?;
                let mut peer = s.session()?;
                let before = peer.seen.len();
                expect_goaway_within(&mut peer, within, code::IDLE_TIMEOUT).map_err(|outcome| {
                    let streams = peer.seen[before..]
                        .iter()
                        .filter(|f| f.is(kind::PUSH) || f.is(kind::OPEN))
                        .count();
                    match outcome {
                        crate::case::Outcome::Fail { expected, got } if streams > 0 => fail(
                            expected,
                            format!("{got}; it pushed {streams} streams meanwhile (not idle)"),
                        ),
                        other => other,
                    }
                })
            },
        ),
    ]
}

/// One flood of §13.2: the frames of `count` counted events.
struct Flood {
    name: &'static str,
    burst: u32,
    /// Frames sent first (streams held open, say).
    setup: fn(&Peer) -> Step<Vec<u8>>,
    events: fn(&Peer, u32) -> Vec<u8>,
    /// Events the handshake already counted.
    spent: u32,
}

fn hold_streams(peer: &Peer) -> Step<Vec<u8>> {
    let limit = peer.setting(setting::MAX_CONCURRENT_STREAMS);
    if limit > 1000 {
        return Err(skip(format!(
            "MAX_CONCURRENT_STREAMS {limit} is more than the runner opens"
        )));
    }
    Ok(join(
        (0..limit).map(|n| wire::open(client_stream(n), 0, ROUTE)),
    ))
}

fn floods() -> [Flood; 6] {
    [
        Flood {
            name: "PING",
            burst: 50,
            setup: |_| Ok(Vec::new()),
            events: |_, count| join((0..count).map(|n| wire::ping(0, u64::from(n).to_be_bytes()))),
            // The runner's fence is a PING too.
            spent: 1,
        },
        Flood {
            name: "SETTINGS",
            burst: 20,
            setup: |_| Ok(Vec::new()),
            events: |_, count| join((0..count).map(|_| wire::settings(&[]))),
            spent: 1,
        },
        Flood {
            name: "empty frames",
            burst: 100,
            setup: |_| Ok(wire::open(1, 0, ROUTE)),
            events: |_, count| join((0..count).map(|_| wire::data(1, 0, &[]))),
            spent: 0,
        },
        Flood {
            name: "rapid reset",
            burst: 200,
            setup: |_| Ok(Vec::new()),
            events: |_, count| {
                join((0..count).map(|n| {
                    join([
                        wire::open(client_stream(n), 0, ROUTE),
                        wire::reset(client_stream(n), code::CANCEL),
                    ])
                }))
            },
            spent: 0,
        },
        Flood {
            name: "refused streams",
            burst: 200,
            setup: hold_streams,
            events: |peer, count| {
                let held = peer.setting(setting::MAX_CONCURRENT_STREAMS);
                join((held..held + count).map(|n| wire::open(client_stream(n), 0, ROUTE)))
            },
            spent: 0,
        },
        Flood {
            name: "stream errors caused",
            burst: 100,
            setup: |_| Ok(Vec::new()),
            events: |_, count| {
                join((0..count).map(|n| {
                    let id = client_stream(n);
                    join([
                        wire::open(id, flag::END_STREAM, ROUTE),
                        wire::data(id, 0, b"late"),
                    ])
                }))
            },
            spent: 0,
        },
    ]
}

fn flood_cases() -> Vec<Case<Server>> {
    let mut cases = Vec::new();
    for (index, flood) in floods().into_iter().enumerate() {
        let name = flood.name;
        cases.push(Case::new(
            "13.2",
            Level::Must,
            format!(
                "bounds {name} floods: ten times the recommended burst ends in ENHANCE_YOUR_CALM"
            ),
            move |s: &Server| {
                let flood = &floods()[index];
                let mut peer = s.session()?;
                let mut bytes = (flood.setup)(&peer)?;
                bytes.extend((flood.events)(&peer, flood.burst * 10));
                peer.send(&bytes);
                let want = "GOAWAY ENHANCE_YOUR_CALM";
                match peer.wait_for(s.timeout, |f| f.is(kind::GOAWAY)) {
                    Ok(f) if f.error_code() == Some(code::ENHANCE_YOUR_CALM) => Ok(()),
                    Ok(frame) | Err(Got::Frame(frame)) => Err(fail(want, frame.describe())),
                    Err(got) => Err(fail(want, got.describe())),
                }
            },
        ));
        cases.push(Case::new(
            "13.2",
            Level::Should,
            format!("allows the recommended burst of {name} ({})", flood.burst),
            move |s: &Server| {
                let flood = &floods()[index];
                let mut peer = s.session()?;
                let mut bytes = (flood.setup)(&peer)?;
                bytes.extend((flood.events)(&peer, flood.burst - flood.spent - 1));
                peer.send(&bytes);
                peer.expect_alive(&format!("{} events of the burst", flood.burst - 1))
            },
        ));
    }
    cases
}
