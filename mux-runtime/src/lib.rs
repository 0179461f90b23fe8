//! The runtime shared by `mux-server` and `mux-client`: a hand-written,
//! readiness-driven event loop on `mio` that drives `mux-core` connections
//! over real sockets.
//!
//! - [`event_loop`]: one thread's loop: `Poll`, a slab of connections keyed
//!   by `Token`, an optional listener, commands over `crossbeam-channel` plus
//!   a `mio::Waker`, and a timer heap. Application logic plugs in as an [`App`].
//! - [`conn_io`]: one connection's socket I/O (read until `WouldBlock`, keep
//!   unwritten output, interest recomputed after every event).
//! - [`timer`]: the deadline heap.
//! - [`socket`]: socket options through `socket2`.
//! - [`read_buffer`]: a connection's input buffer, read into directly during bulk transfers.
//! - [`outbox`], [`message`] and [`stream_map`]: writing pieces under a
//!   stream's send buffer, reassembling messages and bodies from chunks, and
//!   per-stream state cleaned up with its connection; used by both sides.
//!
//! No protocol rule lives here: every one is in `mux-core`.
//!
//! # Bounded queues
//!
//! Every queue between threads is bounded: the command channel by the size
//! given to [`EventLoop::new`]; protocol buffers by `mux_core::Config`; a
//! connection's unwritten output by one write batch plus what the state
//! machine holds (whose reading stops while its answers are unwritten).

// `unsafe` in two places, each allowed where it is: a system call
// (`event_loop::scheduling`), and reads into uninitialised memory
// (`read_buffer::RecvUninit`, whose contract the socket types meet).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod backoff;
pub mod conn_io;
pub mod event_loop;
pub mod message;
pub mod outbox;
pub mod read_buffer;
pub mod socket;
pub mod stream_map;
pub mod timer;
pub mod tls;

pub use address::{resolve_in_background, Address, AddressError, Addresses, IntoAddresses};
pub use backoff::Backoff;
/// The error of [`LoopHandle::try_send`]: the queue is full, or the loop gone.
pub use crossbeam_channel::TrySendError;
pub use event_loop::{
    App, Balance, BalanceSeat, ConnKey, Ctx, EventLoop, LoopConfig, LoopError, LoopHandle,
    PlainKey, SendCommand, SendPoll, SpinPolicy, ThreadScheduling,
};
pub use message::{BodyBuffer, MessageReader, TooLarge};
pub use outbox::{Outbox, Piece};
pub use socket::SocketOptions;
pub use stream_map::StreamMap;
pub use timer::{deadline_after, deadline_within, later_by};
pub use tls::{certificate_names, TlsClient, TlsServer, TlsSetupError};

/// Wraps a non-blocking std listener for an event loop.
pub fn mio_listener(listener: std::net::TcpListener) -> mio::net::TcpListener {
    mio::net::TcpListener::from_std(listener)
}
