//! OPEN (type 0x1, spec §5.2): opens a client-initiated stream and carries its metadata.
//!
//! ```text
//! +---------------------------------------------------------------+
//! |                  Metadata Block (Length) ...                  |
//! +---------------------------------------------------------------+
//! Flags: END_STREAM (0x1)
//! ```

use bytes::Bytes;

use super::metadata::Metadata;
use crate::error::FrameError;
use crate::stream_id::StreamId;

/// An OPEN frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Open {
    /// The stream being opened; odd (client-initiated) on a valid connection.
    pub stream: StreamId,
    /// The opener sends no DATA on this stream.
    pub end_stream: bool,
    /// The stream's metadata.
    pub metadata: Metadata,
}

impl Open {
    /// END_STREAM flag bit.
    pub const END_STREAM: u8 = 0x1;

    pub(super) fn decode(stream: StreamId, flags: u8, payload: Bytes) -> Result<Self, FrameError> {
        Ok(Self {
            stream,
            end_stream: flags & Self::END_STREAM != 0,
            metadata: Metadata::decode(payload)?,
        })
    }
}
