//! A client and a server `Connection` wired together, driven by an arbitrary
//! interleaving of application commands, partial deliveries, time steps and
//! injected peer input (structured frames or raw bytes, mid-stream).
//!
//! Invariants, checked after every step: no panic; windows never above 2^31-1
//! nor their configured maximum; granted credit plus held data within the
//! window target; active stream counts match the streams and stay within our
//! limit; queued and buffered bytes within their caps (`check_invariants`).
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mux_core::frame::{Frame, Metadata};
use mux_core::{Config, Connection, ErrorCode, Event, Side, StreamId};

#[derive(Arbitrary, Debug)]
enum Cmd {
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
    },
    Read {
        stream: u8,
        max: u16,
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

#[derive(Arbitrary, Debug)]
enum Op {
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
        (!self.streams.is_empty()).then(|| self.streams[usize::from(index) % self.streams.len()])
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
            } => {
                if let Some(id) = self.pick(stream) {
                    let _ = self.conn.send(
                        id,
                        Bytes::from(vec![0xa5; usize::from(len)]),
                        end_message,
                        end_stream,
                    );
                }
            }
            Cmd::Read { stream, max } => {
                if let Some(id) = self.pick(stream) {
                    let _ = self.conn.read(id, usize::from(max));
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

fuzz_target!(|ops: Vec<Op>| {
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
            if let Err(broken) = endpoint.conn.check_invariants() {
                panic!("{:?} broke an invariant: {broken}", endpoint.conn.side());
            }
        }
    }
});
