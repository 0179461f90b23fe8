//! Frames: parse and encode every mux frame type (spec §4 and §5).
//!
//! # The no-panic contract
//!
//! Nothing in this module panics, whatever bytes it is given. Headers are read
//! from a fixed-size `[u8; HEADER_LEN]` array, bodies through `bytes::Buf` after
//! their length was checked, and every multi-byte field goes through
//! `split_first_chunk`/`split_at_checked`, so no index can be out of bounds.
//! The fuzz targets in `fuzz/` (`frame_decode`, `frame_roundtrip`) hold the
//! module to this.
//!
//! # Decoding
//!
//! [`Frame::decode`] is incremental: it returns `Ok(None)` and consumes nothing
//! while the buffer holds less than a whole frame (incomplete is not corrupt).
//! The declared length is compared with the caller's maximum frame size as soon
//! as the 9-byte header is in, before any memory is reserved for the payload,
//! and header-only rules (stream 0 or not, fixed lengths) are checked at the
//! same moment, so an invalid frame is refused without waiting for its body.
//! Payloads are zero-copy: the whole frame is split off the read buffer and
//! frozen, and payload fields are `Bytes` slices of it.
//!
//! Any [`FrameError`] is a connection error (spec §4.3): the receiver cannot
//! know where the next frame starts, so it sends GOAWAY with
//! [`FrameError::code`] and stops reading. After an error the read buffer's
//! contents are unspecified.
//!
//! # Encoding
//!
//! [`Frame::encode`] copies the whole frame into a buffer. [`Frame::encode_split`]
//! writes only the header and fixed fields, and hands back the payload `Bytes`
//! so that the caller can pass both to a vectored write without copying the
//! payload; payloads below [`CHAIN_THRESHOLD`] are copied anyway, because an
//! extra iovec costs more than copying a few bytes.

mod data;
mod go_away;
mod header;
mod metadata;
mod open;
mod ping;
mod push;
mod reset;
mod settings;
mod window_update;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use self::data::{Data, DataRef};
pub use self::go_away::GoAway;
pub use self::header::{FrameType, Header, HEADER_LEN, MAX_LENGTH_FIELD};
pub(crate) use self::metadata::put_entry;
pub use self::metadata::{
    Metadata, MetadataBuilder, MetadataError, MetadataIter, MAX_NAME_LEN, MAX_VALUE_LEN,
};
pub use self::open::Open;
pub use self::ping::Ping;
pub use self::push::Push;
pub use self::reset::Reset;
pub use self::settings::{SettingId, Settings};
pub use self::window_update::WindowUpdate;
use crate::error::{EncodeError, ErrorCode, FrameError};
use crate::stream_id::{Side, StreamId};

/// The largest flow-control window and window increment, 2^31 - 1 (spec §9).
pub const MAX_WINDOW: u32 = 0x7fff_ffff;

/// Payloads shorter than this are copied next to their header by
/// [`Frame::encode_split`] instead of being handed back for a vectored write.
/// The value is h2's `CHAIN_THRESHOLD`: below a few hundred bytes a memcpy is
/// cheaper than the extra iovec and the reference count it keeps alive.
pub const CHAIN_THRESHOLD: usize = 256;

/// A frame of a type this version does not define; receivers ignore it (spec §4.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown {
    /// The frame type, 0x08 to 0xff.
    pub ty: u8,
    /// Flags, kept as received.
    pub flags: u8,
    /// Stream ID, kept as received.
    pub stream: StreamId,
    /// Payload, kept as received.
    pub payload: Bytes,
}

/// Any mux frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum Frame {
    /// DATA (spec §5.1).
    Data(Data),
    /// OPEN (spec §5.2).
    Open(Open),
    /// RESET (spec §5.3).
    Reset(Reset),
    /// SETTINGS (spec §5.4).
    Settings(Settings),
    /// PING (spec §5.5).
    Ping(Ping),
    /// GOAWAY (spec §5.6).
    GoAway(GoAway),
    /// WINDOW_UPDATE (spec §5.7).
    WindowUpdate(WindowUpdate),
    /// PUSH (spec §5.8).
    Push(Push),
    /// A frame of an unknown type (spec §4.4).
    Unknown(Unknown),
}

