//! Streams: handshake, lifecycle, IDs, half-close, messages, resets (spec §3, §6, §7).
//!
//! Test code, compiled only under `#[cfg(test)]` (see `lib.rs`).

use core::time::Duration;

use bytes::Bytes;

use super::util::{frames, route, sid, Pair, Raw};
use crate::connection::{Config, Event, StreamState};
use crate::error::{
    ConnectionError, ErrorCode, OpenError, PeerMisbehaved, PrefaceError, WriteError,
};
use crate::frame::{Frame, Ping, Settings};
use crate::stream_id::{Side, StreamId};

#[test]
fn handshake_exchanges_settings_and_measures_rtt() {
    // §3, §3.6, §11.1, §11.2.2
    let mut pair = Pair::new();
    pair.set_link(Duration::from_micros(50), None);
    pair.drive();
    for endpoint in [&pair.client, &pair.server] {
        assert!(endpoint.saw(|e| matches!(e, Event::Connected)));
        assert!(endpoint.saw(|e| matches!(e, Event::SettingsAcked)));
        assert!(endpoint.conn.is_established());
        assert_eq!(endpoint.conn.min_rtt(), Some(Duration::from_micros(100)));
        assert_eq!(endpoint.error, None);
    }
}

/// A server whose SETTINGS took 5 ms to be acknowledged (a peer setting
/// up), and the one PING it sent once they were (§9.6.7).
fn server_after_a_slow_handshake() -> (Raw, Ping) {
    let mut server = Raw::after_preface(Side::Server, Config::default());
    server.send(Frame::Settings(Settings::new(&[])));
    server.take_frames();
    server.advance(Duration::from_millis(5));
    server.send(Frame::Settings(Settings::ack()));
    assert_eq!(server.conn.min_rtt(), Some(Duration::from_millis(5)));
    let pings: Vec<Ping> = server
        .take_frames()
        .into_iter()
        .filter_map(|frame| match frame {
            Frame::Ping(ping) => Some(ping),
            _ => None,
        })
        .collect();
    let [ping] = pings[..] else {
        panic!("expected one PING after the handshake, got {pings:?}");
    };
    assert!(!ping.ack);
    (server, ping)
}

#[test]
fn a_ping_after_the_handshake_measures_the_path_not_the_set_up() {
    // §9.6.7: the PING sent once the SETTINGS are acknowledged comes back in
    // 40 µs, and auto-tuning uses that, not the set-up's 5 ms.
    let (mut server, ping) = server_after_a_slow_handshake();
    server.advance(Duration::from_micros(40));
    server.send(Frame::Ping(Ping {
        ack: true,
        payload: ping.payload,
    }));
    assert_eq!(server.conn.min_rtt(), Some(Duration::from_micros(40)));
    // The connection's own PING is not the application's to hear about: a
    // `ping()` waiting for its answer must not take this one's.
    assert!(!server
        .events
        .iter()
        .any(|event| matches!(event, Event::PingAcked { .. })));
}

#[test]
fn an_answer_read_at_the_instant_its_ping_left_measures_nothing() {
    // §11.2.2: a runtime that reads its clock once per batch of work can
    // send a PING and read its ACK at the same instant. That sample is not
    // a round trip; kept as the minimum, it would stop every window's
    // growth for the connection's life (§9.6.2).
    let (mut server, ping) = server_after_a_slow_handshake();
    server.send(Frame::Ping(Ping {
        ack: true,
        payload: ping.payload,
    }));
    assert_eq!(server.conn.min_rtt(), Some(Duration::from_millis(5)));
    assert_eq!(server.conn.rtt(), Some(Duration::from_millis(5)));
}

