//! Protections against hostile peers, each with its counter (spec §13).
//!
//! Test code, compiled only under `#[cfg(test)]` (see `lib.rs`).

use std::time::Duration;

use bytes::Bytes;

use super::util::{frames, route, sid, Pair, Raw};
use crate::connection::{Budget, Config, FloodLimits, Stats};
use crate::error::{ConnectionError, ErrorCode, Flood, Timeout};
use crate::frame::{Data, Frame, Ping};
use crate::stream_id::Side;

fn small_budgets() -> Config {
    let budget = Budget::new(5, 1);
    Config {
        floods: FloodLimits {
            peer_resets: budget,
            refused_streams: budget,
            pings: budget,
            settings: budget,
            empty_frames: budget,
            stream_errors: budget,
        },
        ..Config::default()
    }
}

fn assert_flood(raw: &mut Raw, kind: Flood) {
    assert_eq!(raw.error, Some(ConnectionError::Flood(kind)));
    assert_eq!(
        Raw::goaway_code(&raw.take_frames()),
        Some(ErrorCode::ENHANCE_YOUR_CALM)
    );
    assert_eq!(raw.conn.stats().floods, 1);
    assert_eq!(raw.conn.stream_count(), 0, "streams freed after the flood");
}

#[test]
fn rapid_reset_is_answered_with_enhance_your_calm() {
    // §13.2.1 (CVE-2023-44487)
    let mut raw = Raw::server(small_budgets());
    for n in 0..10 {
        let id = 1 + 2 * n;
        raw.send(frames::open(id));
        raw.send(frames::reset(id, ErrorCode::CANCEL));
    }
    assert_eq!(raw.conn.stats().peer_resets, 6);
    assert_flood(&mut raw, Flood::PeerResets);
}

#[test]
fn honest_cancellation_within_the_budget_is_fine() {
    let mut raw = Raw::server(small_budgets());
    for n in 0..5 {
        raw.send(frames::open(1 + 2 * n));
        raw.send(frames::reset(1 + 2 * n, ErrorCode::CANCEL));
        raw.advance(Duration::from_secs(1));
    }
    raw.send(frames::open(11));
    raw.send(frames::reset(11, ErrorCode::CANCEL));
    assert_eq!(raw.error, None);
}

#[test]
fn metadata_flood_is_refused_then_cut_off() {
    // §13.2.2: oversized metadata costs the peer its refusal budget.
    let config = Config {
        max_metadata_size: 100,
        ..small_budgets()
    };
    let mut raw = Raw::server(config);
    let value = [b'x'; 200];
    let metadata =
        crate::frame::Metadata::from_pairs([(&b"k"[..], &value[..])]).expect("encodable");
    for n in 0..10 {
        raw.send(frames::open_with(1 + 2 * n, metadata.clone()));
    }
    assert_eq!(raw.conn.stats().metadata_too_large, 6);
    assert_flood(&mut raw, Flood::RefusedStreams);
}

#[test]
fn settings_flood() {
    // §13.2
    let mut raw = Raw::server(small_budgets());
    for _ in 0..10 {
        raw.send(frames::settings(&[]));
    }
    assert_flood(&mut raw, Flood::Settings);
    assert!(raw.conn.stats().settings_received >= 6);
}

#[test]
fn ping_flood() {
    // §13.2 (CVE-2019-9512)
    let mut raw = Raw::server(small_budgets());
    for n in 0..10u64 {
        raw.send(Frame::Ping(Ping {
            ack: false,
            payload: n.to_be_bytes(),
        }));
    }
    assert_eq!(raw.conn.stats().pings_received, 6);
    assert_flood(&mut raw, Flood::Pings);
}

