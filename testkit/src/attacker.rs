//! [`Attacker`]: a peer that writes raw frames, obeying no rule it does not
//! choose to: the client side of the attack tests. It completes the
//! preface and SETTINGS exchange, then sends whatever frames it is told,
//! reading (and discarding) the server's answers only when asked to.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mux_core::frame::{Data, Frame, Metadata, Open, Ping, Reset, Settings};
use mux_core::preface::Preface;
use mux_core::rpc::RequestHead;
use mux_core::{ErrorCode, StreamId};

/// A raw-frame client.
#[derive(Debug)]
pub struct Attacker {
    stream: TcpStream,
    out: BytesMut,
    next_id: u32,
}

impl Attacker {
    /// Connects and sends the preface and an empty SETTINGS; acknowledges
    /// the server's SETTINGS blindly. Connecting and each write give up
    /// after 5 s, so an attack never outlasts its test by much.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        const GIVE_UP: Duration = Duration::from_secs(5);
        let stream = TcpStream::connect_timeout(&addr, GIVE_UP)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_millis(1)))?;
        stream.set_write_timeout(Some(GIVE_UP))?;
        let mut attacker = Self {
            stream,
            out: BytesMut::new(),
            next_id: 1,
        };
        Preface::CURRENT.encode(&mut attacker.out);
        attacker.push(Frame::Settings(Settings::new(&[])));
        attacker.push(Frame::Settings(Settings::ack()));
        attacker.flush()?;
        Ok(attacker)
    }

    /// Queues a frame (written by [`Attacker::flush`]).
    pub fn push(&mut self, frame: Frame) {
        // The frames built here are all encodable.
        let _ = frame.encode(&mut self.out);
    }

    /// Writes what was queued (blocking while the server does not read, up
    /// to the write timeout).
    pub fn flush(&mut self) -> io::Result<()> {
        let out = self.out.split();
        self.stream.write_all(&out)
    }

    /// Reads and discards whatever the server sent; `Err` once it closed.
    pub fn drain(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(())
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// A new stream ID of ours.
    pub fn next_stream(&mut self) -> StreamId {
        let id = StreamId::new(self.next_id).unwrap_or_default();
        self.next_id += 2;
        id
    }

    /// Queues an OPEN of `route`; returns its stream.
    pub fn open(&mut self, route: &str, end_stream: bool) -> StreamId {
        let metadata = RequestHead::new(route).encode().unwrap_or_default();
        self.open_with(metadata, end_stream)
    }

    /// Queues an OPEN with `metadata`; returns its stream.
    pub fn open_with(&mut self, metadata: Metadata, end_stream: bool) -> StreamId {
        let stream = self.next_stream();
        self.push(Frame::Open(Open {
            stream,
            end_stream,
            metadata,
        }));
        stream
    }

    /// Queues DATA on `stream`.
    pub fn data(&mut self, stream: StreamId, payload: Bytes, end_message: bool) {
        let mut data = Data::new(stream, payload);
        data.end_message = end_message;
        self.push(Frame::Data(data));
    }

    /// Queues a RESET of `stream`.
    pub fn reset(&mut self, stream: StreamId) {
        self.push(Frame::Reset(Reset {
            stream,
            code: ErrorCode::CANCEL,
        }));
    }

    /// Queues a PING.
    pub fn ping(&mut self, payload: u64) {
        self.push(Frame::Ping(Ping {
            ack: false,
            payload: payload.to_be_bytes(),
        }));
    }

    /// The socket, for attacks below the frame layer.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}
