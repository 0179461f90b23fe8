//! One tunnelled connection: bytes copied both ways between a plain TCP
//! socket and a mux stream, written once for both sides of the sidecar.
//!
//! Backpressure is end to end: at most one buffer per direction is held
//! here. When the stream will not take more, the TCP socket is not read
//! (the kernel's window then slows the TCP peer); when the TCP socket will
//! not take more, the stream is not read (mux flow control then slows the
//! far side). Half-close travels both ways: EOF from TCP ends the stream's
//! direction, the stream's END_STREAM shuts the socket's write side.

use std::io;
use std::time::Instant;

use bytes::Bytes;
use mux_core::{ErrorCode, StreamId};
use mux_runtime::{ConnKey, Ctx, PlainKey};

/// Bytes read from the TCP socket per read.
const CHUNK: usize = 64 * 1024;

/// How a pipe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Both directions finished.
    Clean,
    /// Something failed; the other side was reset.
    Failed(String),
}

/// A tunnelled connection.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) plain: PlainKey,
    pub(crate) conn: ConnKey,
    pub(crate) stream: StreamId,
    pub(crate) name: String,
    pub(crate) opened: Instant,
    /// The plain socket's connect has not completed (remote side).
    pub(crate) connecting: bool,
    /// TCP → stream: bytes read but not yet accepted by the stream.
    up_pending: Option<Bytes>,
    /// TCP reached end of file (and the stream was finished after the pending bytes).
    plain_eof: bool,
    /// Stream → TCP: bytes read but not yet written to the socket.
    down_pending: Option<Bytes>,
    /// The stream's far side ended its direction.
    stream_fin: bool,
    down_shut: bool,
    /// Bytes from the plain socket into the stream.
    up_bytes: u64,
    /// Bytes from the stream out to the plain socket.
    down_bytes: u64,
    /// This pipe is on the remote side: its plain socket is the upstream.
    on_remote: bool,
}

impl Pipe {
    pub(crate) fn new(
        plain: PlainKey,
        conn: ConnKey,
        stream: StreamId,
        name: String,
        connecting: bool,
    ) -> Self {
        Self {
            plain,
            conn,
            stream,
            name,
            opened: Instant::now(),
            connecting,
            up_pending: None,
            plain_eof: false,
            down_pending: None,
            stream_fin: false,
            down_shut: false,
            up_bytes: 0,
            down_bytes: 0,
            on_remote: connecting,
        }
    }

    /// Bytes the tunnel carried from its client toward its upstream, and
    /// back, named the same way on both sides (on the remote side the plain
    /// socket is the upstream, so its directions are the other way round).
    pub(crate) fn client_bytes(&self) -> (u64, u64) {
        if self.on_remote {
            (self.down_bytes, self.up_bytes)
        } else {
            (self.up_bytes, self.down_bytes)
        }
    }

    /// Copies TCP → stream until one side pushes back.
    pub(crate) fn pump_up(&mut self, ctx: &mut Ctx<'_>, buf: &mut [u8]) -> Result<(), Ending> {
        if self.connecting {
            return Ok(());
        }
        loop {
            if let Some(mut pending) = self.up_pending.take() {
                let Some(conn) = ctx.conn(self.conn) else {
                    return Err(Ending::Failed("mux connection gone".into()));
                };
                let accepted = conn
                    .send_front(self.stream, &mut pending, false, false)
                    .map_err(|e| Ending::Failed(format!("stream: {e}")))?;
                self.up_bytes += accepted as u64;
                if !pending.is_empty() {
                    self.up_pending = Some(pending);
                    return Ok(()); // `Writable` brings us back
                }
            }
            if self.plain_eof {
                return Ok(());
            }
            match ctx.plain_read(self.plain, buf) {
                Ok(0) => {
                    self.plain_eof = true;
                    if let Some(conn) = ctx.conn(self.conn) {
                        let _ = conn.finish(self.stream);
                    }
                    return Ok(());
                }
                Ok(n) => {
                    self.up_pending = Some(Bytes::copy_from_slice(buf.get(..n).unwrap_or_default()))
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(Ending::Failed(format!("tcp read: {err}"))),
            }
        }
    }

    /// Copies stream → TCP until one side pushes back.
    pub(crate) fn pump_down(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Ending> {
        if self.connecting {
            return Ok(());
        }
        loop {
            if let Some(mut pending) = self.down_pending.take() {
                while !pending.is_empty() {
                    match ctx.plain_write(self.plain, &pending) {
                        Ok(0) => return Err(Ending::Failed("tcp write returned 0".into())),
                        Ok(n) => {
                            self.down_bytes += n as u64;
                            let _ = pending.split_to(n);
                        }
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                            self.down_pending = Some(pending);
                            return Ok(()); // the socket's writable edge brings us back
                        }
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        Err(err) => return Err(Ending::Failed(format!("tcp write: {err}"))),
                    }
                }
            }
            if self.stream_fin {
                if !self.down_shut {
                    self.down_shut = true;
                    let _ = ctx.plain_shutdown_write(self.plain);
                }
                return Ok(());
            }
            let Some(conn) = ctx.conn(self.conn) else {
                return Err(Ending::Failed("mux connection gone".into()));
            };
            match conn.read(self.stream, CHUNK) {
                Ok(Some(chunk)) => {
                    self.stream_fin = chunk.fin;
                    if !chunk.bytes.is_empty() {
                        self.down_pending = Some(chunk.bytes);
                    }
                }
                Ok(None) | Err(_) => return Ok(()),
            }
        }
    }

    /// Both directions are done.
    pub(crate) fn is_finished(&self) -> bool {
        self.plain_eof && self.up_pending.is_none() && self.down_shut
    }

    /// Ends the pipe after a failure on one side: the other side is reset.
    pub(crate) fn abort(&self, ctx: &mut Ctx<'_>, code: ErrorCode) {
        if let Some(conn) = ctx.conn(self.conn) {
            let _ = conn.reset(self.stream, code);
        }
        ctx.plain_close(self.plain, true);
    }
}
