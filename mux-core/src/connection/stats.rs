//! The counters a connection keeps of what crossed it (spec §13: one per
//! protection, plus frames by type and resets and GOAWAYs by error code),
//! for operators' metrics. Counting never fails: every slot saturates.

use crate::error::ErrorCode;
use crate::frame::Frame;

/// Slots of [`Stats::frames_received_by_type`]: the eight types of spec
/// §4.2, then one for unknown types.
pub const FRAME_TYPE_SLOTS: usize = 9;

/// DATA's slot (type 0x0).
const DATA_SLOT: usize = 0;

/// Slots of the by-code counters: codes 0x0 to 0xd (spec §14), then one for
/// any other code.
pub const CODE_SLOTS: usize = 15;

/// Counters of what the peer did, one per protection (spec §13), readable
/// with [`Connection::stats`](super::Connection::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Frames received.
    pub frames_received: u64,
    /// DATA payload bytes received.
    pub data_bytes_received: u64,
    /// DATA payload bytes sent.
    pub data_bytes_sent: u64,
    /// Streams the peer opened.
    pub streams_opened_by_peer: u64,
    /// Streams the peer opened then reset before we finished them (rapid reset).
    pub peer_resets: u64,
    /// Streams refused: over MAX_CONCURRENT_STREAMS, or opened after our GOAWAY.
    pub refused_streams: u64,
    /// Streams refused because their metadata exceeded MAX_METADATA_SIZE.
    pub metadata_too_large: u64,
    /// PING frames received (without ACK).
    pub pings_received: u64,
    /// SETTINGS frames received (without ACK).
    pub settings_received: u64,
    /// Empty frames received (DATA without payload or flags, empty unknown frames).
    pub empty_frames: u64,
    /// Frames received on closed streams, discarded.
    pub frames_on_closed_streams: u64,
    /// Flow-control violations by the peer (stream or connection level).
    pub flow_control_errors: u64,
    /// WINDOW_UPDATEs that would have overflowed a window.
    pub window_overflows: u64,
    /// Writes refused (partly or wholly) because send buffers were full.
    pub writes_blocked: u64,
    /// Flood budgets exhausted (the connection was closed with ENHANCE_YOUR_CALM).
    pub floods: u64,
    /// Frames received by type (spec §4.2): index = type; the last slot
    /// counts unknown types.
    pub frames_received_by_type: [u64; FRAME_TYPE_SLOTS],
    /// RESET frames received, by error code ([`code_name`] names the slots).
    pub resets_received: [u64; CODE_SLOTS],
    /// RESET frames sent, by error code.
    pub resets_sent: [u64; CODE_SLOTS],
    /// GOAWAY frames received, by error code.
    pub goaways_received: [u64; CODE_SLOTS],
    /// GOAWAY frames sent, by error code.
    pub goaways_sent: [u64; CODE_SLOTS],
}

/// The name of a by-code slot: the error code's registered name, or
/// `"OTHER"` for the last slot (codes this version does not define).
pub fn code_name(slot: usize) -> &'static str {
    u32::try_from(slot)
        .ok()
        .filter(|&code| (code as usize) < CODE_SLOTS - 1)
        .and_then(|code| ErrorCode(code).name())
        .unwrap_or("OTHER")
}

/// The slot of `code`.
fn code_slot(code: ErrorCode) -> usize {
    usize::try_from(code.0)
        .ok()
        .filter(|&slot| slot < CODE_SLOTS - 1)
        .unwrap_or(CODE_SLOTS - 1)
}

/// Adds one to a slot (saturating; a slot out of range counts nothing).
fn bump(slots: &mut [u64], slot: usize) {
    if let Some(count) = slots.get_mut(slot) {
        *count = count.saturating_add(1);
    }
}

impl Stats {
    /// Counts a frame received.
    pub(super) fn frame_received(&mut self, frame: &Frame) {
        let slot = match frame {
            Frame::Data(_) => DATA_SLOT,
            Frame::Open(_) => 1,
            Frame::Reset(reset) => {
                bump(&mut self.resets_received, code_slot(reset.code));
                2
            }
            Frame::Settings(_) => 3,
            Frame::Ping(_) => 4,
            Frame::GoAway(go_away) => {
                bump(&mut self.goaways_received, code_slot(go_away.code));
                5
            }
            Frame::WindowUpdate(_) => 6,
            Frame::Push(_) => 7,
            Frame::Unknown(_) => FRAME_TYPE_SLOTS - 1,
        };
        self.count_received(slot);
    }

    /// Counts a DATA frame read in place (not decoded into a [`Frame`]).
    pub(super) fn data_frame_received(&mut self) {
        self.count_received(DATA_SLOT);
    }

    fn count_received(&mut self, slot: usize) {
        self.frames_received = self.frames_received.saturating_add(1);
        bump(&mut self.frames_received_by_type, slot);
    }

    /// Counts a frame sent (only RESET and GOAWAY are counted by code).
    pub(super) fn frame_sent(&mut self, frame: &Frame) {
        match frame {
            Frame::Reset(reset) => bump(&mut self.resets_sent, code_slot(reset.code)),
            Frame::GoAway(go_away) => bump(&mut self.goaways_sent, code_slot(go_away.code)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{GoAway, Ping, Reset};
    use crate::StreamId;

    #[test]
    fn frames_are_counted_by_type_and_resets_and_goaways_by_code() {
        let mut stats = Stats::default();
        let reset = Frame::Reset(Reset {
            stream: StreamId::new(1).unwrap_or(StreamId::CONNECTION),
            code: ErrorCode::CANCEL,
        });
        stats.frame_received(&reset);
        stats.frame_received(&Frame::Ping(Ping {
            ack: false,
            payload: [0; 8],
        }));
        stats.frame_sent(&Frame::GoAway(GoAway {
            last_stream: StreamId::CONNECTION,
            code: ErrorCode(0x77),
            debug: bytes::Bytes::new(),
        }));
        assert_eq!(stats.frames_received, 2);
        assert_eq!(stats.frames_received_by_type[2], 1);
        assert_eq!(stats.frames_received_by_type[4], 1);
        assert_eq!(stats.resets_received[8], 1);
        assert_eq!(code_name(8), "CANCEL");
        assert_eq!(
            stats.goaways_sent[CODE_SLOTS - 1],
            1,
            "an unknown code counts as other"
        );
        assert_eq!(code_name(CODE_SLOTS - 1), "OTHER");
        assert_eq!(code_name(0xd), "INADEQUATE_SECURITY");
    }
}
