//! mux-client: calls a mux server over a pool of connections driven by a
//! hand-written `mio` event loop on a thread of its own.
//!
//! Every call exists in three styles, so that callers need no particular
//! async runtime:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // An IP or a host name and port, or a list of them to fail over between.
//! let client = mux_client::Client::connect("localhost:7878")?;
//! let reply = client.call("echo", "hi")?;                      // blocks
//! let call = client.call_async("echo", "hi");                   // a std Future...
//! let reply = call.wait()?;                                     // ...or a handle to wait on or poll
//! client.call_with_callback(mux_client::CallRequest::new("echo", "hi"), |result| {
//!     println!("{result:?}");                                   // runs on the loop thread
//! });
//! # Ok(()) }
//! ```
//!
//! Dropping a [`Call`] before it completes cancels it: its stream is reset
//! with `CANCEL`. Calls carry an optional deadline, sent to the server and
//! enforced here. When a connection ends, the pool reconnects with
//! exponential backoff (resolving host names anew, failing over along an
//! address list); calls the server refused without processing
//! (`REFUSED_STREAM`) are retried.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod app;
mod call;
mod client;
mod command;
mod completion;
mod credit;
mod error;
mod events;
mod inbox;
mod message_stream;
mod polling;
mod pool;
mod pubsub;
mod reader;
mod reopen;
mod reply;
mod session;

pub use mux_core as core;
pub use mux_core::rpc::Status;
pub use mux_runtime::{
    Address, AddressError, Addresses, IntoAddresses, LoopConfig, SocketOptions, SpinPolicy,
    TlsClient, TlsSetupError,
};

pub use call::{Call, CallRequest, Upload};
pub use client::{Client, ClientBuilder};
pub use command::PushMessage;
pub use error::CallError;
pub use events::{Event, EventStream, Resume};
pub use message_stream::{MessageStream, NextMessage};
pub use polling::{LongPoller, Poller};
pub use pubsub::{Delivery, Publisher, Subscription};
pub use reply::Reply;
pub use session::Session;
