//! Events the connection reports to the application (drained with
//! `Connection::poll_event`).

use std::time::Duration;

use bytes::Bytes;

use crate::error::{ConnectionError, ErrorCode};
use crate::frame::Metadata;
use crate::stream_id::StreamId;

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Both prefaces were exchanged and the peer's first SETTINGS arrived.
    Connected,
    /// The peer opened a stream with OPEN (on a server).
    StreamOpened {
        /// The new stream.
        id: StreamId,
        /// Its metadata.
        metadata: Metadata,
        /// The peer will send no data on it.
        end_stream: bool,
    },
    /// The server pushed a stream (on a client, spec §10).
    PushReceived {
        /// The pushed stream.
        id: StreamId,
        /// The request it is tied to, or `None` for an unsolicited push.
        associated: Option<StreamId>,
        /// Its metadata.
        metadata: Metadata,
        /// The push has no data: its metadata is all there is.
        end_stream: bool,
    },
    /// Data, a message boundary or the end of the stream can be read.
    Readable {
        /// The stream.
        id: StreamId,
    },
    /// A stream whose writes were refused can accept data again.
    Writable {
        /// The stream.
        id: StreamId,
    },
    /// The peer reset a stream, or refused it (REFUSED_STREAM: it may be retried).
    StreamReset {
        /// The stream; it no longer exists.
        id: StreamId,
        /// The peer's code.
        code: ErrorCode,
    },
    /// The peer acknowledged our SETTINGS.
    SettingsAcked,
    /// A PING was answered.
    PingAcked {
        /// This round trip.
        rtt: Duration,
    },
    /// The peer sent GOAWAY (spec §11.3).
    GoAway {
        /// The highest of our streams the peer will process.
        last_stream: StreamId,
        /// `NO_ERROR` for a graceful shutdown.
        code: ErrorCode,
        /// The peer's diagnostic text.
        debug: Bytes,
    },
    /// The connection has ended; `None` for a clean, graceful end. The
    /// runtime flushes `poll_transmit` and closes the transport.
    Closed {
        /// Why, unless it ended cleanly.
        error: Option<ConnectionError>,
    },
}
