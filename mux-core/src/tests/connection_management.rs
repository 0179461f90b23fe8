//! Settings, ping, keepalive, idle timeout and GOAWAY (spec §5.4, §11).
//!
//! Test code, compiled only under `#[cfg(test)]` (see `lib.rs`).

use std::time::Duration;

use bytes::Bytes;

use super::util::{frames, route, sid, Pair, Raw};
use crate::connection::{Config, Event};
use crate::error::{ConnectionError, ErrorCode, OpenError, PeerMisbehaved, Timeout};
use crate::frame::{Frame, GoAway, SettingId};
use crate::stream_id::{Side, StreamId};

#[test]
fn a_refusal_by_goaway_is_told_before_the_connection_closes() {
    // §11.3: the client learns its last stream was not processed (and may
    // retry it) before the connection it was on ends.
    let mut pair = Pair::connected();
    pair.server
        .conn
        .close(pair.now, ErrorCode::NO_ERROR, "idle");
    let late = pair.client.conn.open(route("a"), true).expect("open");
    pair.drive();
    let position = |pred: &dyn Fn(&Event) -> bool| pair.client.events.iter().position(pred);
    let refused = position(
        &|e| matches!(e, Event::StreamReset { id, code: ErrorCode::REFUSED_STREAM } if *id == late),
    )
    .expect("the stream is refused");
    let closed = position(&|e| matches!(e, Event::Closed { .. })).expect("the connection ends");
    assert!(refused < closed, "{:?}", pair.client.events);
}

#[test]
fn graceful_goaway_lets_accepted_streams_finish() {
    // §11.3.1: nothing accepted is lost; new streams are refused.
    let mut pair = Pair::connected();
    let first = pair.client.conn.open(route("a"), false).expect("open");
    pair.client
        .conn
        .send(first, Bytes::from_static(b"req"), true, true)
        .expect("send");
    pair.drive();
    pair.server
        .conn
        .close(pair.now, ErrorCode::NO_ERROR, "restarting");
    // A stream the client opens before it hears of the GOAWAY.
    let late = pair.client.conn.open(route("b"), true).expect("open");
    pair.drive();
    assert!(pair.client.saw(|e| matches!(e, Event::GoAway { last_stream, code: ErrorCode::NO_ERROR, .. } if *last_stream == first)));
    assert!(pair.client.saw(
        |e| matches!(e, Event::StreamReset { id, code: ErrorCode::REFUSED_STREAM } if *id == late)
    ));
    assert_eq!(
        pair.client.conn.open(route("c"), true),
        Err(OpenError::GoingAway)
    );
    // The accepted stream still completes.
    pair.server
        .conn
        .send(first, Bytes::from_static(b"resp"), true, true)
        .expect("respond");
    pair.drive();
    assert_eq!(pair.client.received[&first], b"resp");
    for endpoint in [&pair.client, &pair.server] {
        assert_eq!(
            endpoint.closed_with(),
            Some(None),
            "{:?} did not close cleanly",
            endpoint.conn.side()
        );
        assert!(endpoint.conn.is_closed());
    }
}

#[test]
fn goaway_with_an_error_ends_everything() {
    // §11.3.2, §8.3
    let mut pair = Pair::connected();
    let id = pair.client.conn.open(route("a"), false).expect("open");
    pair.drive();
    pair.server
        .conn
        .close(pair.now, ErrorCode::INTERNAL_ERROR, "bug");
    pair.drive();
    assert_eq!(
        pair.client.closed_with(),
        Some(Some(ConnectionError::Remote {
            code: ErrorCode::INTERNAL_ERROR
        }))
    );
    assert_eq!(
        pair.server.closed_with(),
        Some(Some(ConnectionError::Local {
            code: ErrorCode::INTERNAL_ERROR
        }))
    );
    assert_eq!(pair.client.conn.stream_state(id), None);
}

#[test]
fn goaway_may_not_raise_last_stream_id() {
    // §11.3.1
    let mut raw = Raw::client(Config::default());
    let goaway = |last: u32| {
        Frame::GoAway(GoAway {
            last_stream: StreamId::new(last).unwrap_or_default(),
            code: ErrorCode::NO_ERROR,
            debug: Bytes::new(),
        })
    };
    raw.conn.open(route("a"), false).expect("open");
    raw.send(goaway(1));
    assert_eq!(raw.error, None);
    raw.send(goaway(3));
    assert!(matches!(
        raw.error,
        Some(ConnectionError::Protocol(
            PeerMisbehaved::GoAwayRaisedLastStream
        ))
    ));
}

