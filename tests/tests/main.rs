//! Integration tests over real loopback sockets: one test binary with a
//! module per area, so that it links once.

mod addresses;
mod async_client;
mod async_handlers;
mod attacks;
mod auth;
mod backplane;
mod body_streams;
mod browser;
mod conformance;
mod direct;
mod dissector;
mod http_edge;
mod integrity;
mod limits;
mod long_link;
mod memory;
mod patterns;
mod rpc;
mod runtime;
mod shutdown;
mod sidecar;
mod timeouts;
mod tls;
