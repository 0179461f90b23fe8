//! The fuzz targets' harnesses, here so that `cargo test` replays the seeds
//! in `fuzz/seeds/` through the same code the fuzzer runs (the targets in
//! `fuzz/` are one line each). Compiled for tests and under `cfg(fuzzing)`
//! only; not part of the API.
//!
//! - [`decode_stream`]: arbitrary bytes as a stream of frames. Invariants:
//!   the decoder never panics; it never consumes bytes when it answers
//!   "incomplete"; every frame it decodes validates and re-encodes to bytes
//!   that decode to an equal frame.
//! - [`encode_frame`]: an arbitrary frame value, encoded whole and split.
//!   Invariants: encoding never panics; both encodings agree; a frame that
//!   `validate()` accepts decodes to an equal frame, one it rejects fails to
//!   decode with the same error.
//! - [`run_pair`]: a client and a server wired together, driven by an
//!   arbitrary interleaving of application commands, partial deliveries, time
//!   steps and injected peer input. Invariants, after every step: no panic,
//!   and `Connection::check_invariants` (windows within bounds, counts within
//!   limits, buffers within caps).
//! - [`feed_message`]: arbitrary bytes as a feed message (`spec/patterns.md`
//!   §3.3), what a subscriber reads from a server it may not trust.
//!   Invariants: neither parser panics; decoding and parsing in place agree
//!   on whether it is well formed and on every part (a Publications
//!   message's payloads, one by one); a well-formed message re-encodes to
//!   the same bytes.
//!
//! Each returns the [`Violation`] it found instead of panicking: the fuzz
//! targets and the tests that replay the seeds turn it into their failure.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};

use crate::frame::{Frame, Metadata, MAX_LENGTH_FIELD};
use crate::{Config, Connection, ErrorCode, Event, Side, StreamId};

/// A maximum frame size above the default, so that large frames get decoded too.
const MAX_FRAME_SIZE: u32 = 1 << 20;

/// An invariant a harness found broken, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

/// `Err` with `what` unless `holds`.
fn check(holds: bool, what: impl FnOnce() -> String) -> Result<(), Violation> {
    if holds {
        Ok(())
    } else {
        Err(Violation(what()))
    }
}

/// The `frame_decode` target.
pub fn decode_stream(data: &[u8]) -> Result<(), Violation> {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match Frame::decode(&mut buf, MAX_FRAME_SIZE) {
            Ok(Some(frame)) => {
                check(frame.validate().is_ok(), || {
                    format!("decoded frame fails validation: {frame:?}")
                })?;
                let mut wire = BytesMut::new();
                check(frame.encode(&mut wire).is_ok(), || {
                    format!("a decoded frame does not re-encode: {frame:?}")
                })?;
                let again = Frame::decode(&mut wire, MAX_FRAME_SIZE);
                check(again.as_ref() == Ok(&Some(frame.clone())), || {
                    format!("{frame:?} re-encoded decodes to {again:?}")
                })?;
                check(wire.is_empty(), || "re-encoding left bytes over".into())?;
            }
            Ok(None) => {
                return check(buf.len() == before, || {
                    "incomplete input was consumed".into()
                });
            }
            Err(_) => return Ok(()),
        }
    }
}

/// The `frame_roundtrip` target.
pub fn encode_frame(frame: Frame) -> Result<(), Violation> {
    let mut whole = BytesMut::new();
    if frame.encode(&mut whole).is_err() {
        return Ok(());
    }
    let mut head = BytesMut::new();
    let body = frame.encode_split(&mut head);
    check(body.is_ok(), || {
        format!("encode_split refuses what encode took: {frame:?}")
    })?;
    if let Ok(Some(body)) = body {
        head.extend_from_slice(&body);
    }
    check(head == whole, || "encode_split and encode differ".into())?;
    let decoded = Frame::decode(&mut whole, MAX_LENGTH_FIELD);
    match frame.validate() {
        Ok(()) => {
            check(decoded == Ok(Some(frame.clone())), || {
                format!("{frame:?} decodes to {decoded:?}")
            })?;
            check(whole.is_empty(), || "decoding left bytes over".into())
        }
        Err(err) => check(decoded == Err(err), || {
            format!("{frame:?} is invalid ({err}) but decodes to {decoded:?}")
        }),
    }
}