/// The fixed fields that sit between the header and a frame's variable payload.
struct Fixed {
    bytes: [u8; 8],
    len: usize,
}

impl Fixed {
    const NONE: Self = Self {
        bytes: [0; 8],
        len: 0,
    };

    fn u32(value: u32) -> Self {
        let mut bytes = [0; 8];
        bytes[..4].copy_from_slice(&value.to_be_bytes());
        Self { bytes, len: 4 }
    }

    fn u32_pair(first: u32, second: u32) -> Self {
        let mut bytes = [0; 8];
        bytes[..4].copy_from_slice(&first.to_be_bytes());
        bytes[4..].copy_from_slice(&second.to_be_bytes());
        Self { bytes, len: 8 }
    }

    fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// What a frame type requires of the header's stream ID (spec §4.2).
enum StreamRule {
    Zero,
    NonZero,
    Any,
}

/// The rules a header alone lets a receiver check: the stream-ID rule, and the
/// payload length bounds `min..=max` of the type.
fn header_rules(ty: FrameType) -> Option<(&'static str, StreamRule, usize, usize)> {
    let max = MAX_LENGTH_FIELD as usize;
    Some(match ty {
        FrameType::DATA => ("DATA", StreamRule::NonZero, 0, max),
        FrameType::OPEN => ("OPEN", StreamRule::NonZero, 0, max),
        FrameType::RESET => ("RESET", StreamRule::NonZero, Reset::LEN, Reset::LEN),
        FrameType::SETTINGS => ("SETTINGS", StreamRule::Zero, 0, max),
        FrameType::PING => ("PING", StreamRule::Zero, Ping::LEN, Ping::LEN),
        FrameType::GOAWAY => ("GOAWAY", StreamRule::Zero, GoAway::FIXED_LEN, max),
        FrameType::WINDOW_UPDATE => (
            "WINDOW_UPDATE",
            StreamRule::Any,
            WindowUpdate::LEN,
            WindowUpdate::LEN,
        ),
        FrameType::PUSH => ("PUSH", StreamRule::NonZero, Push::FIXED_LEN, max),
        _ => return None,
    })
}

/// Checks everything about a frame that its header alone determines.
fn check_header(header: &Header) -> Result<(), FrameError> {
    let Some((frame, stream_rule, min, max)) = header_rules(header.ty) else {
        return Ok(()); // unknown types are ignored whatever their header says
    };
    let stream = header.stream.value();
    match stream_rule {
        StreamRule::Zero if stream != 0 => {
            return Err(FrameError::StreamIdNonZero { frame, stream })
        }
        StreamRule::NonZero if stream == 0 => return Err(FrameError::StreamIdZero { frame }),
        _ => {}
    }
    let len = header.len as usize;
    if len < min || len > max {
        return Err(FrameError::BadLength {
            frame,
            len: header.len,
        });
    }
    if header.ty == FrameType::PUSH && header.stream.initiator() == Some(Side::Client) {
        return Err(FrameError::PushOnOddStream { stream });
    }
    Ok(())
}

impl Frame {
    /// Decodes one frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` without consuming anything when `buf` holds less than
    /// a whole frame; then reserves room for the rest of the frame, once its
    /// declared length was checked against `max_frame_size`.
    pub fn decode(buf: &mut BytesMut, max_frame_size: u32) -> Result<Option<Self>, FrameError> {
        let Some(header) = Self::peek(buf, max_frame_size)? else {
            return Ok(None);
        };
        Self::take(buf, header).map(Some)
    }

    /// The checked header of the frame at the front of `buf`, if the whole
    /// frame is there (`Ok(None)` otherwise); nothing is consumed. Then
    /// either [`Frame::take`] decodes the frame, or the caller reads its
    /// payload in place (`buf[HEADER_LEN..HEADER_LEN + len]`) and advances
    /// past it: the receive path does that for small DATA frames, whose
    /// bytes it copies anyway, to spare them a reference to the buffer.
    pub fn peek(buf: &[u8], max_frame_size: u32) -> Result<Option<Header>, FrameError> {
        let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = Header::decode(head)?;
        if header.len > max_frame_size {
            return Err(FrameError::TooLarge {
                len: header.len,
                max: max_frame_size,
            });
        }
        check_header(&header)?;
        // The rest of a partial frame is awaited; where it will land is the
        // transport's business (mux-runtime's read buffer makes room for it).
        if buf.len() < header.frame_len() {
            return Ok(None);
        }
        Ok(Some(header))
    }

