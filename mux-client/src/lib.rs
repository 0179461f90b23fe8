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
//! # From async code
//!
//! Every operation also has a form that never blocks the caller's thread,
//! with std `Future`s and the `futures-core` `Stream` / `futures-io`
//! `AsyncWrite` traits, so it runs under any executor (the client's own
//! loop thread does the I/O; a full command queue makes a future wait, not
//! the thread):
//!
//! ```no_run
//! use std::future::poll_fn;
//! use std::pin::Pin;
//!
//! use futures_core::Stream;
//! use futures_io::AsyncWrite;
//! use mux_client::{CallRequest, Client, Resume};
//!
//! /// The next item of any `Stream` (or use your executor's `StreamExt`).
//! async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
//!     poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
//! }
//!
//! async fn tour() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = Client::connect_async("localhost:7878,10.0.0.2:7878").await?;
//!     let reply = client.call_async("echo", "hi").await?;
//!
//!     let mut news = client.subscribe_async("news.>").await?; // a Stream of deliveries
//!     client.publish_async("news.today", "hello").await?;
//!     let delivery = next(&mut news).await;
//!
//!     let mut events = client.events_async("news", Resume::After(0)).await?; // a Stream
//!     let event = next(&mut events).await;
//!
//!     let mut upload = client.open_upload(CallRequest::new("upload", "").length(3));
//!     poll_fn(|cx| Pin::new(&mut upload).poll_write(cx, b"abc")).await?; // AsyncWrite
//!     let digest = upload.finish_async().await?;
//!
//!     let session = client.session_async().await?;
//!     let count = session.call_async("counter", "").await?;
//!     let mut feed = session.events_async(0).await?; // a Stream
//!
//!     let mut jobs = client.long_poller("jobs", 0, std::time::Duration::from_secs(30));
//!     let entries = jobs.poll_async().await?; // held by the server, not a thread
//!     let rtt = client.ping_async().await?;
//!     Ok(())
//! }
//! ```
//!
//! # On the caller's thread
//!
//! [`DirectClient`] has no loop thread: the thread that calls writes the
//! request and reads the answer itself, one call at a time over one
//! connection, which saves a small call the two thread hops through the
//! loop. Its uploads, publisher and subscription are written and read on
//! the caller's thread too:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mux_client::{CallRequest, DirectClient};
//!
//! let mut client = DirectClient::connect("localhost:7878")?;
//! let reply = client.call("echo", "hi")?;
//! let mut upload = client.upload(CallRequest::new("upload", ""))?;
//! upload.write("abc")?;                             // on the wire when it returns
//! let digest = upload.finish()?;
//!
//! let mut news = DirectClient::connect("localhost:7878")?.subscribe("news.>")?;
//! let mut publisher = DirectClient::connect("localhost:7878")?.publisher()?;
//! publisher.publish("news.today", "hello")?;
//! let delivery = news.next_delivery()?;
//! # Ok(()) }
//! ```
//!
//! Dropping a [`Call`] before it completes cancels it: its stream is reset
//! with `CANCEL`. Calls carry an optional deadline, sent to the server and
//! enforced here. Any timeout too long to be a point in time
//! (`Duration::MAX`) means no deadline. When a connection ends, the pool reconnects with
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
mod deliveries;
mod direct;
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
pub use mux_core::Utf8Bytes;
pub use mux_runtime::{
    Address, AddressError, Addresses, IntoAddresses, LoopConfig, SocketOptions, SpinPolicy,
    ThreadScheduling, TlsClient, TlsSetupError,
};

pub use call::{Call, CallRequest, Upload};
pub use client::{Client, ClientBuilder};
pub use command::PushMessage;
pub use direct::{
    DirectBuilder, DirectClient, DirectPublisher, DirectStream, DirectSubscription, DirectUpload,
};
pub use error::CallError;
pub use events::{Event, EventStream, Resume};
pub use message_stream::{MessageStream, NextMessage};
pub use polling::{LongPoller, Poller};
pub use pubsub::{Delivery, DeliveryRef, Publisher, Subscription};
pub use reply::Reply;
pub use session::Session;
