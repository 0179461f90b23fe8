//! The wire format, written from `spec/mux-v1.md` §3-§5 alone: the preface,
//! the 9-byte frame header, frame types, flags, error codes and settings,
//! and a decoder that reads frames off a byte buffer.

/// The preface's six magic bytes (§3.1).
pub const MAGIC: [u8; 6] = [0x89, b'M', b'U', b'X', b'\r', b'\n'];
/// The version this runner speaks.
pub const VERSION: u16 = 1;
/// The frame header's length (§4.1).
pub const HEADER: usize = 9;
/// MAX_FRAME_SIZE until the peer's SETTINGS says otherwise (§5.4.1).
pub const DEFAULT_MAX_FRAME: u32 = 16_384;
/// The initial connection window (§9.2.1).
pub const INITIAL_CONNECTION_WINDOW: u64 = 65_536;
/// The largest window (§9.5.1).
pub const MAX_WINDOW: u64 = (1 << 31) - 1;

/// Frame types (§5).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const OPEN: u8 = 0x1;
    pub const RESET: u8 = 0x2;
    pub const SETTINGS: u8 = 0x3;
    pub const PING: u8 = 0x4;
    pub const GOAWAY: u8 = 0x5;
    pub const WINDOW_UPDATE: u8 = 0x6;
    pub const PUSH: u8 = 0x7;
}

/// Flags (§5).
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const END_MESSAGE: u8 = 0x2;
    pub const ACK: u8 = 0x1;
}

/// Settings identifiers (§5.4.1).
pub mod setting {
    pub const MAX_FRAME_SIZE: u16 = 0x1;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x2;
    pub const INITIAL_STREAM_WINDOW: u16 = 0x3;
    pub const MAX_METADATA_SIZE: u16 = 0x4;
}

/// Error codes (§8.1).
pub mod code {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const SETTINGS_TIMEOUT: u32 = 0x4;
    pub const STREAM_CLOSED: u32 = 0x5;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;
    pub const ENHANCE_YOUR_CALM: u32 = 0x9;
    pub const METADATA_TOO_LARGE: u32 = 0xa;
    pub const UNSUPPORTED_VERSION: u32 = 0xb;
    pub const IDLE_TIMEOUT: u32 = 0xc;

    /// The code's name, or its number.
    pub fn name(code: u32) -> String {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "ENHANCE_YOUR_CALM",
            "METADATA_TOO_LARGE",
            "UNSUPPORTED_VERSION",
            "IDLE_TIMEOUT",
            "INADEQUATE_SECURITY",
        ];
        usize::try_from(code)
            .ok()
            .and_then(|index| NAMES.get(index))
            .map_or_else(|| format!("0x{code:x}"), |name| (*name).to_owned())
    }

    /// The code a name stands for (the vectors name codes).
    pub fn by_name(name: &str) -> Option<u32> {
        (0..14).find(|&code| self::name(code) == name)
    }
}

/// The preface for `version` (§3.1).
pub fn preface(version: u16) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&version.to_be_bytes());
    bytes
}

/// A frame header and payload as bytes; the caller chooses every field, so
/// that broken frames are as easy to write as good ones.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    frame_with_length(kind, flags, stream, payload.len() as u32, payload)
}

