//! The rules that earlier versions of the spec left open or contradictory,
//! as settled (each test names the sections it reconciles).
//!
//! Test code, compiled only under `#[cfg(test)]` (see `lib.rs`).

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::util::{frames, route, Raw};
use crate::connection::Config;
use crate::error::{ConnectionError, ErrorCode, FrameError, PeerMisbehaved, Timeout};
use crate::frame::{Frame, FrameType, GoAway, Header};
use crate::preface::Preface;
use crate::stream_id::{Side, StreamId};

/// A raw frame: the 9-byte header of spec §4.1, then `payload`, whatever
/// the payload (the frames' own encoders refuse the malformed ones).
fn raw_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    Header {
        len: u32::try_from(payload.len()).expect("short payload"),
        ty: FrameType(kind),
        flags,
        stream: StreamId::new(stream).expect("stream id"),
    }
    .encode(&mut out);
    out.put_slice(payload);
    out.to_vec()
}

#[test]
fn a_version_refusal_is_a_preface_and_a_goaway_without_settings() {
    // §3.4 over §3.6: the refusing server sends no SETTINGS; its GOAWAY is
    // the only frame after its preface.
    let mut raw = Raw::new(Side::Server, Config::default());
    raw.feed(b"\x89MUX\r\n\x00\x07");
    let mut out = raw.take_bytes();
    assert_eq!(Preface::decode(&mut out), Ok(Some(Preface::CURRENT)));
    let frame = Frame::decode(&mut out, 16_384).expect("a frame");
    assert!(matches!(
        frame,
        Some(Frame::GoAway(GoAway {
            code: ErrorCode::UNSUPPORTED_VERSION,
            ..
        }))
    ));
    assert!(out.is_empty(), "nothing after the GOAWAY");
}

#[test]
fn an_unknown_frame_type_cannot_come_first() {
    // §3.6 over §4.4.1: unknown types are ignored, but not in place of the
    // first SETTINGS.
    let mut raw = Raw::after_preface(Side::Server, Config::default());
    raw.feed(&raw_frame(0xee, 0, 0, b"ext"));
    assert_eq!(
        raw.error,
        Some(ConnectionError::Protocol(
            PeerMisbehaved::FirstFrameNotSettings
        ))
    );
    assert_eq!(
        Raw::goaway_code(&raw.take_frames()),
        Some(ErrorCode::PROTOCOL_ERROR)
    );
}

#[test]
fn timeouts_that_end_a_connection_say_so_in_their_goaway() {
    // §11.4.1 and §11.2.3 against NO_ERROR's promise of a graceful end
    // (§11.3.1): a missing SETTINGS after a valid preface is SETTINGS_TIMEOUT;
    // an unanswered keepalive is CANCEL (an immediate end, §11.3.2).
    let mut raw = Raw::after_preface(Side::Server, Config::default());
    raw.advance(Duration::from_secs(11));
    assert_eq!(
        raw.error.clone().or(raw.closed_error()),
        Some(ConnectionError::Timeout(Timeout::Handshake))
    );
    assert_eq!(
        Raw::goaway_code(&raw.take_frames()),
        Some(ErrorCode::SETTINGS_TIMEOUT)
    );

    let config = Config {
        keepalive_interval: Some(Duration::from_secs(5)),
        keepalive_timeout: Duration::from_secs(3),
        ..Config::default()
    };
    let mut raw = Raw::server(config);
    raw.advance(Duration::from_secs(6)); // the keepalive PING goes out
    raw.advance(Duration::from_secs(4)); // and is not answered
    assert_eq!(
        raw.closed_error(),
        Some(ConnectionError::Timeout(Timeout::Keepalive))
    );
    assert_eq!(
        Raw::goaway_code(&raw.take_frames()),
        Some(ErrorCode::CANCEL)
    );
}

#[test]
fn a_peer_that_sent_goaway_may_not_open_streams() {
    // §11.3.1: "The sender MUST NOT open new streams after sending GOAWAY."
    let mut raw = Raw::server(Config::default());
    raw.send(frames::open(1)); // active, so the GOAWAY does not end the connection
    raw.send(Frame::GoAway(GoAway {
        last_stream: StreamId::default(),
        code: ErrorCode::NO_ERROR,
        debug: Bytes::new(),
    }));
    raw.send(frames::open(3));
    assert_eq!(
        raw.error,
        Some(ConnectionError::Protocol(
            PeerMisbehaved::StreamOpenedAfterGoAway
        ))
    );

    let mut raw = Raw::client(Config::default());
    let ours = raw.conn.open(route("a"), false).expect("open");
    raw.send(Frame::GoAway(GoAway {
        last_stream: ours, // processed: it keeps the connection open
        code: ErrorCode::NO_ERROR,
        debug: Bytes::new(),
    }));
    raw.send(frames::push(2, 0));
    assert_eq!(
        raw.error,
        Some(ConnectionError::Protocol(
            PeerMisbehaved::StreamOpenedAfterGoAway
        ))
    );
}

#[test]
fn a_zero_window_increment_is_an_error_even_on_a_closed_stream() {
    // §5.7 over the §6.3 table: the table applies to frames that pass §4
    // and §5's checks; an increment of 0 fails them whatever the state.
    let mut raw = Raw::server(Config::default());
    raw.send(frames::open(1));
    raw.send(frames::reset(1, ErrorCode::CANCEL)); // stream 1 is closed
    assert_eq!(raw.error, None);
    raw.feed(&raw_frame(0x6, 0, 1, &0u32.to_be_bytes()));
    assert_eq!(
        raw.error,
        Some(ConnectionError::Frame(FrameError::ZeroWindowIncrement))
    );
}

#[test]
fn malformed_metadata_is_a_connection_error_even_over_the_limit() {
    // §5.2.1 before §5.2.2: syntax is checked before limits, so a block
    // that is both malformed and too large ends the connection (it is not
    // refused as METADATA_TOO_LARGE).
    let mut raw = Raw::server(Config {
        max_metadata_size: 64,
        ..Config::default()
    });
    let mut block = vec![0u8]; // an entry with Name Len 0: malformed
    block.extend_from_slice(&[0x5a; 200]);
    raw.feed(&raw_frame(0x1, 0, 1, &block));
    assert_eq!(
        raw.error,
        Some(ConnectionError::Frame(FrameError::MalformedMetadata))
    );
    assert_eq!(raw.conn.stats().metadata_too_large, 0);
}