#[test]
fn request_and_response_leave_no_state_behind() {
    // §6.2: open → half-closed → closed, then the stream leaves memory.
    let mut pair = Pair::connected();
    let id = pair.client.conn.open(route("echo"), false).expect("open");
    assert_eq!(id, sid(1));
    assert_eq!(
        pair.client
            .conn
            .send(id, Bytes::from_static(b"ping"), true, true),
        Ok(4)
    );
    pair.drive();
    assert!(pair.server.saw(
        |e| matches!(e, Event::StreamOpened { id, metadata, end_stream: false }
        if *id == sid(1) && metadata.get(b"route") == Some(&b"echo"[..]))
    ));
    assert_eq!(pair.server.received[&id], b"ping");
    assert_eq!(pair.server.finished, [id]);
    assert_eq!(
        pair.server.conn.stream_state(id),
        Some(StreamState::HalfClosedRemote)
    );
    assert_eq!(
        pair.server
            .conn
            .send(id, Bytes::from_static(b"pong"), true, true),
        Ok(4)
    );
    pair.drive();
    assert_eq!(pair.client.received[&id], b"pong");
    for endpoint in [&pair.client, &pair.server] {
        assert_eq!(
            endpoint.conn.stream_count(),
            0,
            "{:?} kept stream state",
            endpoint.conn.side()
        );
        assert_eq!(endpoint.conn.active_streams(), (0, 0));
    }
}

#[test]
fn client_ids_are_odd_and_increasing() {
    // §6.1.1, §6.1.2
    let mut pair = Pair::connected();
    let ids: Vec<StreamId> = (0..4)
        .map(|_| pair.client.conn.open(route("x"), true).expect("open"))
        .collect();
    assert_eq!(ids, [sid(1), sid(3), sid(5), sid(7)]);
    assert_eq!(
        pair.server.conn.open(route("x"), false),
        Err(OpenError::WrongSide)
    );
}

#[test]
fn each_direction_half_closes_independently() {
    // §6.2: the client finishes first; the server keeps sending, then finishes.
    let mut pair = Pair::connected();
    let id = pair.client.conn.open(route("stream"), true).expect("open");
    pair.drive();
    assert_eq!(
        pair.client.conn.stream_state(id),
        Some(StreamState::HalfClosedLocal)
    );
    assert_eq!(
        pair.client
            .conn
            .send(id, Bytes::from_static(b"x"), false, false),
        Err(WriteError::NotWritable)
    );
    for n in 0..5u8 {
        assert_eq!(
            pair.server
                .conn
                .send(id, Bytes::from(vec![n; 3]), true, false),
            Ok(3)
        );
        pair.drive();
    }
    assert_eq!(
        pair.client.conn.stream_state(id),
        Some(StreamState::HalfClosedLocal)
    );
    pair.server.conn.finish(id).expect("finish");
    pair.drive();
    assert_eq!(pair.client.received[&id].len(), 15);
    assert_eq!(pair.client.finished, [id]);
    assert_eq!(pair.client.conn.stream_count(), 0);
}

#[test]
fn message_boundaries_survive_frame_splits() {
    // §7.1: a message larger than a frame, an empty message, then a partial one.
    let mut pair = Pair::connected();
    let id = pair
        .client
        .conn
        .open(route("messages"), false)
        .expect("open");
    let big = Bytes::from(vec![7u8; 100_000]);
    assert_eq!(pair.client.conn.send(id, big, true, false), Ok(100_000));
    assert_eq!(pair.client.conn.send(id, Bytes::new(), true, false), Ok(0));
    assert_eq!(
        pair.client
            .conn
            .send(id, Bytes::from_static(b"tail"), false, true),
        Ok(4)
    );
    pair.drive();
    assert_eq!(pair.server.boundaries, [(id, 100_000), (id, 100_000)]);
    assert_eq!(pair.server.received[&id].len(), 100_004);
    assert_eq!(pair.server.finished, [id]);
}

#[test]
fn reset_ends_both_directions_and_frees_state() {
    // §5.3, §6.2
    let mut pair = Pair::connected();
    let id = pair.client.conn.open(route("slow"), false).expect("open");
    pair.client
        .conn
        .send(id, Bytes::from_static(b"abc"), false, false)
        .expect("send");
    pair.drive();
    pair.client
        .conn
        .reset(id, ErrorCode::CANCEL)
        .expect("reset");
    pair.drive();
    assert!(pair.server.saw(|e| matches!(e, Event::StreamReset { id: s, code } if *s == id && *code == ErrorCode::CANCEL)));
    for endpoint in [&pair.client, &pair.server] {
        assert_eq!(endpoint.conn.stream_count(), 0);
        assert_eq!(endpoint.conn.active_streams(), (0, 0));
    }
    assert_eq!(
        pair.server
            .conn
            .send(id, Bytes::from_static(b"late"), false, false),
        Err(WriteError::UnknownStream)
    );
}

