//! SETTINGS (type 0x3, spec §5.4): parameters that constrain the peer.
//!
//! ```text
//! +-------------------------------+
//! |       Identifier (16)         |
//! +-------------------------------+-------------------------------+
//! |                        Value (32)                             |
//! +---------------------------------------------------------------+
//!   ... repeated Length / 6 times
//! Flags: ACK (0x1)
//! ```
//!
//! The payload is kept as received and iterated on demand, so a SETTINGS frame
//! costs no allocation however many (possibly unknown or repeated) entries it
//! carries; repeated identifiers take effect in order, the last one wins.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ErrorCode, FrameError};

/// A setting identifier (spec §5.4.1). Unknown identifiers are ignored (spec §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct SettingId(pub u16);

impl SettingId {
    /// Largest frame payload the sender accepts. Default 16,384; 16,384 to 16,777,215.
    pub const MAX_FRAME_SIZE: Self = Self(0x1);
    /// Streams the sender lets the peer have open at once. Default 100; 0 to 2^31 - 1.
    pub const MAX_CONCURRENT_STREAMS: Self = Self(0x2);
    /// Initial send window of streams opened after this takes effect. Default 65,536; 0 to 2^31 - 1.
    pub const INITIAL_STREAM_WINDOW: Self = Self(0x3);
    /// Largest metadata block the sender accepts. Default 16,384; any 32-bit value.
    pub const MAX_METADATA_SIZE: Self = Self(0x4);

    /// The smallest allowed MAX_FRAME_SIZE, and its default.
    pub const MIN_MAX_FRAME_SIZE: u32 = 16_384;

    /// The value in force before the peer's first SETTINGS frame (spec §5.4.1),
    /// or `None` for an identifier this version does not know.
    pub fn default_value(self) -> Option<u32> {
        Some(match self {
            Self::MAX_FRAME_SIZE => Self::MIN_MAX_FRAME_SIZE,
            Self::MAX_CONCURRENT_STREAMS => 100,
            Self::INITIAL_STREAM_WINDOW => 65_536,
            Self::MAX_METADATA_SIZE => 16_384,
            _ => return None,
        })
    }

    /// Checks `value` against this setting's range (spec §5.4.1); the error is
    /// the code of the connection error a receiver answers with.
    pub fn check(self, value: u32) -> Result<(), ErrorCode> {
        match self {
            Self::MAX_FRAME_SIZE
                if !(Self::MIN_MAX_FRAME_SIZE..=super::MAX_LENGTH_FIELD).contains(&value) =>
            {
                Err(ErrorCode::PROTOCOL_ERROR)
            }
            Self::MAX_CONCURRENT_STREAMS if value > super::MAX_WINDOW => {
                Err(ErrorCode::PROTOCOL_ERROR)
            }
            Self::INITIAL_STREAM_WINDOW if value > super::MAX_WINDOW => {
                Err(ErrorCode::FLOW_CONTROL_ERROR)
            }
            _ => Ok(()),
        }
    }
}

/// A SETTINGS frame (always on stream 0).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// This acknowledges the peer's SETTINGS; an ACK carries no entries.
    pub ack: bool,
    entries: Bytes,
}

impl Settings {
    /// ACK flag bit.
    pub const ACK: u8 = 0x1;
    /// Length of one entry.
    pub const ENTRY_LEN: usize = 6;

    /// A SETTINGS frame carrying `entries` in order.
    pub fn new(entries: &[(SettingId, u32)]) -> Self {
        let mut buf = BytesMut::with_capacity(entries.len() * Self::ENTRY_LEN);
        for (id, value) in entries {
            buf.put_u16(id.0);
            buf.put_u32(*value);
        }
        Self {
            ack: false,
            entries: buf.freeze(),
        }
    }

    /// The acknowledgement of a peer's SETTINGS.
    pub fn ack() -> Self {
        Self {
            ack: true,
            entries: Bytes::new(),
        }
    }

    /// The entries, in the order they take effect.
    pub fn iter(&self) -> impl Iterator<Item = (SettingId, u32)> + '_ {
        self.entries
            .chunks_exact(Self::ENTRY_LEN)
            .filter_map(|entry| match *entry {
                [i0, i1, v0, v1, v2, v3] => Some((
                    SettingId(u16::from_be_bytes([i0, i1])),
                    u32::from_be_bytes([v0, v1, v2, v3]),
                )),
                _ => None, // chunks_exact: never shorter
            })
    }

    pub(super) fn entry_bytes(&self) -> &Bytes {
        &self.entries
    }

    pub(super) fn decode(flags: u8, payload: Bytes) -> Result<Self, FrameError> {
        let ack = flags & Self::ACK != 0;
        // Spec §5.4: an ACK with a payload, or a length that is not a multiple
        // of 6, is a connection error of type FRAME_SIZE_ERROR.
        if (ack && !payload.is_empty()) || payload.len() % Self::ENTRY_LEN != 0 {
            return Err(FrameError::BadLength {
                frame: "SETTINGS",
                len: payload.len() as u32,
            });
        }
        let settings = Self {
            ack,
            entries: payload,
        };
        for (id, value) in settings.iter() {
            if let Err(code) = id.check(value) {
                return Err(FrameError::BadSetting {
                    id: id.0,
                    value,
                    code,
                });
            }
        }
        Ok(settings)
    }
}

impl core::fmt::Debug for Settings {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Settings")
            .field("ack", &self.ack)
            .field("entries", &self.iter().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(any(test, feature = "arbitrary"))]
impl<'a> arbitrary::Arbitrary<'a> for Settings {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        if u.arbitrary()? {
            return Ok(Self::ack());
        }
        let entries: Vec<(SettingId, u32)> = u.arbitrary()?;
        Ok(Self::new(&entries))
    }
}