#[test]
fn drain_timeout_turns_a_stuck_shutdown_into_an_abort() {
    // §11.3.3
    let mut pair = Pair::connected();
    pair.client
        .conn
        .open(route("forever"), false)
        .expect("open");
    pair.drive();
    pair.server.conn.close(pair.now, ErrorCode::NO_ERROR, "");
    pair.advance(Config::default().drain_timeout + Duration::from_secs(1));
    assert_eq!(
        pair.server.closed_with(),
        Some(Some(ConnectionError::Timeout(Timeout::Drain)))
    );
    assert_eq!(
        pair.client.closed_with(),
        Some(Some(ConnectionError::Remote {
            code: ErrorCode::CANCEL
        }))
    );
}

#[test]
fn unacknowledged_settings_time_out() {
    // §5.4.2.4
    let mut raw = Raw::after_preface(Side::Server, Config::default());
    raw.send(frames::settings(&[]));
    raw.take_frames();
    raw.advance(Duration::from_secs(11));
    assert!(raw.events.iter().any(|e| matches!(
        e,
        Event::Closed {
            error: Some(ConnectionError::Timeout(Timeout::SettingsAck))
        }
    )));
    assert_eq!(
        Raw::goaway_code(&raw.take_frames()),
        Some(ErrorCode::SETTINGS_TIMEOUT)
    );
}

#[test]
fn ping_measures_the_round_trip() {
    // §11.2.2
    let mut pair = Pair::new();
    pair.set_link(Duration::from_millis(20), None);
    pair.drive();
    assert!(pair.client.conn.ping(pair.now));
    pair.drive();
    let rtt = pair.client.events.iter().rev().find_map(|e| match e {
        Event::PingAcked { rtt } => Some(*rtt),
        _ => None,
    });
    assert_eq!(rtt, Some(Duration::from_millis(40)));
    assert_eq!(pair.client.conn.rtt(), Some(Duration::from_millis(40)));
}

#[test]
fn keepalive_pings_an_idle_peer_and_detects_a_dead_one() {
    // §11.2.3
    let config = Config {
        keepalive_interval: Some(Duration::from_secs(5)),
        keepalive_timeout: Duration::from_secs(3),
        ..Config::default()
    };
    let mut pair = Pair::with_configs(config, Config::default());
    pair.drive();
    let pings_before = pair.server.conn.stats().pings_received;
    pair.advance(Duration::from_secs(6));
    assert_eq!(
        pair.server.conn.stats().pings_received,
        pings_before + 1,
        "keepalive PING sent"
    );
    assert!(!pair.client.conn.is_closed(), "answered in time");
    // The server stops reading: the next keepalive goes unanswered.
    pair.server.reading = false;
    pair.advance(Duration::from_secs(10));
    assert_eq!(
        pair.client.closed_with(),
        Some(Some(ConnectionError::Timeout(Timeout::Keepalive)))
    );
}

