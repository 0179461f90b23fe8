//! RESET (type 0x2, spec §5.3): abruptly ends a stream in both directions.
//!
//! ```text
//! +---------------------------------------------------------------+
//! |                        Error Code (32)                        |
//! +---------------------------------------------------------------+
//! ```

use crate::error::ErrorCode;
use crate::stream_id::StreamId;

/// A RESET frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Reset {
    /// The stream; never 0.
    pub stream: StreamId,
    /// Why the stream was reset.
    pub code: ErrorCode,
}

impl Reset {
    /// Exact payload length.
    pub(super) const LEN: usize = 4;
}