#[test]
fn taken_stats_count_again_from_zero() {
    let mut raw = Raw::server(Config::default());
    let ping = |n: u64| {
        Frame::Ping(Ping {
            ack: false,
            payload: n.to_be_bytes(),
        })
    };
    raw.send(ping(1));
    raw.send(ping(2));
    let taken = raw.conn.take_stats();
    assert_eq!(taken.pings_received, 2);
    assert!(taken.frames_received >= 2);
    assert_eq!(raw.conn.stats(), Stats::default(), "emptied");
    raw.send(ping(3));
    assert_eq!(raw.conn.stats().pings_received, 1, "counted from zero");
}

#[test]
fn pings_are_answered_with_their_payload() {
    // §5.5
    let mut raw = Raw::server(Config::default());
    raw.send(Frame::Ping(Ping {
        ack: false,
        payload: *b"12345678",
    }));
    let out = raw.take_frames();
    assert!(out.contains(&Frame::Ping(Ping {
        ack: true,
        payload: *b"12345678"
    })));
}

#[test]
fn empty_frame_flood() {
    // §13.2 (CVE-2019-9518)
    let mut raw = Raw::server(small_budgets());
    raw.send(frames::open(1));
    for _ in 0..10 {
        raw.send(frames::data(1, b""));
    }
    assert_eq!(raw.conn.stats().empty_frames, 6);
    assert_flood(&mut raw, Flood::EmptyFrames);
}

#[test]
fn empty_end_message_flood() {
    // §5.1.2: empty messages cost no credit, so they spend the empty-frame
    // budget like flagless empty frames; END_STREAM alone is exempt.
    let mut raw = Raw::server(small_budgets());
    raw.send(frames::open(1));
    for _ in 0..10 {
        raw.send(Frame::Data(Data::new(sid(1), Bytes::new()).end_message()));
    }
    assert_eq!(raw.conn.stats().empty_frames, 6);
    assert_flood(&mut raw, Flood::EmptyFrames);

    let mut raw = Raw::server(small_budgets());
    for n in 0..10 {
        let id = 1 + 2 * n;
        raw.send(frames::open(id));
        raw.send(Frame::Data(Data::new(sid(id), Bytes::new()).end_stream()));
    }
    assert_eq!(
        raw.error, None,
        "END_STREAM on an empty frame is not a flood"
    );
    assert_eq!(raw.conn.stats().empty_frames, 0);
}

#[test]
fn one_byte_frames_cost_about_their_bytes() {
    // §13.1.2: a window filled with one-byte frames (and one-byte messages)
    // holds about the window, not a queue entry per frame.
    let mut raw = Raw::server(Config::default());
    raw.send(frames::open(1));
    raw.send(frames::open(3));
    for n in 0..60_000u32 {
        let byte = Bytes::copy_from_slice(&[n as u8]);
        raw.send(Frame::Data(Data::new(sid(1), byte.clone())));
        raw.send(Frame::Data(Data::new(sid(3), byte).end_message()));
    }
    assert_eq!(raw.error, None);
    assert_eq!(raw.conn.buffered_recv_bytes(), 120_000);
    let memory = raw.conn.recv_memory();
    // Bytes, packed with doubling (at most 2x), plus 4 bytes per boundary.
    assert!(
        memory <= 2 * 120_000 + 4 * 60_000 + 64 * 1024,
        "{memory} bytes held for 120,000 received"
    );
}

#[test]
fn stream_error_flood() {
    // §13.2: a peer that keeps causing stream errors.
    let mut raw = Raw::server(small_budgets());
    for n in 0..10 {
        let id = 1 + 2 * n;
        raw.send(frames::open(id));
        raw.send(frames::window_update(id, crate::frame::MAX_WINDOW));
    }
    assert_flood(&mut raw, Flood::StreamErrors);
}

