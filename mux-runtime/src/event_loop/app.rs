//! What an application plugs into an event loop: the [`App`] callbacks and
//! the errors the loop reports when a connection ends.

use std::io;

use mux_core::{ConnectionError, Event};

use super::context::Ctx;
use super::keys::{ConnKey, PlainKey};

/// Application logic run on the loop thread, or on a sender's thread that
/// serves a command while the loop sleeps ([`LoopHandle::try_serve`](super::LoopHandle::try_serve)),
/// under the lock of the loop's state. Every callback must return quickly:
/// it runs between socket operations of all this loop's connections.
pub trait App {
    /// What other threads send to the loop.
    type Command: Send + 'static;

    /// Called once when the loop starts, before any I/O.
    fn on_start(&mut self, _ctx: &mut Ctx<'_>) {}

    /// A protocol event of connection `key`.
    fn on_event(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, event: Event);

    /// A connection was accepted (servers) or connected (clients).
    fn on_open(&mut self, _ctx: &mut Ctx<'_>, _key: ConnKey) {}

    /// A connection's transport is gone; `error` says why, `None` if it ended cleanly.
    fn on_closed(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, error: Option<LoopError>);

    /// A command from another thread.
    fn on_command(&mut self, ctx: &mut Ctx<'_>, command: Self::Command);

    /// The commands waiting when the loop looked were all served (up to a
    /// bound per pass): work that commands queued up can be done now as a
    /// batch, before the sockets are served and flushed.
    fn on_commands_served(&mut self, _ctx: &mut Ctx<'_>) {}

    /// An application timer set with [`Ctx::set_timer`] is due.
    fn on_timer(&mut self, _ctx: &mut Ctx<'_>, _token: u64) {}

    /// The loop served every ready socket, command and timer of this pass
    /// and is about to poll again: hand-offs to other threads deferred to
    /// here wake them once, without a woken thread preempting the pass.
    fn on_pass_end(&mut self, _ctx: &mut Ctx<'_>) {}

    /// Whether the loop should stop (checked after every iteration).
    fn is_done(&self, ctx: &Ctx<'_>) -> bool;

    /// A plain socket became readable and/or writable (edge-triggered: read
    /// or write until `WouldBlock`, or remember to come back).
    fn on_plain(&mut self, _ctx: &mut Ctx<'_>, _key: PlainKey, _readable: bool, _writable: bool) {}

    /// A plain listener (from [`Ctx::listen_plain`]) accepted `key`.
    fn on_plain_accept(&mut self, _ctx: &mut Ctx<'_>, _listener: usize, _key: PlainKey) {}
}

/// Why a connection ended, as the loop reports it.
#[derive(Debug)]
pub enum LoopError {
    /// The protocol ended it with an error.
    Protocol(ConnectionError),
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for LoopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Protocol(err) => write!(f, "{err}"),
            Self::Io(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for LoopError {}

impl From<LoopError> for io::Error {
    fn from(err: LoopError) -> Self {
        match err {
            LoopError::Io(err) => err,
            LoopError::Protocol(err) => Self::new(io::ErrorKind::ConnectionAborted, err),
        }
    }
}
