//! Socket set-up through `socket2`: listeners and outgoing connections with
//! the options mux wants, handed to mio as non-blocking sockets.
//!
//! Implements no rule of the spec; the options' reasons are at each one.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

/// Socket options for every mux connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketOptions {
    /// TCP_NODELAY: on, because mux batches frames itself; Nagle would only add latency.
    pub nodelay: bool,
    /// SO_RCVBUF; `None` (the default) leaves the kernel's auto-tuning alone.
    pub buffer_size: Option<usize>,
    /// SO_SNDBUF; `None` (the default) leaves the kernel's auto-tuning alone.
    /// Small buffers (64 KiB send, 128 KiB receive) shorten the queue a small
    /// message waits in behind a bulk transfer on the same connection, but
    /// cap throughput at buffer / RTT on real networks, so they are not the
    /// default: the protocol bounds that queue with its windows instead
    /// (spec §9.6.9).
    pub send_buffer: Option<usize>,
    /// TCP keepalive idle time, for dead peers the protocol cannot see (a
    /// peer whose host vanished). 60 s; mux's own PING keepalive is finer.
    pub tcp_keepalive: Option<Duration>,
    /// The listen backlog. 1,024: bursts of connects at start-up of many clients.
    pub backlog: i32,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            nodelay: true,
            buffer_size: None,
            send_buffer: None,
            tcp_keepalive: Some(Duration::from_secs(60)),
            backlog: 1024,
        }
    }
}

fn apply(socket: SockRef<'_>, options: &SocketOptions) -> io::Result<()> {
    socket.set_nodelay(options.nodelay)?;
    if let Some(size) = options.buffer_size {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(size) = options.send_buffer {
        socket.set_send_buffer_size(size)?;
    }
    if let Some(idle) = options.tcp_keepalive {
        socket.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle))?;
    }
    Ok(())
}

/// A non-blocking listener on `addr`. With `reuse_port`, several listeners
/// (one per loop thread) share the port and the kernel spreads connections
/// over them.
pub fn listen(
    addr: SocketAddr,
    reuse_port: bool,
    options: &SocketOptions,
) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(options.backlog)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// Starts a non-blocking connect to `addr` (mio's steps: the caller registers
/// the stream for WRITABLE and checks `take_error` and `peer_addr` when it
/// fires).
pub fn connect(addr: SocketAddr, options: &SocketOptions) -> io::Result<mio::net::TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    apply(SockRef::from(&socket), options)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(err)
            if err.raw_os_error() == Some(libc_einprogress())
                || err.kind() == io::ErrorKind::WouldBlock => {}
        Err(err) => return Err(err),
    }
    Ok(mio::net::TcpStream::from_std(socket.into()))
}

/// Applies the options to an accepted connection.
pub fn configure(stream: &mio::net::TcpStream, options: &SocketOptions) -> io::Result<()> {
    apply(SockRef::from(stream), options)
}

/// EINPROGRESS on Linux (115); a non-blocking connect reports it while the
/// handshake runs.
const fn libc_einprogress() -> i32 {
    115
}