/// An application command on one endpoint.
#[derive(Arbitrary, Debug)]
pub enum Cmd {
    Open {
        end_stream: bool,
    },
    Push {
        associated: Option<u8>,
        end_stream: bool,
    },
    Send {
        stream: u8,
        len: u16,
        end_message: bool,
        end_stream: bool,
        /// Lent (`send_copy`) rather than handed over (`send`).
        lend: bool,
    },
    Read {
        stream: u8,
        max: u16,
        /// Lent (`read_with`) rather than handed out (`read`).
        lend: bool,
    },
    Reset {
        stream: u8,
        code: u32,
    },
    Ping,
    Close {
        code: u32,
    },
}

/// One step of the scenario.
#[derive(Arbitrary, Debug)]
pub enum Op {
    Client(Cmd),
    Server(Cmd),
    Deliver { to_server: bool, max: u16 },
    InjectFrame { to_server: bool, frame: Frame },
    InjectBytes { to_server: bool, bytes: Vec<u8> },
    Advance { millis: u16 },
}

/// The most bytes a direction may have in flight before its sender stops
/// transmitting (a full socket).
const LINK_CAPACITY: usize = 1 << 20;

struct Endpoint {
    conn: Connection,
    rx: BytesMut,
    streams: Vec<StreamId>,
}

impl Endpoint {
    fn pick(&self, index: u8) -> Option<StreamId> {
        let len = self.streams.len().max(1);
        self.streams.get(usize::from(index) % len).copied()
    }

    fn run(&mut self, cmd: Cmd, now: Instant) {
        let metadata = Metadata::from_pairs([(&b"route"[..], &b"fuzz"[..])]).unwrap_or_default();
        match cmd {
            Cmd::Open { end_stream } => {
                if let Ok(id) = self.conn.open(metadata, end_stream) {
                    self.streams.push(id);
                }
            }
            Cmd::Push {
                associated,
                end_stream,
            } => {
                let associated = associated.and_then(|i| self.pick(i));
                if let Ok(id) = self.conn.push(associated, metadata, end_stream) {
                    self.streams.push(id);
                }
            }
            Cmd::Send {
                stream,
                len,
                end_message,
                end_stream,
                lend,
            } => {
                if let Some(id) = self.pick(stream) {
                    let data = vec![0xa5; usize::from(len)];
                    let _ = if lend {
                        self.conn.send_copy(id, &data, end_message, end_stream)
                    } else {
                        self.conn
                            .send(id, Bytes::from(data), end_message, end_stream)
                    };
                }
            }
            Cmd::Read { stream, max, lend } => {
                if let Some(id) = self.pick(stream) {
                    let max = usize::from(max);
                    let _ = if lend {
                        self.conn.read_with(id, max, |chunk| chunk.bytes.len())
                    } else {
                        self.conn
                            .read(id, max)
                            .map(|chunk| chunk.map(|c| c.bytes.len()))
                    };
                }
            }
            Cmd::Reset { stream, code } => {
                if let Some(id) = self.pick(stream) {
                    let _ = self.conn.reset(id, ErrorCode(code));
                }
            }
            Cmd::Ping => {
                let _ = self.conn.ping(now);
            }
            Cmd::Close { code } => self.conn.close(now, ErrorCode(code % 16), "fuzz"),
        }
    }

    /// Feeds what arrived, and notes the streams the peer opened.
    fn receive(&mut self, now: Instant, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        let _ = self.conn.handle_read(now, &mut self.rx);
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::StreamOpened { id, .. } | Event::PushReceived { id, .. } => {
                    self.streams.push(id)
                }
                _ => {}
            }
        }
        self.streams.retain(|id| id.value() != 0);
        if self.streams.len() > 64 {
            self.streams.drain(..32);
        }
    }

    fn transmit(&mut self, now: Instant, link: &mut BytesMut) {
        while link.len() < LINK_CAPACITY && self.conn.poll_transmit(now, link) {}
    }
}

fn config() -> Config {
    Config {
        max_concurrent_streams: 4,
        initial_stream_window: 4096,
        max_stream_window: 65_536,
        initial_connection_window: 16_384,
        max_connection_window: 262_144,
        stream_send_buffer: 20_000,
        connection_send_buffer: 50_000,
        ..Config::default()
    }
}

