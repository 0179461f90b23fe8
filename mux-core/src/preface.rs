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

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{ErrorCode, PrefaceError};
use crate::frame::{Frame, GoAway};
use crate::stream_id::StreamId;

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

/// What a server answers a client it refuses before any settings (spec
/// §3.6): its preface and a GOAWAY alone, with last stream ID 0, `code` and
/// `reason`. `None` unless `received` begins like a mux preface: a peer that
/// does not speak mux is not answered (§3.3). Used for a plaintext client on
/// a port that requires TLS (§16.2).
pub fn refusal(received: &[u8], code: ErrorCode, reason: &str) -> Option<BytesMut> {
    let seen = received.len().min(MAGIC.len());
    if seen == 0 || received.get(..seen) != MAGIC.get(..seen) {
        return None;
    }
    let mut answer = BytesMut::new();
    Preface::CURRENT.encode(&mut answer);
    let debug = reason.as_bytes();
    let goaway = Frame::GoAway(GoAway {
        last_stream: StreamId::CONNECTION,
        code,
        debug: Bytes::copy_from_slice(debug.get(..256).unwrap_or(debug)),
    });
    goaway.encode(&mut answer).ok()?;
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_answers_mux_clients_only() {
        let answer = refusal(&MAGIC[..3], ErrorCode::INADEQUATE_SECURITY, "TLS only")
            .expect("a mux client is answered");
        let mut buf = answer.clone();
        assert_eq!(Preface::decode(&mut buf), Ok(Some(Preface::CURRENT)));
        assert!(matches!(
            Frame::decode(&mut buf, 16_384),
            Ok(Some(Frame::GoAway(GoAway {
                code: ErrorCode::INADEQUATE_SECURITY,
                ..
            })))
        ));
        assert!(buf.is_empty(), "nothing after the GOAWAY: no SETTINGS");
        assert_eq!(
            refusal(b"GET / HTTP/1.1", ErrorCode::INADEQUATE_SECURITY, ""),
            None
        );
        assert_eq!(refusal(b"", ErrorCode::INADEQUATE_SECURITY, ""), None);
    }

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
