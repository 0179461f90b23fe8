//! Timeouts on by default, over real sockets (spec §11.2.3, §11.2.4,
//! §13.2.4): a connection that opens nothing is closed by the idle timeout;
//! a peer that goes silent is closed by keepalive. The server runs with
//! short timeouts so that the tests are fast; the defaults themselves are
//! checked in mux-core.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mux_core::{Config, ErrorCode, Event};
use mux_testkit::{server_builder, RawPeer};

const LIMIT: Duration = Duration::from_secs(10);

fn server_with(config: Config) -> mux_server::Server {
    server_builder()
        .connection_config(config)
        .start()
        .expect("server starts")
}

#[test]
fn a_connection_that_opens_nothing_is_closed_by_the_idle_timeout() {
    let server = server_with(Config {
        idle_timeout: Some(Duration::from_millis(200)),
        ..Config::default()
    });
    let stream = TcpStream::connect(server.local_addr()).expect("connect");
    let mut peer = RawPeer::client(stream, Config::default());
    let deadline = Instant::now() + LIMIT;
    let mut goaway = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "the server did not close an idle connection within {LIMIT:?}"
        );
        match peer.pump(64 * 1024) {
            Ok(events) => {
                for event in events {
                    if let Event::GoAway { code, .. } = event {
                        goaway = Some(code);
                    }
                }
            }
            Err(_) => break, // the server closed the transport
        }
    }
    assert_eq!(goaway, Some(ErrorCode::IDLE_TIMEOUT));
}

#[test]
fn a_peer_that_goes_silent_is_closed_by_keepalive() {
    let server = server_with(Config {
        keepalive_interval: Some(Duration::from_millis(100)),
        keepalive_timeout: Duration::from_millis(100),
        ..Config::default()
    });
    let stream = TcpStream::connect(server.local_addr()).expect("connect");
    let mut peer = RawPeer::client(stream, Config::default());
    peer.handshake(LIMIT);
    // From here on the peer reads bytes but never answers: its mux side is dead.
    peer.stream
        .set_read_timeout(Some(LIMIT))
        .expect("read timeout");
    let mut buf = [0u8; 4096];
    loop {
        match peer.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) => panic!("the server did not close a silent peer: {err}"),
        }
    }
}

#[test]
fn a_timeout_too_long_to_be_an_instant_means_no_deadline() {
    // `Instant::now() + Duration::MAX` panics: every API that takes a
    // timeout must read one that long as "no deadline" instead.
    let server = server_with(Config::default());
    let addr = server.local_addr();
    let reply = mux_testkit::within(LIMIT, "a loop call with no deadline", move || {
        let client = mux_client::Client::builder(addr)
            .default_timeout(Duration::MAX)
            .connect_timeout(Duration::MAX)
            .wait_for_ready(Duration::MAX)
            .backoff(Duration::MAX, Duration::MAX)
            .connect()
            .expect("connect");
        let request = mux_client::CallRequest::new("echo", "a").timeout(Duration::MAX);
        let first = client.call_with(request);
        let second = client.call_async("echo", "b").wait_timeout(Duration::MAX);
        (first, second)
    });
    assert_eq!(&reply.0.expect("first call").body[..], b"a");
    let second = reply.1.expect("an answer within the wait");
    assert_eq!(&second.expect("second call").body[..], b"b");
    let direct = mux_testkit::within(LIMIT, "a direct call with no deadline", move || {
        mux_client::DirectClient::builder(addr)
            .default_timeout(Duration::MAX)
            .connect()
            .expect("connect")
            .call("echo", "c")
    });
    assert_eq!(&direct.expect("direct call").body[..], b"c");
    mux_testkit::within(LIMIT, "a graceful shutdown with no deadline", move || {
        server.shutdown_gracefully(Duration::MAX).expect("shutdown");
    });
}