/// The `connection` target.
pub fn run_pair(ops: Vec<Op>) -> Result<(), Violation> {
    let mut now = Instant::now();
    let mut client = Endpoint {
        conn: Connection::new(Side::Client, config(), now),
        rx: BytesMut::new(),
        streams: Vec::new(),
    };
    let mut server = Endpoint {
        conn: Connection::new(Side::Server, config(), now),
        rx: BytesMut::new(),
        streams: Vec::new(),
    };
    let mut to_server = BytesMut::new();
    let mut to_client = BytesMut::new();
    for op in ops {
        match op {
            Op::Client(cmd) => client.run(cmd, now),
            Op::Server(cmd) => server.run(cmd, now),
            // An endpoint whose answers pile up unwritten stops reading
            // (`Connection::wants_read`), as the runtime does.
            Op::Deliver {
                to_server: true, ..
            } if !server.conn.wants_read() => {}
            Op::Deliver {
                to_server: false, ..
            } if !client.conn.wants_read() => {}
            Op::Deliver {
                to_server: true,
                max,
            } => {
                let n = usize::from(max).max(1).min(to_server.len());
                let bytes = to_server.split_to(n);
                server.receive(now, &bytes);
            }
            Op::Deliver {
                to_server: false,
                max,
            } => {
                let n = usize::from(max).max(1).min(to_client.len());
                let bytes = to_client.split_to(n);
                client.receive(now, &bytes);
            }
            Op::InjectFrame {
                to_server: true,
                frame,
            } => {
                let _ = frame.encode(&mut to_server);
            }
            Op::InjectFrame {
                to_server: false,
                frame,
            } => {
                let _ = frame.encode(&mut to_client);
            }
            Op::InjectBytes {
                to_server: true,
                bytes,
            } => to_server.extend_from_slice(&bytes),
            Op::InjectBytes {
                to_server: false,
                bytes,
            } => to_client.extend_from_slice(&bytes),
            Op::Advance { millis } => {
                now += Duration::from_millis(u64::from(millis));
                client.conn.handle_timeout(now);
                server.conn.handle_timeout(now);
            }
        }
        client.transmit(now, &mut to_server);
        server.transmit(now, &mut to_client);
        for endpoint in [&client, &server] {
            endpoint.conn.check_invariants().map_err(|broken| {
                Violation(format!(
                    "{:?} broke an invariant: {broken}",
                    endpoint.conn.side()
                ))
            })?;
        }
    }
    Ok(())
}

/// The `feed_message` target.
pub fn feed_message(data: &[u8]) -> Result<(), Violation> {
    use crate::patterns::{FeedMessage, FeedMessageRef};
    let decoded = FeedMessage::decode(Bytes::copy_from_slice(data));
    let parsed = FeedMessageRef::parse(data);
    let agree = match (&decoded, &parsed) {
        (Err(_), Err(_)) => return Ok(()),
        (
            Ok(FeedMessage::Publication { topic, payload }),
            Ok(FeedMessageRef::Publication {
                topic: t,
                payload: p,
            }),
        ) => (&**topic, &payload[..]) == (*t, *p),
        (Ok(FeedMessage::Lost { count }), Ok(FeedMessageRef::Lost { count: c })) => count == c,
        (
            Ok(FeedMessage::Event { id, kind, data }),
            Ok(FeedMessageRef::Event {
                id: i,
                kind: k,
                data: d,
            }),
        ) => (id, &**kind, &data[..]) == (i, *k, *d),
        (
            Ok(FeedMessage::Publications { topic, payloads }),
            Ok(FeedMessageRef::Publications {
                topic: t,
                payloads: p,
            }),
        ) => &**topic == *t && payloads.clone().eq(p.map(Bytes::copy_from_slice)),
        _ => false,
    };
    check(agree, || {
        format!("decoded {decoded:?} and parsed {parsed:?} disagree")
    })?;
    if let Ok(message) = decoded {
        let wire = message.encode();
        check(wire == data, || {
            format!("{message:?} re-encodes to {wire:?}, not {data:?}")
        })?;
    }
    Ok(())
}
