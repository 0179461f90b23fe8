//! The connection preface (spec §3): magic bytes and the protocol version.
//!
//! ```text
//! +---------------------------------------------------------------+
//! |       0x89   'M'   'U'   'X'   '\r'   '\n'   (6 bytes)        |
//! +-------------------------------+-------------------------------+
//! |          Version (16)         |
//! +-------------------------------+
//! ```
//!
//! The first byte has its top bit set so that no text protocol starts with it,
//! and CR LF catches a channel that rewrites line ends. Both sides send a
//! preface; the client first, the server on receipt.

use bytes::{Buf, BufMut, BytesMut};

use crate::error::PrefaceError;

/// The six magic bytes that start every mux connection in both directions.
pub const MAGIC: [u8; 6] = *b"\x89MUX\r\n";
/// Length of the whole preface.
pub const PREFACE_LEN: usize = 8;
/// The protocol version this crate implements.
pub const VERSION: u16 = 1;

/// A decoded preface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preface {
    /// The version the sender speaks on this connection.
    pub version: u16,
}

impl Preface {
    /// The preface of this crate's version.
    pub const CURRENT: Self = Self { version: VERSION };

    /// Appends the 8 preface bytes to `dst`.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        dst.put_slice(&MAGIC);
        dst.put_u16(self.version);
    }

    /// Decodes a preface from the front of `buf`.
    ///
    /// Returns `Ok(None)` and consumes nothing while fewer than 8 bytes are
    /// buffered, but fails with [`PrefaceError::BadMagic`] as soon as a
    /// received byte differs from the magic, so that a peer speaking another
    /// protocol is refused on its first bytes (spec §3). The version is not
    /// judged here; the connection does that.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, PrefaceError> {
        let seen = buf.len().min(MAGIC.len());
        if buf.get(..seen) != MAGIC.get(..seen) {
            return Err(PrefaceError::BadMagic);
        }
        if buf.len() < PREFACE_LEN {
            return Ok(None);
        }
        buf.advance(MAGIC.len());
        Ok(Some(Self {
            version: buf.get_u16(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_magic_waits_and_wrong_magic_fails_early() {
        let mut partial = BytesMut::from(&b"\x89MU"[..]);
        assert_eq!(Preface::decode(&mut partial), Ok(None));
        assert_eq!(partial.len(), 3);
        let mut http = BytesMut::from(&b"GE"[..]);
        assert_eq!(Preface::decode(&mut http), Err(PrefaceError::BadMagic));
    }

    #[test]
    fn round_trip_leaves_following_bytes() {
        let mut buf = BytesMut::new();
        Preface::CURRENT.encode(&mut buf);
        buf.put_u8(0xaa);
        assert_eq!(Preface::decode(&mut buf), Ok(Some(Preface::CURRENT)));
        assert_eq!(&buf[..], [0xaa]);
    }
}