#[test]
fn a_reset_stream_lets_go_of_what_it_had_queued() {
    // §5.3: queued data is dropped with the stream, not kept with its
    // memory for the next one.
    let mut pair = Pair::connected();
    pair.server.auto_read = false;
    let payload = Bytes::from(vec![7u8; 1 << 20]);
    let id = pair.client.conn.open(route("slow"), false).expect("open");
    pair.client
        .conn
        .send(id, payload.clone(), false, false)
        .expect("send");
    pair.drive();
    assert!(
        !payload.is_unique(),
        "more than the stream's window waits in its queue"
    );
    pair.client
        .conn
        .reset(id, ErrorCode::CANCEL)
        .expect("reset");
    pair.drive();
    assert!(payload.is_unique(), "the queue went with the stream");
    pair.server.auto_read = true;
    let next = pair.client.conn.open(route("next"), false).expect("open");
    pair.client
        .conn
        .send(next, Bytes::from_static(b"abc"), true, true)
        .expect("send");
    pair.drive();
    assert_eq!(pair.server.received[&next], b"abc"[..]);
    assert_eq!(pair.server.finished, [next]);
}

#[test]
fn frames_on_idle_streams_are_connection_errors() {
    // §6.3: DATA, RESET, WINDOW_UPDATE on a stream never opened.
    for (frame, misbehaved) in [
        (frames::data(1, b"x"), PeerMisbehaved::DataOnIdleStream),
        (
            frames::reset(3, ErrorCode::CANCEL),
            PeerMisbehaved::ResetOnIdleStream,
        ),
        (
            frames::window_update(5, 10),
            PeerMisbehaved::WindowUpdateOnIdleStream,
        ),
    ] {
        let mut raw = Raw::server(Config::default());
        raw.send(frame);
        let out = raw.take_frames();
        assert_eq!(Raw::goaway_code(&out), Some(ErrorCode::PROTOCOL_ERROR));
        assert_eq!(raw.error, Some(ConnectionError::Protocol(misbehaved)));
        assert_eq!(misbehaved.section(), "6.3");
        assert!(raw.conn.is_closed());
    }
}

#[test]
fn data_on_a_closed_stream_is_discarded_and_credited() {
    // §6.5.1, §9.4.3
    let mut raw = Raw::server(Config::default());
    raw.send(frames::open(1));
    raw.send(frames::reset(1, ErrorCode::CANCEL));
    let (_, granted_before) = raw.conn.connection_windows();
    raw.send(frames::data_len(1, 1000));
    assert_eq!(raw.error, None);
    assert_eq!(raw.conn.stats().frames_on_closed_streams, 1);
    assert_eq!(raw.conn.connection_windows().1, granted_before - 1000);
    raw.send(frames::window_update(1, 5));
    raw.send(frames::reset(1, ErrorCode::CANCEL));
    assert_eq!(raw.conn.stats().frames_on_closed_streams, 3);
    assert_eq!(raw.error, None);
}

#[test]
fn data_after_end_stream_is_a_stream_error() {
    // §6.3: half-closed (remote) receiving DATA → RESET STREAM_CLOSED.
    let mut raw = Raw::server(Config::default());
    raw.send(frames::open(1));
    raw.send(Frame::Data(
        crate::frame::Data::new(sid(1), Bytes::from_static(b"a")).end_stream(),
    ));
    raw.take_frames();
    raw.send(frames::data(1, b"b"));
    let out = raw.take_frames();
    assert_eq!(Raw::resets(&out), [(sid(1), ErrorCode::STREAM_CLOSED)]);
    assert_eq!(raw.error, None);
}

#[test]
fn stream_ids_must_increase() {
    // §6.1.2: reuse and going back are connection errors.
    let mut raw = Raw::server(Config::default());
    raw.send(frames::open(5));
    raw.send(frames::open(3));
    assert_eq!(
        Raw::goaway_code(&raw.take_frames()),
        Some(ErrorCode::PROTOCOL_ERROR)
    );
    assert!(matches!(
        raw.error,
        Some(ConnectionError::Protocol(
            PeerMisbehaved::StreamIdNotIncreasing
        ))
    ));
}

