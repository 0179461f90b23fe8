//! PUSH (type 0x7, spec §5.8): opens a server-initiated stream toward the client.
//!
//! The frame's stream ID is the promised (new, even) stream.
//!
//! ```text
//! +-+-------------------------------------------------------------+
//! |R|               Associated Stream ID (31)                     |
//! +-+-------------------------------------------------------------+
//! |                  Metadata Block (Length - 4) ...              |
//! +---------------------------------------------------------------+
//! Flags: END_STREAM (0x1)
//! ```

use bytes::{Buf, Bytes};

use super::metadata::Metadata;
use crate::error::FrameError;
use crate::stream_id::StreamId;

/// A PUSH frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Push {
    /// The stream being opened by the server; even and non-zero.
    pub promised: StreamId,
    /// The client stream this push belongs to, or stream 0 for an unsolicited push.
    pub associated: StreamId,
    /// The server sends no DATA on the pushed stream.
    pub end_stream: bool,
    /// The pushed stream's metadata.
    pub metadata: Metadata,
}

impl Push {
    /// END_STREAM flag bit.
    pub const END_STREAM: u8 = 0x1;
    /// Length of the fixed part of the payload.
    pub(super) const FIXED_LEN: usize = 4;

    pub(super) fn decode(
        stream: StreamId,
        flags: u8,
        mut payload: Bytes,
    ) -> Result<Self, FrameError> {
        if payload.len() < Self::FIXED_LEN {
            return Err(FrameError::BadLength {
                frame: "PUSH",
                len: payload.len() as u32,
            });
        }
        let associated = StreamId::new(payload.get_u32()).ok_or(FrameError::ReservedBit)?;
        Ok(Self {
            promised: stream,
            associated,
            end_stream: flags & Self::END_STREAM != 0,
            metadata: Metadata::decode(payload)?,
        })
    }
}
