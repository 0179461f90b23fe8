//! PING (type 0x4, spec §5.5): liveness and round-trip time.
//!
//! ```text
//! +---------------------------------------------------------------+
//! |                      Opaque Data (64)                         |
//! +---------------------------------------------------------------+
//! Flags: ACK (0x1)
//! ```

/// A PING frame (always on stream 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Ping {
    /// This is the answer to a PING with the same payload.
    pub ack: bool,
    /// Opaque bytes that the answer echoes.
    pub payload: [u8; 8],
}

impl Ping {
    /// ACK flag bit.
    pub const ACK: u8 = 0x1;
    /// Exact payload length.
    pub(super) const LEN: usize = 8;
}