#[test]
fn skipped_ids_are_closed() {
    // §6.1.2: opening 7 closes 1, 3 and 5 implicitly.
    let mut raw = Raw::server(Config::default());
    raw.send(frames::open(7));
    raw.send(frames::data(3, b"x"));
    assert_eq!(raw.error, None);
    assert_eq!(raw.conn.stats().frames_on_closed_streams, 1);
}

#[test]
fn open_is_client_only_and_odd() {
    // §5.2.3
    let mut raw = Raw::server(Config::default());
    raw.send(frames::open(2));
    assert_eq!(
        Raw::goaway_code(&raw.take_frames()),
        Some(ErrorCode::PROTOCOL_ERROR)
    );
    let mut raw = Raw::client(Config::default());
    raw.send(frames::open(1));
    assert_eq!(
        Raw::goaway_code(&raw.take_frames()),
        Some(ErrorCode::PROTOCOL_ERROR)
    );
}

#[test]
fn concurrency_limit_refuses_with_a_retryable_code() {
    // §6.4.1 (local check) and §6.4.2 (refusal on the wire).
    let server = Config {
        max_concurrent_streams: 2,
        ..Config::default()
    };
    let mut pair = Pair::with_configs(Config::default(), server.clone());
    pair.drive();
    pair.client.conn.open(route("a"), false).expect("first");
    pair.client.conn.open(route("b"), false).expect("second");
    assert_eq!(
        pair.client.conn.open(route("c"), false),
        Err(OpenError::ConcurrencyLimit(2))
    );

    let mut raw = Raw::server(server);
    for id in [1, 3, 5] {
        raw.send(frames::open(id));
    }
    let out = raw.take_frames();
    assert_eq!(Raw::resets(&out), [(sid(5), ErrorCode::REFUSED_STREAM)]);
    assert_eq!(raw.conn.stats().refused_streams, 1);
    assert_eq!(raw.conn.active_streams(), (0, 2));
}

#[test]
fn first_frame_must_be_settings() {
    // §3.6
    let mut raw = Raw::after_preface(Side::Server, Config::default());
    raw.send(frames::open(1));
    assert!(matches!(
        raw.error,
        Some(ConnectionError::Protocol(
            PeerMisbehaved::FirstFrameNotSettings
        ))
    ));
    assert_eq!(
        Raw::goaway_code(&raw.take_frames()),
        Some(ErrorCode::PROTOCOL_ERROR)
    );
}

#[test]
fn wrong_magic_is_refused_without_a_goaway() {
    // §3.3: the peer does not speak mux; nothing is sent back.
    let mut raw = Raw::new(Side::Server, Config::default());
    raw.feed(b"GET / HTTP/1.1\r\n");
    assert_eq!(
        raw.error,
        Some(ConnectionError::Preface(PrefaceError::BadMagic))
    );
    assert!(raw.take_bytes().is_empty());
    assert!(raw.conn.is_closed());
}

#[test]
fn unsupported_version_gets_our_preface_and_a_goaway() {
    // §3.4
    let mut raw = Raw::new(Side::Server, Config::default());
    raw.feed(b"\x89MUX\r\n\x00\x07");
    assert_eq!(
        raw.error,
        Some(ConnectionError::Preface(PrefaceError::UnsupportedVersion(
            7
        )))
    );
    let mut out = raw.take_bytes();
    assert_eq!(
        crate::preface::Preface::decode(&mut out),
        Ok(Some(crate::preface::Preface::CURRENT))
    );
    let goaway = Frame::decode(&mut out, 16_384)
        .expect("frame")
        .expect("complete");
    assert!(
        matches!(goaway, Frame::GoAway(g) if g.code == ErrorCode::UNSUPPORTED_VERSION && g.last_stream.value() == 0)
    );
}

#[test]
fn server_sends_nothing_before_the_client_preface() {
    // §3.3
    let mut raw = Raw::new(Side::Server, Config::default());
    assert!(raw.take_bytes().is_empty());
    raw.feed(b"\x89MU");
    assert!(raw.take_bytes().is_empty());
    assert_eq!(raw.error, None);
}

