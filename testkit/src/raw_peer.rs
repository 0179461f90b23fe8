//! [`RawPeer`]: a mux endpoint driven by hand over a blocking socket, with
//! `mux-core` directly, for tests that need a peer unlike our runtime.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::BytesMut;

#[allow(missing_debug_implementations)]
/// A mux endpoint driven by hand over a blocking socket, with `mux-core`
/// directly: for peers that behave unlike our runtime (slow, abrupt).
pub struct RawPeer {
    /// The socket.
    pub stream: std::net::TcpStream,
    /// The protocol state machine.
    pub conn: mux_core::Connection,
    rx: BytesMut,
}

impl RawPeer {
    /// A server side on an accepted socket.
    pub fn server(stream: std::net::TcpStream, config: mux_core::Config) -> Self {
        Self::new(stream, mux_core::Side::Server, config)
    }

    /// A client side on a connected socket; its preface goes out with the first `pump`.
    pub fn client(stream: std::net::TcpStream, config: mux_core::Config) -> Self {
        Self::new(stream, mux_core::Side::Client, config)
    }

    fn new(stream: std::net::TcpStream, side: mux_core::Side, config: mux_core::Config) -> Self {
        let conn = mux_core::Connection::new(side, config, Instant::now());
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        Self {
            stream,
            conn,
            rx: BytesMut::new(),
        }
    }

    /// Pumps until the handshake completes, then sends what it leaves to
    /// send (our SETTINGS acknowledgement); panics past `limit`.
    pub fn handshake(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        // A client's preface goes out before the first read waits.
        self.flush().expect("the peer closed during the handshake");
        while !self.conn.is_established() {
            assert!(Instant::now() < deadline, "no handshake within {limit:?}");
            self.pump(64 * 1024)
                .expect("the peer closed during the handshake");
        }
        self.flush().expect("the peer closed during the handshake");
    }

    /// Writes everything the state machine has to send.
    pub fn flush(&mut self) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        while self.conn.poll_transmit(Instant::now(), &mut out) {}
        self.stream.write_all(&out)
    }

    /// Reads at most `max` bytes (waiting at most 20 ms), feeds them, writes
    /// every answer; returns the events. `Err` once the peer closed.
    pub fn pump(&mut self, max: usize) -> std::io::Result<Vec<mux_core::Event>> {
        let mut buf = vec![0u8; max.max(1)];
        match self.stream.read(&mut buf) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                self.rx.extend_from_slice(&buf[..n]);
                let _ = self.conn.handle_read(Instant::now(), &mut self.rx);
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(err) => return Err(err),
        }
        self.flush()?;
        let mut events = Vec::new();
        while let Some(event) = self.conn.poll_event() {
            events.push(event);
        }
        Ok(events)
    }

    /// Sends `body` on `id` (ending the stream with it) as far as the
    /// peer's windows let it, pumping meanwhile; gives up on a stream that
    /// makes no progress for 50 pumps (held back by flow control) or that
    /// the peer reset. Returns the bytes that went out, and the resets seen.
    pub fn send_body(
        &mut self,
        id: mux_core::StreamId,
        body: &bytes::Bytes,
    ) -> std::io::Result<(usize, Vec<(mux_core::StreamId, mux_core::ErrorCode)>)> {
        let mut resets = Vec::new();
        let mut sent = 0;
        let mut idle_pumps = 0;
        while sent < body.len() && idle_pumps < 50 {
            let end = body.len().min(sent + 64 * 1024);
            match self
                .conn
                .send(id, body.slice(sent..end), false, end == body.len())
            {
                Ok(0) => idle_pumps += 1,
                Ok(n) => {
                    sent += n;
                    idle_pumps = 0;
                }
                Err(_) => break, // reset by the peer
            }
            for event in self.pump(256 * 1024)? {
                if let mux_core::Event::StreamReset { id, code } = event {
                    resets.push((id, code));
                }
            }
            if resets.iter().any(|(reset, _)| *reset == id) {
                break;
            }
        }
        Ok((sent, resets))
    }
}
