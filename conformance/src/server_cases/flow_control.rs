//! Cases of §9: DATA beyond the windows, and windows pushed past 2^31-1.

use super::{client_stream, join, Server, ROUTE};
use crate::case::{skip, Case, Level};
use crate::common_cases::Endpoint;
use crate::wire::{self, code, flag, kind, setting, MAX_WINDOW};

pub(super) fn cases() -> Vec<Case<Server>> {
    vec![
        Case::new(
            "9.4.1",
            Level::Must,
            "DATA beyond a stream's window is a stream error (FLOW_CONTROL_ERROR)",
            |s: &Server| {
                let mut peer = s.session()?;
                let window = u64::from(peer.setting(setting::INITIAL_STREAM_WINDOW));
                if window + 1 > peer.connection_credit {
                    return Err(skip("the stream window is not below the connection window"));
                }
                let frames = data_frames(1, window + 1, peer.setting(setting::MAX_FRAME_SIZE));
                let before = peer.seen.len();
                peer.send(&join([wire::open(1, 0, ROUTE), frames]));
                peer.expect_reset(1, code::FLOW_CONTROL_ERROR).map_err(|outcome| {
                    // A server that returned the stream's credit, or ended
                    // the stream, before the last byte came did no wrong.
                    let moved = peer.seen[before..].iter().any(|f| {
                        f.stream() == 1
                            && (f.is(kind::WINDOW_UPDATE)
                                || f.is(kind::RESET)
                                || (f.is(kind::DATA) && f.has(flag::END_STREAM)))
                    });
                    if moved {
                        skip("inconclusive: the server returned the stream's credit or ended it before the window was exceeded")
                    } else {
                        outcome
                    }
                })
            },
        ),
        Case::new(
            "9.4.1",
            Level::Must,
            "DATA beyond the connection window is a connection error (FLOW_CONTROL_ERROR)",
            |s: &Server| {
                let mut peer = s.session()?;
                let window = u64::from(peer.setting(setting::INITIAL_STREAM_WINDOW)).max(1);
                let total = peer.connection_credit + 1;
                let streams = total.div_ceil(window);
                if streams > u64::from(peer.setting(setting::MAX_CONCURRENT_STREAMS))
                    || streams > 1000
                {
                    return Err(skip(format!(
                        "the connection window ({} bytes) is more than its streams' windows can carry at once",
                        peer.connection_credit
                    )));
                }
                let max_frame = peer.setting(setting::MAX_FRAME_SIZE);
                let mut bytes = Vec::new();
                let mut left = total;
                for n in 0..streams as u32 {
                    let id = client_stream(n);
                    let share = left.min(window);
                    bytes.extend(wire::open(id, 0, ROUTE));
                    bytes.extend(data_frames(id, share, max_frame));
                    left -= share;
                }
                let granted = peer.connection_credit;
                peer.send(&bytes);
                peer.expect_connection_error(code::FLOW_CONTROL_ERROR).map_err(|outcome| {
                    // Credit returned as bytes arrived (§9.4.2) made room.
                    if peer.connection_credit > granted {
                        skip("inconclusive: the server returned connection credit before the window was exceeded")
                    } else {
                        outcome
                    }
                })
            },
        ),
        Case::new(
            "9.5.1",
            Level::Must,
            "WINDOW_UPDATE past 2^31-1 on a stream resets it (FLOW_CONTROL_ERROR)",
            |s: &Server| {
                let mut peer = s.session()?;
                peer.send(&join([
                    wire::open(1, 0, ROUTE),
                    wire::window_update(1, MAX_WINDOW as u32),
                ]));
                peer.expect_reset(1, code::FLOW_CONTROL_ERROR)
            },
        ),
    ]
}

/// `total` bytes of DATA on `stream` in frames of at most `max_frame`
/// (and at most 16,384, the default every endpoint takes).
fn data_frames(stream: u32, total: u64, max_frame: u32) -> Vec<u8> {
    let size = u64::from(max_frame.min(wire::DEFAULT_MAX_FRAME));
    let mut bytes = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(size);
        bytes.extend(wire::data(stream, 0, &vec![0x5a; n as usize]));
        left -= n;
    }
    bytes
}