    /// Takes the frame whose `header` [`Frame::peek`] returned from the
    /// front of `buf` and decodes it; its payload is a zero-copy slice.
    pub fn take(buf: &mut BytesMut, header: Header) -> Result<Self, FrameError> {
        let total = header.frame_len().min(buf.len());
        let mut payload = buf.split_to(total).freeze();
        payload.advance(HEADER_LEN.min(total));
        Self::decode_payload(header, payload)
    }

    /// Decodes a frame whose header was checked and whose payload is complete.
    fn decode_payload(header: Header, mut payload: Bytes) -> Result<Self, FrameError> {
        let Header {
            ty, flags, stream, ..
        } = header;
        let frame = match ty {
            FrameType::DATA => Self::Data(Data::decode(stream, flags, payload)),
            FrameType::OPEN => Self::Open(Open::decode(stream, flags, payload)?),
            FrameType::RESET => Self::Reset(Reset {
                stream,
                code: ErrorCode(payload.get_u32()),
            }),
            FrameType::SETTINGS => Self::Settings(Settings::decode(flags, payload)?),
            FrameType::PING => {
                let mut data = [0; 8];
                payload.copy_to_slice(&mut data);
                Self::Ping(Ping {
                    ack: flags & Ping::ACK != 0,
                    payload: data,
                })
            }
            FrameType::GOAWAY => Self::GoAway(GoAway {
                last_stream: StreamId::new(payload.get_u32()).ok_or(FrameError::ReservedBit)?,
                code: ErrorCode(payload.get_u32()),
                debug: payload,
            }),
            FrameType::WINDOW_UPDATE => Self::WindowUpdate(WindowUpdate {
                stream,
                increment: payload.get_u32(),
            }),
            FrameType::PUSH => Self::Push(Push::decode(stream, flags, payload)?),
            FrameType(ty) => Self::Unknown(Unknown {
                ty,
                flags,
                stream,
                payload,
            }),
        };
        frame.check_values()?;
        Ok(frame)
    }

    /// Checks the rules on field values that the header does not show.
    fn check_values(&self) -> Result<(), FrameError> {
        match self {
            // Spec §5.7: the R bit of the increment is reserved; 0 is invalid.
            Self::WindowUpdate(update) if update.increment > MAX_WINDOW => {
                Err(FrameError::ReservedBit)
            }
            Self::WindowUpdate(update) if update.increment == 0 => {
                Err(FrameError::ZeroWindowIncrement)
            }
            _ => Ok(()),
        }
    }

    /// Checks that this frame obeys every rule a receiver's decoder enforces:
    /// `Ok` exactly when `decode(encode(self))` returns an equal frame (given a
    /// large enough maximum frame size).
    pub fn validate(&self) -> Result<(), FrameError> {
        let header = self.header().map_err(|_| FrameError::TooLarge {
            len: u32::MAX,
            max: MAX_LENGTH_FIELD,
        })?;
        check_header(&header)?;
        if let Self::Settings(settings) = self {
            Settings::decode(header.flags, settings.entry_bytes().clone())?;
        }
        if let Self::Unknown(unknown) = self {
            if header_rules(FrameType(unknown.ty)).is_some() {
                return Err(FrameError::BadLength {
                    frame: "UNKNOWN",
                    len: header.len,
                });
            }
        }
        self.check_values()
    }