#[test]
fn client_refuses_a_server_of_another_version() {
    // §3.5
    let mut raw = Raw::new(Side::Client, Config::default());
    raw.feed(b"\x89MUX\r\n\x00\x02");
    assert_eq!(
        raw.error,
        Some(ConnectionError::Preface(PrefaceError::UnsupportedVersion(
            2
        )))
    );
}

#[test]
fn settings_ack_without_settings_is_an_error() {
    // §5.4.2.1
    let mut raw = Raw::server(Config::default());
    raw.send(Frame::Settings(Settings::ack()));
    assert_eq!(
        raw.error,
        Some(ConnectionError::Protocol(
            PeerMisbehaved::UnexpectedSettingsAck
        ))
    );
    assert_eq!(
        Raw::goaway_code(&raw.take_frames()),
        Some(ErrorCode::PROTOCOL_ERROR)
    );
}

#[test]
fn unknown_frames_and_settings_are_ignored() {
    // §4.4.1, §4.4.2
    let mut raw = Raw::server(Config::default());
    raw.send(Frame::Unknown(crate::frame::Unknown {
        ty: 0x42,
        flags: 0xff,
        stream: sid(99),
        payload: Bytes::from_static(b"extension"),
    }));
    raw.send(frames::settings(&[(crate::frame::SettingId(0x7777), 1)]));
    let out = raw.take_frames();
    assert_eq!(raw.error, None);
    assert!(out.iter().any(|f| matches!(f, Frame::Settings(s) if s.ack)));
}

#[test]
fn metadata_beyond_the_limit_resets_the_stream() {
    // §5.2.2
    let config = Config {
        max_metadata_size: 16_384,
        ..Config::default()
    };
    let mut raw = Raw::server(config);
    let big = vec![b'v'; 20_000];
    let metadata = crate::frame::Metadata::from_pairs([(&b"k"[..], &big[..])]).expect("encodable");
    raw.send(frames::open_with(1, metadata));
    let out = raw.take_frames();
    assert_eq!(Raw::resets(&out), [(sid(1), ErrorCode::METADATA_TOO_LARGE)]);
    assert_eq!(raw.conn.stats().metadata_too_large, 1);
    assert!(!raw
        .events
        .iter()
        .any(|e| matches!(e, Event::StreamOpened { .. })));
    // The ID was used (§6.1.3): 1 cannot be opened again.
    raw.send(frames::open(1));
    assert!(matches!(
        raw.error,
        Some(ConnectionError::Protocol(
            PeerMisbehaved::StreamIdNotIncreasing
        ))
    ));
}

#[test]
fn local_open_checks_the_peer_metadata_limit() {
    let mut pair = Pair::connected();
    let big = vec![b'v'; 20_000];
    let metadata = crate::frame::Metadata::from_pairs([(&b"k"[..], &big[..])]).expect("encodable");
    assert!(matches!(
        pair.client.conn.open(metadata, false),
        Err(OpenError::MetadataTooLarge { .. })
    ));
}

#[test]
fn a_refusal_before_settings_ends_the_connection_with_its_code() {
    // §3.6, §16.2: preface and GOAWAY alone, as a TLS-only port answers.
    let now = std::time::Instant::now();
    let mut client = crate::Connection::new(Side::Client, Config::default(), now);
    let mut hello = bytes::BytesMut::new();
    while client.poll_transmit(now, &mut hello) {}
    let mut answer = crate::preface::refusal(
        &hello,
        ErrorCode::INADEQUATE_SECURITY,
        "this port requires TLS",
    )
    .expect("a mux client is answered");
    let _ = client.handle_read(now, &mut answer);
    assert!(client.is_closed());
    let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
    assert!(
        events.iter().any(|event| matches!(
            event,
            Event::Closed {
                error: Some(ConnectionError::Remote {
                    code: ErrorCode::INADEQUATE_SECURITY
                })
            }
        )),
        "events: {events:?}"
    );
}

