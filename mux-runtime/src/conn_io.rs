//! One connection's I/O: the socket, the `mux-core` state machine, the read
//! buffer and the bytes written but not yet accepted by the kernel.
//!
//! It follows mio's contract: read until `WouldBlock`, retry on
//! `Interrupted`, treat `Ok(0)` as end of file, and never assume a readiness
//! event means the operation will succeed. Output that hits `WouldBlock` is
//! kept in `tx` and written on the next WRITABLE event, never dropped. A
//! flush also stops after the state machine's write budget and says so, for
//! the loop to come back once it has served its other work (spec §12.3).
//!
//! Spec §13.1: while the state machine's answers pile up unwritten
//! (`Connection::wants_read` is false), reading stops, so a peer that does
//! not read cannot make us buffer without bound.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::Interest;
use mux_core::preface::refusal;
use mux_core::{Connection, ConnectionError, ErrorCode, Event, Outgoing};

use crate::read_buffer::ReadBuffer;
use crate::tls::{TlsRead, TlsSession};

/// Bytes read per `read` call: the size of each loop's scratch buffer.
pub(crate) const READ_CHUNK: usize = crate::read_buffer::READ_SIZE;

/// Pieces handed to one vectored write: a full batch of 64 KiB frames
/// with their headers, and of 16 KiB frames when streams share the
/// connection, with room to spare.
const WRITE_SLICES: usize = 64;

/// Buffers above this size are released once empty, so that an idle
/// connection keeps no large allocation (the goal: under 16 KiB per idle
/// connection, README "Goals").
const KEEP_BUFFER: usize = 8 * 1024;

/// Reads done per readable event before other connections get a turn (the
/// remaining readiness is served on the next loop iteration).
pub(crate) const MAX_READS_PER_EVENT: usize = 16;

/// What one read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// A full buffer arrived and was fed to the state machine: more may
    /// be waiting.
    More,
    /// Nothing more to read now: a short read (the socket had no more;
    /// new data raises a new readiness event), `WouldBlock`, the peer's end,
    /// or reading paused by the state machine.
    Done,
}

/// Why a connection's transport is finished.
#[derive(Debug)]
pub enum Closed {
    /// The protocol ended the connection and its output is flushed.
    Done,
    /// The socket failed.
    Io(io::Error),
}

/// The I/O state of one connection.
#[derive(Debug)]
pub struct ConnIo {
    pub(crate) socket: mio::net::TcpStream,
    /// The protocol state machine.
    pub conn: Connection,
    rx: ReadBuffer,
    tx: Outgoing,
    /// A non-blocking connect has not completed yet.
    pub(crate) connecting: bool,
    /// The peer closed its side of the transport.
    eof: bool,
    /// The interest registered with the poller.
    pub(crate) interest: Interest,
    /// The earliest timer entry scheduled for this connection.
    pub(crate) scheduled: Option<Instant>,
    /// Incremented each time the slab slot is reused (stale-timer guard).
    pub(crate) generation: u64,
    /// Reading stopped because the state machine pushed back; resume when it no longer does.
    pub(crate) read_paused: bool,
    /// The error the state machine closed with, kept for `App::on_closed`.
    pub(crate) close_error: Option<ConnectionError>,
    /// In the loop's list of connections to flush this iteration (so that
    /// marking is O(1), not a search of the list).
    pub(crate) flush_queued: bool,
    /// The last flush stopped at its budget, not at an empty queue or
    /// a full socket: flush again next iteration, without a new edge.
    pub(crate) more_to_write: bool,
    /// TLS between the socket and the buffers (spec §16); `None`: plaintext.
    tls: Option<Box<TlsSession>>,
    /// A plaintext connection's first byte opened a TLS handshake (for the
    /// error it ends with).
    pub(crate) tls_on_plain_port: bool,
    /// When the connection was accepted or its connect started (for the log).
    pub(crate) opened: Instant,
}

impl ConnIo {
    pub(crate) fn new(
        socket: mio::net::TcpStream,
        conn: Connection,
        connecting: bool,
        generation: u64,
        opened: Instant,
    ) -> Self {
        Self {
            socket,
            conn,
            rx: ReadBuffer::new(),
            tx: Outgoing::new(),
            connecting,
            eof: false,
            interest: Interest::READABLE,
            scheduled: None,
            generation,
            read_paused: false,
            close_error: None,
            flush_queued: false,
            more_to_write: false,
            tls: None,
            tls_on_plain_port: false,
            opened,
        }
    }

