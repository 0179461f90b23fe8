//! mux-server: serves mux connections with routes, on hand-written `mio`
//! event loops (one per core by default, each owning its connections; the
//! kernel spreads accepts over them with `SO_REUSEPORT`).
//!
//! ```no_run
//! use mux_server::{Response, Server};
//!
//! let server = Server::builder()
//!     .bind("127.0.0.1:0".parse().unwrap())
//!     .route("echo", |req| Ok(Response::ok(req.into_body())))   // inline, on the loop
//!     .route_blocking("report", |_req| Ok(Response::ok("done")))   // on the worker pool
//!     .start()
//!     .unwrap();
//! println!("listening on {}", server.local_addr());
//! server.shutdown_gracefully(std::time::Duration::from_secs(5)).unwrap();
//! ```
//!
//! Handlers declared with [`ServerBuilder::route`] run on the loop thread:
//! a small request is read, handled and answered with no thread hand-off.
//! They must not block. Handlers that may block go through
//! [`ServerBuilder::route_blocking`] and run on a bounded worker pool; when
//! its queue is full, requests get `503` at once instead of queueing.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod app;
pub mod auth;
pub mod authz;
pub mod backplane;
mod body_stream;
pub mod broker;
mod budget;
mod command;
pub mod demo;
pub mod event_log;
pub mod event_store;
mod gate;
mod handler;
pub mod http;
mod hub;
mod metrics;
mod replies;
mod request;
mod reserved;
mod secrets;
mod server;
pub mod sessions;
mod subscriptions;
mod tasks;
mod workers;

pub use body_stream::{BodyClosed, BodyWriter};
pub use broker::{
    Accepted, Acknowledge, Arrival, Broker, BrokerError, MemoryBroker, SlowSubscriber,
};
pub use event_store::{EventStore, MemoryEvents, StoreError};
pub use http::HttpConfig;
pub use mux_core as core;
pub use mux_core::rpc::Status;
pub use mux_runtime::{LoopConfig, SocketOptions, SpinPolicy, TlsServer, TlsSetupError};
pub use request::{BodySink, BodySource, HandlerError, HandlerResult, Request, Response};
pub use server::{
    PublishError, Server, ServerBuilder, ServerHandle, DEFAULT_ADDR, DEFAULT_CONNECTION_MEMORY,
    DEFAULT_FEED_MAX_WAIT, DEFAULT_FEED_QUEUE_BYTES, DEFAULT_MAX_REQUEST_BODY,
    DEFAULT_SERVER_MEMORY,
};
pub use sessions::{MemoryStore, SessionHandle, SessionStore};
