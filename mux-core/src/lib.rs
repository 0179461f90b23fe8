//! The sans-IO core of mux, a stream-multiplexing protocol over TCP.
//!
//! This crate contains no networking code, starts no threads and never reads
//! a clock: bytes and the current time go in, frames, events and the next
//! timeout come out. The runtime crates (`mux-server`, `mux-client`) own the
//! sockets and the event loop; this crate owns every protocol rule, which makes
//! it deterministic to test and to fuzz.
//!
//! The protocol is specified in `spec/` at the repository root; module docs
//! cite its sections (§).
//!
//! - [`frame`]: parse and encode every frame type (spec §4, §5);
//! - [`preface`]: the connection preface (spec §3);
//! - [`StreamId`] and [`Side`]: stream identifiers (spec §6.1);
//! - [`ErrorCode`] and the error types (spec §8);
//! - [`Utf8Bytes`]: text kept in the bytes it arrived in (topics, event types).
//!
//! # Decoding frames
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use mux_core::frame::{Data, Frame};
//! use mux_core::StreamId;
//!
//! let stream = StreamId::new(1).unwrap();
//! let frame = Frame::Data(Data::new(stream, Bytes::from_static(b"hello")).end_message());
//! let mut wire = BytesMut::new();
//! frame.encode(&mut wire).unwrap();
//!
//! // The decoder is incremental: a partial frame is "not yet", never an error.
//! let mut partial = BytesMut::from(&wire[..4]);
//! assert_eq!(Frame::decode(&mut partial, 16_384), Ok(None));
//! assert_eq!(Frame::decode(&mut wire, 16_384), Ok(Some(frame)));
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(not(fuzzing), warn(missing_docs))]
#![cfg_attr(test, deny(warnings))]
// Panic hygiene: nothing outside tests may unwrap, index or panic on a value
// that could have come off the wire.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod connection;
pub mod error;
pub mod frame;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod output;
pub mod patterns;
pub mod preface;
pub mod rpc;
mod stream_id;
mod utf8_bytes;

pub use connection::{Chunk, ChunkRef, Config, Connection, Event, Stats, StreamState};
pub use error::{
    ConnectionError, EncodeError, ErrorCode, FrameError, Initiator, OpenError, PeerMisbehaved,
    PrefaceError, ReadError, WriteError,
};
pub use output::{FrameSink, Outgoing};
pub use stream_id::{Side, StreamId};
pub use utf8_bytes::{NotUtf8, Utf8Bytes};

#[cfg(test)]
mod tests;