    /// Runs the connection over TLS.
    pub(crate) fn with_tls(mut self, session: TlsSession) -> Self {
        self.tls = Some(Box::new(session));
        self
    }

    /// The certificate chain the peer presented over TLS (leaf first).
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.tls.as_ref().and_then(|tls| tls.peer_certificates())
    }

    /// Whether the peer ended its sending direction (TCP FIN, or TLS's
    /// close_notify): nothing more can arrive.
    pub(crate) fn peer_ended(&self) -> bool {
        self.eof
    }

    /// Reads once from the socket, feeding the state machine; pushes its
    /// events to `events`.
    ///
    /// One read at a time, with the events handed to the application in
    /// between (the loop's job): the application consumes what arrived
    /// before the next read, so the frames sliced out of the read buffer are
    /// let go and the next read reuses the buffer in place. Reading many
    /// times before dispatching kept every earlier buffer alive, and each
    /// read allocated (and faulted in) a fresh one.
    pub(crate) fn read_once(
        &mut self,
        now: Instant,
        scratch: &mut [u8],
        events: &mut Vec<Event>,
    ) -> Result<ReadOutcome, Closed> {
        if self.connecting || self.eof {
            return Ok(ReadOutcome::Done);
        }
        if !self.conn.wants_read() {
            self.read_paused = true;
            return Ok(ReadOutcome::Done);
        }
        if self.tls.is_some() {
            return self.read_tls(now, scratch, events);
        }
        let first_bytes = !self.conn.is_established() && self.rx.is_empty();
        let n = loop {
            match self.rx.read_with(scratch, &mut self.socket) {
                Ok(n) => break n,
                Err(err) => match err.kind() {
                    io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Done),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(Closed::Io(err)),
                },
            }
        };
        if n == 0 {
            self.eof = true;
            self.conn.handle_eof(now);
            self.drain_events(events);
            return Ok(ReadOutcome::Done);
        }
        if first_bytes && looks_like_tls(self.rx.received()) {
            self.tls_on_plain_port = true;
        }
        // A connection error is also reported as `Event::Closed`.
        let _: Result<(), ConnectionError> = self.conn.handle_read(now, self.rx.received());
        if self.rx.capacity() > KEEP_BUFFER && self.is_idle() {
            self.rx.release_if_empty();
        }
        self.drain_events(events);
        // A short read emptied the socket: stop here, so that what the
        // application answers is written before more is read.
        Ok(if n == scratch.len() {
            ReadOutcome::More
        } else {
            ReadOutcome::Done
        })
    }

    /// [`ConnIo::read_once`] over TLS: one read of ciphertext, its
    /// plaintext fed to the state machine.
    fn read_tls(
        &mut self,
        now: Instant,
        scratch: &mut [u8],
        events: &mut Vec<Event>,
    ) -> Result<ReadOutcome, Closed> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(ReadOutcome::Done);
        };
        match tls.check_first_byte(&self.socket) {
            Ok(Some(true)) => {}
            Ok(Some(false)) => return Err(self.refuse_plaintext(scratch)),
            Ok(None) => return Ok(ReadOutcome::Done),
            Err(err) => return Err(Closed::Io(err)),
        }
        let read = tls
            .read(&mut self.socket, scratch, self.rx.received())
            .map_err(Closed::Io)?;
        if !self.rx.is_empty() {
            // A connection error is also reported as `Event::Closed`.
            let _: Result<(), ConnectionError> = self.conn.handle_read(now, self.rx.received());
        }
        let outcome = match read {
            TlsRead::More => ReadOutcome::More,
            TlsRead::Done => ReadOutcome::Done,
            TlsRead::Closed => {
                self.eof = true;
                self.conn.handle_eof(now);
                ReadOutcome::Done
            }
        };
        self.drain_events(events);
        Ok(outcome)
    }

    /// A plaintext client on a TLS port: a mux client gets our preface and
    /// GOAWAY INADEQUATE_SECURITY (spec §16.2); nothing it sent is
    /// processed; the connection ends.
    fn refuse_plaintext(&mut self, scratch: &mut [u8]) -> Closed {
        if let Ok(n) = self.socket.read(scratch) {
            let received = scratch.get(..n).unwrap_or_default();
            let reason = "this port requires TLS";
            if let Some(answer) = refusal(received, ErrorCode::INADEQUATE_SECURITY, reason) {
                let _ = self.socket.write(&answer);
            }
        }
        Closed::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "a plaintext client on a TLS port (refused with INADEQUATE_SECURITY)",
        ))
    }

    pub(crate) fn drain_events(&mut self, events: &mut Vec<Event>) {
        while let Some(event) = self.conn.poll_event() {
            if let Event::Closed { error: Some(error) } = &event {
                self.close_error = Some(error.clone());
            }
            events.push(event);
        }
    }

    /// Writes what the state machine has to send, until the kernel refuses
    /// more or its write budget is written (then `more_to_write` says so).
    /// Returns whether the transport is finished.
    pub(crate) fn flush(
        &mut self,
        now: Instant,
        events: &mut Vec<Event>,
    ) -> Result<Option<Closed>, Closed> {
        if self.connecting {
            // Closed while the TCP handshake runs (a connect timeout): give up.
            return Ok(self.conn.is_closed().then_some(Closed::Done));
        }
        self.more_to_write = false;
        // Spec §12.3: a flush writes at most the state machine's budget
        // (256 KiB while streams share the connection, 1 MiB while one has
        // it to itself), then the loop serves its commands (a new call's
        // request) and its other connections before it writes more. Without
        // it, a bulk transfer with megabytes of credit held the loop here
        // for as long as those took to write (200-500 µs a megabyte at the
        // 2-5 GB/s loopback writes run at here), and a small message handed
        // to the loop meanwhile waited for all of it. Output is gathered up
        // to half the budget per write: large writes for a bulk transfer,
        // and at most that much ahead of a new small message here.
        let budget = self.conn.write_budget(now);
        let batch = budget / 2;
        let mut written = 0;
        // The state machine said it had nothing more: asking again after a
        // write that emptied the queue would only hear that again.
        let mut exhausted = false;
        loop {
            if let Some(tls) = self.tls.as_mut() {
                if !tls.write_out(&mut self.socket).map_err(Closed::Io)? {
                    return Ok(None);
                }
            }
            if written >= budget {
                self.more_to_write = true;
                return Ok(None);
            }
            if self.tx.is_empty() {
                if exhausted {
                    break;
                }
                while self.tx.len() < batch {
                    if !self.conn.poll_transmit(now, &mut self.tx) {
                        exhausted = true;
                        break;
                    }
                }
                self.drain_events(events);
            }
            if self.tx.is_empty() {
                break;
            }
            if let Some(tls) = self.tls.as_mut() {
                let mut slices = [io::IoSlice::new(&[]); WRITE_SLICES];
                let filled = self.tx.io_slices(&mut slices);
                match tls.write_plaintext(slices.get(..filled).unwrap_or_default()) {
                    // Full before the handshake finished: reads move it on.
                    Ok(0) if !tls.wants_write() => break,
                    Ok(n) => {
                        self.tx.advance(n);
                        written += n;
                    }
                    Err(err) => return Err(Closed::Io(err)),
                }
                continue;
            }
            // One piece (small frames copied together) needs no slices.
            let result = match self.tx.contiguous() {
                Some(bytes) => self.socket.write(bytes),
                None => {
                    let mut slices = [io::IoSlice::new(&[]); WRITE_SLICES];
                    let filled = self.tx.io_slices(&mut slices);
                    self.socket
                        .write_vectored(slices.get(..filled).unwrap_or_default())
                }
            };
            match result {
                Ok(0) => return Err(Closed::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.tx.advance(n);
                    written += n;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(Closed::Io(err)),
            }
        }
        if self.is_idle() {
            self.tx.release_if_idle(KEEP_BUFFER);
        }
        if self.conn.is_closed() || (self.eof && self.tx.is_empty()) {
            if let Some(tls) = self.tls.as_mut() {
                tls.close(&mut self.socket);
            }
            return Ok(Some(Closed::Done));
        }
        Ok(None)
    }

    /// The interest the socket needs now: READABLE unless the state machine
    /// pushes back, WRITABLE only while output is pending (or connecting).
    pub(crate) fn wanted_interest(&self) -> Option<Interest> {
        if self.connecting {
            return Some(Interest::WRITABLE);
        }
        let read = self.conn.wants_read() && !self.eof;
        let write = !self.tx.is_empty() || self.tls.as_ref().is_some_and(|tls| tls.wants_write());
        match (read, write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// Completes a non-blocking connect once the socket is writable (mio's
    /// steps): `Ok(true)` when connected, `Ok(false)` if not yet.
    pub(crate) fn finish_connect(&mut self) -> io::Result<bool> {
        if let Some(err) = self.socket.take_error()? {
            return Err(err);
        }
        match self.socket.peer_addr() {
            Ok(_) => {
                self.connecting = false;
                Ok(true)
            }
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// No stream is active: a moment to give large buffers back (while
    /// streams run, reusing them avoids allocating and faulting in fresh
    /// memory on every read and write).
    fn is_idle(&self) -> bool {
        self.conn.active_streams() == (0, 0)
    }
}

/// Whether the first bytes a plaintext endpoint read open a TLS handshake
/// record (type 0x16, version 3.x): a TLS client on a plaintext port.
fn looks_like_tls(first: &[u8]) -> bool {
    first.first() == Some(&crate::tls::TLS_HANDSHAKE_RECORD) && first.get(1) == Some(&0x03)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use mux_core::frame::Metadata;
    use mux_core::{Config, Side};

    use super::*;

    const MIB: usize = 1024 * 1024;

    /// Hands everything `from` has to send to `to`.
    fn deliver(from: &mut Connection, to: &mut Connection, now: Instant) {
        let mut wire = BytesMut::new();
        while from.poll_transmit(now, &mut wire) {}
        to.handle_read(now, &mut wire).expect("well-formed frames");
    }

    /// A client connection past its handshake with an 8 MiB window to
    /// write into, `total` bytes queued on one stream, and a second stream.
    fn client_with_queued_upload(total: usize, now: Instant) -> Connection {
        let config = Config {
            initial_stream_window: 8 * MIB as u32,
            initial_connection_window: 8 * MIB as u32,
            stream_send_buffer: total,
            ..Config::default()
        };
        let mut client = Connection::new(Side::Client, config.clone(), now);
        let mut server = Connection::new(Side::Server, config, now);
        for _ in 0..4 {
            deliver(&mut client, &mut server, now);
            deliver(&mut server, &mut client, now);
        }
        assert!(client.is_established(), "the handshake completes");
        let id = client.open(Metadata::new(), false).expect("a stream opens");
        // A second stream: the connection is shared, so the budget is the
        // smaller one (spec §12.3), which the socket takes without filling.
        client.open(Metadata::new(), false).expect("a stream opens");
        let accepted = client
            .send(id, Bytes::from(vec![7u8; total]), true, true)
            .expect("the stream takes bytes");
        assert_eq!(accepted, total, "the send buffer holds the whole upload");
        client
    }

    #[test]
    fn one_flush_writes_at_most_its_budget_and_asks_for_another_turn() {
        let total = 4 * MIB;
        let now = Instant::now();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let sender = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (mut receiver, _) = listener.accept().expect("accept");
        sender.set_nonblocking(true).expect("non-blocking");
        let reader = std::thread::spawn(move || {
            let (mut got, mut buf) = (0, vec![0u8; 256 * 1024]);
            while let Ok(n) = receiver.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got += n;
            }
            got
        });
        let socket = mio::net::TcpStream::from_std(sender);
        let mut io = ConnIo::new(socket, client_with_queued_upload(total, now), false, 0, now);
        let mut events = Vec::new();
        // A flush may overshoot its budget by its last write: a batch (half
        // the budget) and the frame that ended it.
        let budget = io.conn.write_budget(now);
        assert_eq!(budget, 256 * 1024, "a shared connection's budget");
        let most = budget + budget / 2 + 64 * 1024 + 9;
        let (mut budget_stops, mut flushes) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while io.conn.queued_send_bytes() + io.tx.len() > 0 {
            assert!(
                Instant::now() < deadline,
                "the upload was not written in 20 s"
            );
            let before = io.conn.queued_send_bytes() + io.tx.len();
            assert!(
                matches!(io.flush(now, &mut events), Ok(None)),
                "the flush fails"
            );
            let moved = before - (io.conn.queued_send_bytes() + io.tx.len());
            assert!(
                moved <= most,
                "one flush wrote {moved} bytes (at most {most})"
            );
            flushes += 1;
            if io.more_to_write {
                budget_stops += 1;
            } else {
                std::thread::yield_now(); // the socket is full: the reader drains it
            }
        }
        assert!(
            budget_stops > 0,
            "no flush of {flushes} stopped at its budget"
        );
        drop(io);
        let got = reader.join().expect("reader");
        assert!(
            got > total,
            "{got} bytes arrived of a {total}-byte upload and its frames"
        );
    }
}