#[test]
fn oversized_frame_is_a_connection_error() {
    // §4.1.1
    let mut raw = Raw::server(Config::default());
    raw.send(frames::open(1));
    let max = Config::default().max_frame_size as usize;
    raw.send(Frame::Data(Data::new(
        sid(1),
        Bytes::from(vec![0; max + 1]),
    )));
    assert!(matches!(
        raw.error,
        Some(ConnectionError::Frame(crate::FrameError::TooLarge { .. }))
    ));
    assert_eq!(
        Raw::goaway_code(&raw.take_frames()),
        Some(ErrorCode::FRAME_SIZE_ERROR)
    );
}

#[test]
fn a_peer_that_never_reads_cannot_grow_our_buffers() {
    // §13.2.3: writes are refused once the send buffers are full.
    let config = Config {
        stream_send_buffer: 100_000,
        connection_send_buffer: 150_000,
        ..Config::default()
    };
    let mut pair = Pair::with_configs(config, Config::default());
    pair.drive();
    pair.server.reading = false;
    let a = pair.client.conn.open(route("a"), false).expect("open");
    let b = pair.client.conn.open(route("b"), false).expect("open");
    let chunk = Bytes::from(vec![0u8; 30_000]);
    let mut accepted = 0;
    for _ in 0..100 {
        for id in [a, b] {
            accepted += pair
                .client
                .conn
                .send(id, chunk.clone(), false, false)
                .expect("send");
        }
        pair.drive();
    }
    let queued = pair.client.conn.queued_send_bytes();
    assert!(queued <= 150_000, "queued {queued}");
    // Beyond the queue, only what the peer's windows allowed left the sender.
    let in_flight_limit = 2 * 65_536.max(Config::default().initial_stream_window as usize);
    assert!(accepted <= 150_000 + in_flight_limit, "accepted {accepted}");
    assert!(pair.client.conn.stats().writes_blocked > 0);
    assert_eq!(pair.client.conn.send(a, chunk, false, false), Ok(0));
    // Once the peer reads again, the writer is told it may continue.
    pair.server.reading = true;
    pair.drive();
    assert!(pair
        .client
        .saw(|e| matches!(e, crate::Event::Writable { .. })));
}

#[test]
fn a_peer_that_never_reads_our_answers_stops_our_reading() {
    // §13.1: queued answers are bounded; the runtime stops reading.
    let mut raw = Raw::server(Config {
        floods: FloodLimits {
            pings: Budget::new(100_000, 100_000),
            ..FloodLimits::default()
        },
        ..Config::default()
    });
    let mut n = 0u64;
    while raw.conn.wants_read() {
        n += 1;
        raw.send(Frame::Ping(Ping {
            ack: false,
            payload: n.to_be_bytes(),
        }));
        assert!(n < 10_000, "wants_read never turned false");
    }
    raw.take_frames();
    assert!(raw.conn.wants_read());
}

#[test]
fn slow_preface_hits_the_handshake_timeout() {
    // §11.4.1, §13.2.4 (slowloris)
    let mut raw = Raw::new(Side::Server, Config::default());
    raw.feed(b"\x89M");
    raw.advance(Duration::from_secs(5));
    raw.feed(b"U");
    assert_eq!(raw.error, None);
    raw.advance(Duration::from_secs(6));
    assert!(raw.conn.is_closed());
    assert!(raw.events.iter().any(|e| matches!(
        e,
        crate::Event::Closed {
            error: Some(ConnectionError::Timeout(Timeout::Handshake))
        }
    )));
    assert!(
        raw.take_bytes().is_empty(),
        "no GOAWAY to a peer that never spoke mux"
    );
}

#[test]
fn refused_streams_do_not_leak() {
    // §13.1: memory returns to idle after a flood of refusals.
    let config = Config {
        max_concurrent_streams: 1,
        ..Config::default()
    };
    let mut raw = Raw::server(config);
    for n in 0..50 {
        raw.send(frames::open(1 + 2 * n));
        raw.advance(Duration::from_millis(100));
    }
    assert_eq!(raw.error, None);
    assert_eq!(raw.conn.stream_count(), 1);
    assert_eq!(raw.conn.stats().refused_streams, 49);
}
