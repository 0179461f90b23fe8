//! WINDOW_UPDATE (type 0x6, spec §5.7): returns flow-control credit.
//!
//! ```text
//! +-+-------------------------------------------------------------+
//! |R|              Window Size Increment (31)                     |
//! +-+-------------------------------------------------------------+
//! ```

use crate::stream_id::StreamId;

/// A WINDOW_UPDATE frame; stream 0 credits the connection window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct WindowUpdate {
    /// The stream whose window grows, or stream 0 for the connection.
    pub stream: StreamId,
    /// Credit in bytes, 1 to 2^31 - 1.
    pub increment: u32,
}

impl WindowUpdate {
    /// Exact payload length.
    pub(super) const LEN: usize = 4;
}
