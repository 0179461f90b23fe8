//! Push: unsolicited and tied pushes, limits and refusal (spec §5.8, §10).
//!
//! Test code, compiled only under `#[cfg(test)]` (see `lib.rs`).

use bytes::Bytes;

use super::util::{frames, route, sid, Pair, Raw};
use crate::connection::{Config, Event, StreamState};
use crate::error::{ConnectionError, ErrorCode, OpenError, PeerMisbehaved, WriteError};

#[test]
fn unsolicited_push_delivers_data_to_the_client() {
    // §10.1, §6.2.2
    let mut pair = Pair::connected();
    let id = pair
        .server
        .conn
        .push(None, route("clock"), false)
        .expect("push");
    assert_eq!(id, sid(2));
    pair.server
        .conn
        .send(id, Bytes::from_static(b"tick"), true, true)
        .expect("send");
    pair.drive();
    assert!(pair.client.saw(|e| matches!(e, Event::PushReceived { id, associated: None, end_stream: false, .. } if *id == sid(2))));
    assert_eq!(pair.client.received[&id], b"tick");
    assert_eq!(pair.client.conn.stream_count(), 0);
    assert_eq!(pair.server.conn.stream_count(), 0);
}

#[test]
fn tied_push_names_its_request() {
    // §10.1, §10.3
    let mut pair = Pair::connected();
    let request = pair.client.conn.open(route("page"), true).expect("open");
    pair.drive();
    let pushed = pair
        .server
        .conn
        .push(Some(request), route("style"), true)
        .expect("push");
    pair.drive();
    assert!(pair.client.saw(
        |e| matches!(e, Event::PushReceived { id, associated: Some(a), end_stream: true, .. }
        if *id == pushed && *a == request)
    ));
}

#[test]
fn client_cannot_write_on_a_pushed_stream() {
    // §6.2.2
    let mut pair = Pair::connected();
    let id = pair
        .server
        .conn
        .push(None, route("feed"), false)
        .expect("push");
    pair.drive();
    assert_eq!(
        pair.client.conn.stream_state(id),
        Some(StreamState::HalfClosedLocal)
    );
    assert_eq!(
        pair.client
            .conn
            .send(id, Bytes::from_static(b"no"), false, false),
        Err(WriteError::NotWritable)
    );
    assert_eq!(
        pair.server.conn.stream_state(id),
        Some(StreamState::HalfClosedRemote)
    );
}

#[test]
fn client_disables_push_with_max_concurrent_streams_zero() {
    // §6.4.3, §10.2
    let client = Config {
        max_concurrent_streams: 0,
        ..Config::default()
    };
    let mut pair = Pair::with_configs(client.clone(), Config::default());
    pair.drive();
    assert_eq!(
        pair.server.conn.push(None, route("x"), false),
        Err(OpenError::ConcurrencyLimit(0))
    );

    let mut raw = Raw::client(client);
    raw.send(frames::push(2, 0));
    assert_eq!(
        Raw::resets(&raw.take_frames()),
        [(sid(2), ErrorCode::REFUSED_STREAM)]
    );
}

#[test]
fn client_refuses_a_push_by_resetting_it() {
    // §10.4
    let mut pair = Pair::connected();
    let id = pair
        .server
        .conn
        .push(None, route("unwanted"), false)
        .expect("push");
    pair.drive();
    pair.client
        .conn
        .reset(id, ErrorCode::CANCEL)
        .expect("refuse");
    pair.drive();
    assert!(pair.server.saw(|e| matches!(e, Event::StreamReset { id: s, code } if *s == id && *code == ErrorCode::CANCEL)));
    assert_eq!(
        pair.server
            .conn
            .send(id, Bytes::from_static(b"x"), false, false),
        Err(WriteError::UnknownStream)
    );
}

#[test]
fn push_tied_to_a_closed_request_is_cancelled() {
    // §10.3
    let mut raw = Raw::client(Config::default());
    raw.conn.open(route("a"), false).expect("open");
    raw.conn.reset(sid(1), ErrorCode::CANCEL).expect("reset");
    raw.take_frames();
    raw.send(frames::push(2, 1));
    assert_eq!(
        Raw::resets(&raw.take_frames()),
        [(sid(2), ErrorCode::CANCEL)]
    );
    assert_eq!(raw.error, None);
}

#[test]
fn push_tied_to_an_idle_or_even_stream_is_a_connection_error() {
    // §10.3
    for associated in [9, 4] {
        let mut raw = Raw::client(Config::default());
        raw.send(frames::push(2, associated));
        assert!(
            matches!(
                raw.error,
                Some(ConnectionError::Protocol(
                    PeerMisbehaved::PushTiedToInvalidStream
                ))
            ),
            "{associated}"
        );
    }
}

#[test]
fn push_is_server_only() {
    // §5.8.3
    let mut raw = Raw::server(Config::default());
    raw.send(frames::push(2, 0));
    assert!(matches!(
        raw.error,
        Some(ConnectionError::Protocol(
            PeerMisbehaved::PushReceivedByServer
        ))
    ));
    let mut pair = Pair::connected();
    assert_eq!(
        pair.client.conn.push(None, route("x"), false),
        Err(OpenError::WrongSide)
    );
}

#[test]
fn server_push_needs_an_open_associated_stream() {
    // §10.3, local side
    let mut pair = Pair::connected();
    assert_eq!(
        pair.server.conn.push(Some(sid(1)), route("x"), false),
        Err(OpenError::BadAssociatedStream)
    );
}

#[test]
fn a_server_pushes_nothing_before_the_client_preface() {
    // §3.3: not even a PUSH or PING queued by the application.
    let mut raw = Raw::new(crate::stream_id::Side::Server, Config::default());
    assert_eq!(
        raw.conn.push(None, route("early"), true),
        Err(OpenError::NotReady)
    );
    assert!(!raw.conn.ping(raw.now));
    assert!(raw.take_bytes().is_empty());
}