#[test]
fn small_and_large_data_frames_arrive_alike_however_reads_cut_them() {
    // §5.1, §7: small DATA frames are read in place and large ones sliced
    // out of the buffer; both paths keep order, boundaries and the count.
    let large = vec![0x5a; 2000];
    let sent: [(&[u8], bool, bool); 5] = [
        (b"a", true, false),
        (&large, false, false),
        (b"bc", true, false),
        (b"", true, false),
        (b"d", false, true),
    ];
    let mut wire = bytes::BytesMut::new();
    for (payload, end_message, end_stream) in sent {
        let mut data = crate::frame::Data::new(sid(1), Bytes::copy_from_slice(payload));
        data.end_message = end_message;
        data.end_stream = end_stream;
        Frame::Data(data).encode(&mut wire).expect("encodes");
    }
    for piece in [1, 7, 1000, wire.len()] {
        let mut raw = Raw::server(Config::default());
        raw.send(frames::open(1));
        for bytes in wire.chunks(piece) {
            raw.feed(bytes);
        }
        assert!(raw.error.is_none(), "{:?}", raw.error);
        let mut messages = Vec::new();
        let mut message = Vec::new();
        while let Ok(Some(chunk)) = raw.conn.read(sid(1), usize::MAX) {
            message.extend_from_slice(&chunk.bytes);
            if chunk.end_message || chunk.fin {
                messages.push(std::mem::take(&mut message));
            }
        }
        let mut expected = vec![b"a".to_vec(), large.clone()];
        expected[1].extend_from_slice(b"bc");
        expected.extend([Vec::new(), b"d".to_vec()]);
        assert_eq!(messages, expected, "reads of {piece} bytes");
        assert_eq!(raw.conn.stats().frames_received_by_type[0], 5);
    }
}

/// A connected pair whose client has a stream open with a 4 KiB send
/// buffer, so that larger sends are accepted in part.
fn a_stream_with_a_small_send_buffer() -> (Pair, StreamId) {
    let config = Config {
        stream_send_buffer: 4096,
        ..Config::default()
    };
    let mut pair = Pair::with_configs(config.clone(), config);
    let id = pair.client.conn.open(route("a"), false).expect("open");
    (pair, id)
}

#[test]
fn lent_bytes_arrive_as_handed_over_ones_do() {
    // §7: `send_copy` takes a prefix when the send buffer is nearly full,
    // as `send` does, and the peer reads exactly the bytes lent.
    let (mut pair, id) = a_stream_with_a_small_send_buffer();
    let mut sent = Vec::new();
    for n in 0..100u8 {
        let message = vec![n; 1 + usize::from(n) * 3];
        let mut rest = &message[..];
        while !rest.is_empty() {
            let accepted = pair
                .client
                .conn
                .send_copy(id, rest, true, false)
                .expect("the stream is open");
            rest = &rest[accepted..];
            if accepted == 0 {
                pair.drive();
            }
        }
        sent.extend_from_slice(&message);
    }
    pair.client.conn.finish(id).expect("finish");
    pair.drive();
    assert_eq!(pair.server.received[&id], sent);
}

#[test]
fn bytes_sent_from_the_front_leave_the_rest_in_place() {
    // §7: `send_front` takes what `send` would accept and leaves the rest in
    // the caller's buffer; the peer reads every byte once, in order.
    let (mut pair, id) = a_stream_with_a_small_send_buffer();
    let mut sent = Vec::new();
    let mut partial = 0;
    for n in 0..50u8 {
        let message = vec![n; 1 + usize::from(n) * 200];
        let mut rest = Bytes::from(message.clone());
        while !rest.is_empty() {
            let before = rest.len();
            let accepted = pair
                .client
                .conn
                .send_front(id, &mut rest, true, false)
                .expect("the stream is open");
            assert_eq!(rest.len(), before - accepted, "the rest stays in place");
            partial += usize::from(!rest.is_empty());
            if !rest.is_empty() {
                pair.drive();
            }
        }
        sent.extend_from_slice(&message);
    }
    assert!(
        partial > 0,
        "the send buffer never filled: nothing was left"
    );
    pair.client.conn.finish(id).expect("finish");
    pair.drive();
    assert_eq!(pair.server.received[&id], sent);
}