#[test]
fn keepalive_waits_for_the_handshake() {
    // §3.3, §11.2.3: a keepalive shorter than the handshake timeout must not
    // make a server speak before the client's preface, nor PING a peer
    // whose first SETTINGS has not come (the handshake timer watches it).
    let config = Config {
        keepalive_interval: Some(Duration::from_secs(1)),
        handshake_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    let mut silent = Raw::new(Side::Server, config.clone());
    silent.advance(Duration::from_secs(3));
    assert!(silent.take_bytes().is_empty(), "nothing before the preface");
    let mut no_settings = Raw::after_preface(Side::Server, config);
    no_settings.take_frames(); // its preface, SETTINGS and RTT probe (§11.2.2)
    no_settings.advance(Duration::from_secs(3));
    let frames = no_settings.take_frames();
    assert!(
        !frames.iter().any(|f| matches!(f, Frame::Ping(_))),
        "no keepalive PING during the handshake: {frames:?}"
    );
    no_settings.advance(Duration::from_secs(3));
    assert_eq!(
        Raw::goaway_code(&no_settings.take_frames()),
        Some(ErrorCode::SETTINGS_TIMEOUT)
    );
}

#[test]
fn idle_timeout_closes_gracefully() {
    // §11.2.4
    let config = Config {
        idle_timeout: Some(Duration::from_secs(30)),
        ..Config::default()
    };
    let mut pair = Pair::with_configs(Config::default(), config);
    pair.drive();
    let id = pair.client.conn.open(route("a"), true).expect("open");
    pair.advance(Duration::from_secs(40));
    assert!(
        !pair.server.conn.is_closed(),
        "an active stream keeps the connection"
    );
    pair.server.conn.finish(id).expect("finish");
    pair.advance(Duration::from_secs(31));
    assert!(pair.client.saw(|e| matches!(
        e,
        Event::GoAway {
            code: ErrorCode::IDLE_TIMEOUT,
            ..
        }
    )));
    assert_eq!(pair.server.closed_with(), Some(None));
    assert_eq!(pair.client.closed_with(), Some(None));
}

#[test]
fn timeouts_are_on_by_default() {
    // §11.2.3, §11.2.4, §13.2.4: with the default configuration, a
    // connection that opens nothing is closed by the idle timeout, and a
    // peer that goes silent is declared dead by keepalive.
    let defaults = Config::default();
    assert_eq!(defaults.keepalive_interval, Some(Duration::from_secs(30)));
    assert_eq!(defaults.idle_timeout, Some(Duration::from_secs(300)));

    let mut pair = Pair::connected();
    pair.advance(Duration::from_secs(299));
    assert!(
        !pair.server.conn.is_closed(),
        "not idle for long enough yet"
    );
    pair.advance(Duration::from_secs(2));
    // Both sides' idle timers end together, each closing gracefully (a
    // GOAWAY with IDLE_TIMEOUT, then no stream left to wait for).
    assert_eq!(pair.server.closed_with(), Some(None));
    assert_eq!(pair.client.closed_with(), Some(None));

    let mut pair = Pair::connected();
    let _busy = pair.client.conn.open(route("a"), false).expect("open");
    pair.drive();
    pair.server.reading = false;
    pair.advance(Duration::from_secs(51));
    assert_eq!(
        pair.client.closed_with(),
        Some(Some(ConnectionError::Timeout(Timeout::Keepalive))),
        "a silent peer is dead within interval + timeout"
    );
}

#[test]
fn timeouts_too_long_for_an_instant_never_fire() {
    // A configured wait past what an `Instant` can hold (`Duration::MAX`)
    // is no deadline: adding it to the clock must not panic, and no timer
    // built on it fires.
    let forever = Config {
        settings_timeout: Duration::MAX,
        handshake_timeout: Duration::MAX,
        keepalive_interval: Some(Duration::MAX),
        keepalive_timeout: Duration::MAX,
        idle_timeout: Some(Duration::MAX),
        drain_timeout: Duration::MAX,
        ..Config::default()
    };
    let mut pair = Pair::with_configs(forever.clone(), forever);
    pair.drive();
    let id = pair.client.conn.open(route("a"), false).expect("open");
    pair.drive();
    pair.advance(Duration::from_secs(3600));
    assert!(!pair.client.conn.is_closed() && !pair.server.conn.is_closed());
    // Going away waits for the open stream, however long.
    pair.server
        .conn
        .close(pair.now, ErrorCode::NO_ERROR, "going away");
    pair.advance(Duration::from_secs(3600));
    assert!(!pair.server.conn.is_closed(), "the drain never times out");
    pair.client.conn.finish(id).expect("finish");
    pair.server.conn.finish(id).expect("finish");
    pair.drive();
    assert_eq!(pair.server.closed_with(), Some(None));
}

#[test]
fn peer_settings_bind_what_we_send() {
    // §5.4.1: MAX_FRAME_SIZE and MAX_CONCURRENT_STREAMS from the peer.
    let mut raw = Raw::client(Config::default());
    raw.send(frames::settings(&[
        (SettingId::MAX_CONCURRENT_STREAMS, 1),
        (SettingId::MAX_FRAME_SIZE, 16_384),
    ]));
    let id = raw.conn.open(route("a"), false).expect("open");
    assert_eq!(
        raw.conn.open(route("b"), false),
        Err(OpenError::ConcurrencyLimit(1))
    );
    raw.send(frames::window_update(0, 1 << 20));
    raw.send(frames::window_update(1, 1 << 20));
    raw.conn
        .send(id, Bytes::from(vec![0; 100_000]), false, false)
        .expect("send");
    for frame in raw.take_frames() {
        if let Frame::Data(data) = frame {
            assert!(
                data.payload.len() <= 16_384,
                "frame of {} bytes",
                data.payload.len()
            );
        }
    }
    assert_eq!(sid(1), id);
}

#[test]
fn transport_close_with_active_streams_is_an_error() {
    let mut pair = Pair::connected();
    pair.client.conn.open(route("a"), false).expect("open");
    pair.drive();
    pair.server.conn.handle_eof(pair.now);
    assert!(matches!(
        pair.server.conn.poll_event(),
        Some(Event::Closed {
            error: Some(ConnectionError::TransportClosed)
        })
    ));
}
