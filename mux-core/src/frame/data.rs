//! DATA (type 0x0, spec §5.1): application bytes on a stream.
//!
//! ```text
//! +---------------------------------------------------------------+
//! |                        Data (Length) ...                      |
//! +---------------------------------------------------------------+
//! Flags: END_STREAM (0x1), END_MESSAGE (0x2)
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::header::{FrameType, Header, HEADER_LEN};
use crate::error::EncodeError;
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
        let (end_message, end_stream) = flags_of(flags);
        Self {
            stream,
            end_message,
            end_stream,
            payload,
        }
    }

    pub(super) fn flags(&self) -> u8 {
        flag_bits(self.end_message, self.end_stream)
    }
}

fn flag_bits(end_message: bool, end_stream: bool) -> u8 {
    (u8::from(end_stream) * Data::END_STREAM) | (u8::from(end_message) * Data::END_MESSAGE)
}

/// END_MESSAGE and END_STREAM from a DATA frame's flags (other bits are
/// ignored on receipt, spec §4.1).
fn flags_of(flags: u8) -> (bool, bool) {
    (
        flags & Data::END_MESSAGE != 0,
        flags & Data::END_STREAM != 0,
    )
}

/// A DATA frame read in place: its payload borrowed from the buffer it
/// arrived in, for a receiver that copies the bytes anyway (see
/// [`Frame::peek`](super::Frame::peek)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataRef<'a> {
    /// The stream; never 0.
    pub stream: StreamId,
    /// As [`Data::end_message`].
    pub end_message: bool,
    /// As [`Data::end_stream`].
    pub end_stream: bool,
    /// The bytes.
    pub payload: &'a [u8],
}

impl<'a> DataRef<'a> {
    /// The DATA frame at the front of `frame`, whose checked `header`
    /// [`Frame::peek`](super::Frame::peek) returned; `None` for a frame of
    /// another type.
    pub fn read(header: &Header, frame: &'a [u8]) -> Option<Self> {
        if header.ty != FrameType::DATA {
            return None;
        }
        let payload = frame.get(HEADER_LEN..header.frame_len())?;
        let (end_message, end_stream) = flags_of(header.flags);
        Some(Self {
            stream: header.stream,
            end_message,
            end_stream,
            payload,
        })
    }

    /// Appends the frame to `dst`, copying the payload (see
    /// [`Frame::encode`](super::Frame::encode)).
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let header = Header::for_payload(
            FrameType::DATA,
            flag_bits(self.end_message, self.end_stream),
            self.stream,
            self.payload.len(),
        )?;
        dst.reserve(header.frame_len());
        header.encode(dst);
        dst.put_slice(self.payload);
        Ok(())
    }
}