/// A frame whose Length field says `length`, whatever the payload.
pub fn frame_with_length(kind: u8, flags: u8, stream: u32, length: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend_from_slice(&length.to_be_bytes()[1..]);
    bytes.push(kind);
    bytes.push(flags);
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// SETTINGS with these entries (§5.4).
pub fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(entries.len() * 6);
    for (id, value) in entries {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(kind::SETTINGS, 0, 0, &payload)
}

pub fn settings_ack() -> Vec<u8> {
    frame(kind::SETTINGS, flag::ACK, 0, &[])
}

pub fn ping(flags: u8, data: [u8; 8]) -> Vec<u8> {
    frame(kind::PING, flags, 0, &data)
}

pub fn reset(stream: u32, code: u32) -> Vec<u8> {
    frame(kind::RESET, 0, stream, &code.to_be_bytes())
}

pub fn goaway(last: u32, code: u32, debug: &[u8]) -> Vec<u8> {
    let mut payload = last.to_be_bytes().to_vec();
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(debug);
    frame(kind::GOAWAY, 0, 0, &payload)
}

pub fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

pub fn data(stream: u32, flags: u8, bytes: &[u8]) -> Vec<u8> {
    frame(kind::DATA, flags, stream, bytes)
}

/// A metadata block (§5.2.1).
pub fn metadata(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in entries {
        block.push(name.len() as u8);
        block.extend_from_slice(name);
        block.extend_from_slice(&(value.len() as u16).to_be_bytes());
        block.extend_from_slice(value);
    }
    block
}

/// OPEN with a `route` entry naming `route` (any server answers it, with an
/// error status if it has no such route).
pub fn open(stream: u32, flags: u8, route: &str) -> Vec<u8> {
    frame(
        kind::OPEN,
        flags,
        stream,
        &metadata(&[(b"route", route.as_bytes())]),
    )
}

pub fn push(promised: u32, associated: u32, flags: u8, block: &[u8]) -> Vec<u8> {
    let mut payload = associated.to_be_bytes().to_vec();
    payload.extend_from_slice(block);
    frame(kind::PUSH, flags, promised, &payload)
}

/// A frame as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    /// The raw 32 bits, reserved bit included.
    pub stream_field: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn stream(&self) -> u32 {
        self.stream_field & 0x7fff_ffff
    }

    pub fn is(&self, kind: u8) -> bool {
        self.kind == kind
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The 32-bit word at `offset` of the payload.
    pub fn word(&self, offset: usize) -> Option<u32> {
        let bytes = self.payload.get(offset..offset + 4)?;
        Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// RESET's code, or GOAWAY's.
    pub fn error_code(&self) -> Option<u32> {
        match self.kind {
            kind::RESET => self.word(0),
            kind::GOAWAY => self.word(4),
            _ => None,
        }
    }

    /// SETTINGS entries.
    pub fn settings(&self) -> Vec<(u16, u32)> {
        self.payload
            .chunks_exact(6)
            .map(|entry| {
                (
                    u16::from_be_bytes([entry[0], entry[1]]),
                    u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]),
                )
            })
            .collect()
    }

    /// A one-line description, for failure reports.
    pub fn describe(&self) -> String {
        let name = match self.kind {
            kind::DATA => "DATA",
            kind::OPEN => "OPEN",
            kind::RESET => "RESET",
            kind::SETTINGS => "SETTINGS",
            kind::PING => "PING",
            kind::GOAWAY => "GOAWAY",
            kind::WINDOW_UPDATE => "WINDOW_UPDATE",
            kind::PUSH => "PUSH",
            _ => "unknown",
        };
        let mut text = format!(
            "{name} (type 0x{:x}, flags 0x{:x}, stream {}, length {})",
            self.kind,
            self.flags,
            self.stream(),
            self.payload.len()
        );
        if let Some(code) = self.error_code() {
            text.push_str(&format!(" {}", code::name(code)));
        }
        text
    }
}

/// Takes one whole frame off the front of `buf`, if it holds one.
pub fn take_frame(buf: &mut Vec<u8>) -> Option<Frame> {
    let header = buf.get(..HEADER)?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    if buf.len() < HEADER + length {
        return None;
    }
    let frame = Frame {
        kind: header[3],
        flags: header[4],
        stream_field: u32::from_be_bytes([header[5], header[6], header[7], header[8]]),
        payload: buf[HEADER..HEADER + length].to_vec(),
    };
    buf.drain(..HEADER + length);
    Some(frame)
}

/// The Length a frame header declares, once 9 bytes are in.
pub fn declared_length(buf: &[u8]) -> Option<usize> {
    let header = buf.get(..HEADER)?;
    Some(u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize)
}

/// Hex text to bytes (the vectors' encoding).
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_decoder() {
        let mut buf = ping(0, *b"12345678");
        buf.extend(reset(3, code::CANCEL));
        let first = take_frame(&mut buf).expect("a PING");
        assert_eq!(
            (first.kind, first.payload.as_slice()),
            (kind::PING, &b"12345678"[..])
        );
        let second = take_frame(&mut buf).expect("a RESET");
        assert_eq!(
            (second.stream(), second.error_code()),
            (3, Some(code::CANCEL))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn codes_and_hex_read_as_the_vectors_write_them() {
        assert_eq!(
            code::by_name("FRAME_SIZE_ERROR"),
            Some(code::FRAME_SIZE_ERROR)
        );
        assert_eq!(code::name(0x99), "0x99");
        assert_eq!(from_hex("894d"), Some(vec![0x89, 0x4d]));
        assert_eq!(from_hex("8"), None);
    }
}