    /// The frame type, flags, stream ID, fixed fields and variable payload.
    fn parts(&self) -> (FrameType, u8, StreamId, Fixed, &[u8]) {
        match self {
            Self::Data(data) => (
                FrameType::DATA,
                data.flags(),
                data.stream,
                Fixed::NONE,
                &data.payload,
            ),
            Self::Open(open) => (
                FrameType::OPEN,
                u8::from(open.end_stream) * Open::END_STREAM,
                open.stream,
                Fixed::NONE,
                open.metadata.as_bytes(),
            ),
            Self::Reset(reset) => (
                FrameType::RESET,
                0,
                reset.stream,
                Fixed::u32(reset.code.0),
                &[],
            ),
            Self::Settings(settings) => (
                FrameType::SETTINGS,
                u8::from(settings.ack) * Settings::ACK,
                StreamId::CONNECTION,
                Fixed::NONE,
                settings.entry_bytes(),
            ),
            Self::Ping(ping) => (
                FrameType::PING,
                u8::from(ping.ack) * Ping::ACK,
                StreamId::CONNECTION,
                Fixed {
                    bytes: ping.payload,
                    len: 8,
                },
                &[],
            ),
            Self::GoAway(go_away) => (
                FrameType::GOAWAY,
                0,
                StreamId::CONNECTION,
                Fixed::u32_pair(go_away.last_stream.value(), go_away.code.0),
                &go_away.debug,
            ),
            Self::WindowUpdate(update) => (
                FrameType::WINDOW_UPDATE,
                0,
                update.stream,
                Fixed::u32(update.increment),
                &[],
            ),
            Self::Push(push) => (
                FrameType::PUSH,
                u8::from(push.end_stream) * Push::END_STREAM,
                push.promised,
                Fixed::u32(push.associated.value()),
                push.metadata.as_bytes(),
            ),
            Self::Unknown(unknown) => (
                FrameType(unknown.ty),
                unknown.flags,
                unknown.stream,
                Fixed::NONE,
                &unknown.payload,
            ),
        }
    }

    /// The variable payload as shared `Bytes`, for zero-copy encoding.
    fn payload_bytes(&self) -> Option<&Bytes> {
        match self {
            Self::Data(data) => Some(&data.payload),
            Self::Open(open) => Some(open.metadata.as_bytes()),
            Self::GoAway(go_away) => Some(&go_away.debug),
            Self::Push(push) => Some(push.metadata.as_bytes()),
            Self::Unknown(unknown) => Some(&unknown.payload),
            Self::Settings(settings) => Some(settings.entry_bytes()),
            Self::Reset(_) | Self::Ping(_) | Self::WindowUpdate(_) => None,
        }
    }

    /// The header this frame encodes with.
    pub fn header(&self) -> Result<Header, EncodeError> {
        let (ty, flags, stream, fixed, body) = self.parts();
        Header::for_payload(ty, flags, stream, fixed.len + body.len())
    }

    /// Total encoded length: header plus payload.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        Ok(HEADER_LEN + self.header()?.len as usize)
    }

    /// Appends the whole frame to `dst`, copying the payload.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let header = self.header()?;
        let (_, _, _, fixed, body) = self.parts();
        dst.reserve(HEADER_LEN + header.len as usize);
        header.encode(dst);
        dst.put_slice(fixed.as_slice());
        dst.put_slice(body);
        Ok(())
    }

    /// Appends the header and fixed fields to `head`, and returns the payload
    /// for the caller to write right after it without copying, or `None` when
    /// the payload was short enough to copy into `head` (see [`CHAIN_THRESHOLD`]).
    pub fn encode_split(&self, head: &mut BytesMut) -> Result<Option<Bytes>, EncodeError> {
        let header = self.header()?;
        let (_, _, _, fixed, body) = self.parts();
        header.encode(head);
        head.put_slice(fixed.as_slice());
        match self.payload_bytes() {
            Some(payload) if payload.len() >= CHAIN_THRESHOLD => Ok(Some(payload.clone())),
            _ => {
                head.put_slice(body);
                Ok(None)
            }
        }
    }
}

#[cfg(any(test, feature = "arbitrary"))]
impl<'a> arbitrary::Arbitrary<'a> for Unknown {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self {
            ty: u.int_in_range(0x08..=0xff)?,
            flags: u.arbitrary()?,
            stream: u.arbitrary()?,
            payload: arbitrary_bytes(u)?,
        })
    }
}

/// Arbitrary payload bytes, for the fuzz targets.
#[cfg(any(test, feature = "arbitrary"))]
fn arbitrary_bytes(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Bytes> {
    let len = u.arbitrary_len::<u8>()?;
    Ok(Bytes::copy_from_slice(u.bytes(len)?))
}

#[cfg(test)]
mod tests;
