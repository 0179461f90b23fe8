//! DATA (type 0x0, spec §5.1): application bytes on a stream.
//!
//! ```text
//! +---------------------------------------------------------------+
//! |                        Data (Length) ...                      |
//! +---------------------------------------------------------------+
//! Flags: END_STREAM (0x1), END_MESSAGE (0x2)
//! ```

use bytes::Bytes;

use crate::stream_id::StreamId;

/// A DATA frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Data {
    /// The stream; never 0.
    pub stream: StreamId,
    /// The last byte of this frame ends a message (spec §7). Empty payload with
    /// this flag ends a message whose bytes came earlier, or an empty message.
    pub end_message: bool,
    /// The sender will send nothing more on this stream (spec §6.2).
    pub end_stream: bool,
    /// The bytes; a zero-copy slice of the read buffer when decoded.
    #[cfg_attr(any(test, feature = "arbitrary"), arbitrary(with = super::arbitrary_bytes))]
    pub payload: Bytes,
}

impl Data {
    /// END_STREAM flag bit.
    pub const END_STREAM: u8 = 0x1;
    /// END_MESSAGE flag bit.
    pub const END_MESSAGE: u8 = 0x2;

    /// A DATA frame with no flags set.
    pub fn new(stream: StreamId, payload: Bytes) -> Self {
        Self {
            stream,
            end_message: false,
            end_stream: false,
            payload,
        }
    }

    /// The same frame with END_MESSAGE set.
    pub fn end_message(mut self) -> Self {
        self.end_message = true;
        self
    }

    /// The same frame with END_STREAM set.
    pub fn end_stream(mut self) -> Self {
        self.end_stream = true;
        self
    }

    pub(super) fn decode(stream: StreamId, flags: u8, payload: Bytes) -> Self {
        Self {
            stream,
            end_message: flags & Self::END_MESSAGE != 0,
            end_stream: flags & Self::END_STREAM != 0,
            payload,
        }
    }

    pub(super) fn flags(&self) -> u8 {
        (u8::from(self.end_stream) * Self::END_STREAM)
            | (u8::from(self.end_message) * Self::END_MESSAGE)
    }
}
