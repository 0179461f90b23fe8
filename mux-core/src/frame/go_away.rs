//! GOAWAY (type 0x5, spec §5.6): starts a graceful or immediate shutdown.
//!
//! ```text
//! +-+-------------------------------------------------------------+
//! |R|                  Last Stream ID (31)                        |
//! +-+-------------------------------------------------------------+
//! |                      Error Code (32)                          |
//! +---------------------------------------------------------------+
//! |                  Debug Data (Length - 8) ...                  |
//! +---------------------------------------------------------------+
//! ```

use bytes::Bytes;

use crate::error::ErrorCode;
use crate::stream_id::StreamId;

/// A GOAWAY frame (always on stream 0).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct GoAway {
    /// The highest peer-initiated stream the sender has processed or may still process.
    pub last_stream: StreamId,
    /// `NO_ERROR` for a graceful shutdown, otherwise why the connection ends.
    pub code: ErrorCode,
    /// Diagnostic bytes for humans; carries no protocol meaning.
    #[cfg_attr(any(test, feature = "arbitrary"), arbitrary(with = super::arbitrary_bytes))]
    pub debug: Bytes,
}

impl GoAway {
    /// Length of the fixed part of the payload.
    pub(super) const FIXED_LEN: usize = 8;
}
