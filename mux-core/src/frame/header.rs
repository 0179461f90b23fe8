//! The fixed 9-byte frame header (spec §4.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-----------------------------------------------+---------------+
//! |                 Length (24)                   |   Type (8)    |
//! +---------------+-+-------------------------------------------- -+
//! |   Flags (8)   |R|          Stream Identifier (31)             |
//! +---------------+-+---------------------------------------------+
//! |    Stream Identifier (cont.)  |
//! +-------------------------------+
//! ```

use bytes::BufMut;

use crate::error::{EncodeError, FrameError};
use crate::stream_id::StreamId;

/// Length of the frame header in bytes.
pub const HEADER_LEN: usize = 9;

/// The largest payload length the 24-bit length field can express.
pub const MAX_LENGTH_FIELD: u32 = (1 << 24) - 1;

/// A frame type (spec §5). The space is open: unknown types are ignored by
/// receivers (spec §4.4), so this is a newtype with associated constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameType(pub u8);

impl FrameType {
    /// DATA (spec §5.1).
    pub const DATA: Self = Self(0x0);
    /// OPEN (spec §5.2).
    pub const OPEN: Self = Self(0x1);
    /// RESET (spec §5.3).
    pub const RESET: Self = Self(0x2);
    /// SETTINGS (spec §5.4).
    pub const SETTINGS: Self = Self(0x3);
    /// PING (spec §5.5).
    pub const PING: Self = Self(0x4);
    /// GOAWAY (spec §5.6).
    pub const GOAWAY: Self = Self(0x5);
    /// WINDOW_UPDATE (spec §5.7).
    pub const WINDOW_UPDATE: Self = Self(0x6);
    /// PUSH (spec §5.8).
    pub const PUSH: Self = Self(0x7);
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload length in bytes, not counting the header.
    pub len: u32,
    /// Frame type.
    pub ty: FrameType,
    /// Type-specific flags; bits a type does not define are ignored on receipt.
    pub flags: u8,
    /// The stream the frame belongs to; 0 for the connection.
    pub stream: StreamId,
}

impl Header {
    /// Decodes a header from exactly [`HEADER_LEN`] bytes.
    ///
    /// The fixed-size array makes every index below provably in bounds.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Self, FrameError> {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
        let raw_stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        // Spec §4.1: "the R bit MUST be sent as 0; a receiver MUST treat a set R bit
        // as a connection error of type PROTOCOL_ERROR."
        let stream = StreamId::new(raw_stream).ok_or(FrameError::ReservedBit)?;
        Ok(Self {
            len,
            ty: FrameType(bytes[3]),
            flags: bytes[4],
            stream,
        })
    }

    /// The header of a frame whose payload is `len` bytes, unless the
    /// length field cannot hold it (spec §4.1).
    pub fn for_payload(
        ty: FrameType,
        flags: u8,
        stream: StreamId,
        len: usize,
    ) -> Result<Self, EncodeError> {
        match u32::try_from(len) {
            Ok(field) if field <= MAX_LENGTH_FIELD => Ok(Self {
                len: field,
                ty,
                flags,
                stream,
            }),
            _ => Err(EncodeError::TooLong(len)),
        }
    }

    /// The whole frame's length on the wire: the header and its payload.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.len as usize
    }

    /// Appends the header's 9 bytes to `dst`.
    ///
    /// `len` must not exceed [`MAX_LENGTH_FIELD`]; the frame encoders guarantee it
    /// (only the low 24 bits are written).
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        // Built whole, then written with one call: four `put`s checked the
        // destination's room four times (about fifty instructions a header).
        let [_, l0, l1, l2] = self.len.to_be_bytes();
        let [s0, s1, s2, s3] = self.stream.value().to_be_bytes();
        dst.put_slice(&[l0, l1, l2, self.ty.0, self.flags, s0, s1, s2, s3]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_field() {
        let header = Header::decode(&[0x01, 0x02, 0x03, 0x07, 0xa5, 0x7f, 0xff, 0xff, 0xfe]);
        assert_eq!(
            header,
            Ok(Header {
                len: 0x010203,
                ty: FrameType::PUSH,
                flags: 0xa5,
                stream: StreamId::new(0x7fff_fffe).unwrap_or_default(),
            })
        );
    }

    #[test]
    fn reserved_bit_is_an_error() {
        let header = Header::decode(&[0, 0, 0, 0, 0, 0x80, 0, 0, 1]);
        assert_eq!(header, Err(FrameError::ReservedBit));
    }

    #[test]
    fn encode_is_inverse_of_decode() {
        let bytes = [0xff, 0xff, 0xff, 0x42, 0x01, 0x00, 0x00, 0x00, 0x03];
        let header = Header::decode(&bytes).expect("valid header");
        let mut out = Vec::new();
        header.encode(&mut out);
        assert_eq!(out, bytes);
    }
}
