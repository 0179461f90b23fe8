//! Peer-named state is bounded and goes with its last user (spec
//! `patterns.md` §4.2, §5.1, §6.1): names a client invents leave nothing
//! behind; long names are refused; sessions are capped per connection and
//! per server.

use std::sync::Arc;
use std::time::Duration;

use mux_client::{CallError, CallRequest, Client, Resume};
use mux_core::patterns;
use mux_server::{MemoryStore, Status};
use mux_testkit::server_builder;

#[test]
fn names_a_client_invents_leave_no_state_behind() {
    let server = server_builder().start().expect("server starts");
    let client = Client::connect(server.local_addr()).expect("connect");
    // Dropping an event stream cancels it (a RESET): 150 stay within the
    // rapid-reset budget's burst (spec §13.2), as an honest client would.
    for n in 0..150 {
        let name = format!("invented-{n}-{}", "x".repeat(200));
        let mut events = client
            .events(&name, Resume::After(0))
            .expect("an event stream on a name nobody appends to");
        assert!(events.next_timeout(Duration::ZERO).is_none());
    }
    for n in 0..500 {
        let name = format!("polled-{n}-{}", "x".repeat(200));
        let polled = client
            .long_poller(&name, 0, Duration::from_millis(1))
            .poll()
            .expect("a long poll that times out");
        assert!(polled.is_empty());
    }
    assert_eq!(
        server.handle().event_log_count(),
        0,
        "asking for a log must not create it"
    );
    server
        .handle()
        .append_event("real", "kind", "data")
        .expect("append");
    assert_eq!(server.handle().event_log_count(), 1);
}

#[test]
fn stream_names_longer_than_255_bytes_are_refused() {
    let server = server_builder().start().expect("server starts");
    let client = Client::connect(server.local_addr()).expect("connect");
    let long = "n".repeat(patterns::MAX_STREAM_NAME_LEN + 1);
    for route in [patterns::EVENTS, patterns::LONG_POLL] {
        let request = CallRequest::new(route, "")
            .header(patterns::STREAM, long.clone())
            .timeout(Duration::from_secs(5));
        let reply = client.call_with(request).expect("an answer");
        assert_eq!(reply.status, Status::BAD_REQUEST, "{route}");
    }
    match client.events(&long, Resume::Latest) {
        Err(CallError::Rejected { status, .. }) => assert_eq!(status, Status::BAD_REQUEST),
        other => panic!("expected a 400 refusal, got {other:?}"),
    }
}

#[test]
fn sessions_are_capped_per_connection_and_per_server() {
    let server = server_builder()
        .session_store(Arc::new(
            MemoryStore::new(Duration::from_secs(60), 8).with_max_sessions(100),
        ))
        .start()
        .expect("server starts");
    let first = Client::connect(server.local_addr()).expect("connect");
    for _ in 0..64 {
        first
            .session()
            .expect("a session within the connection's bound");
    }
    assert_unavailable(first.session(), "connection");
    let second = Client::connect(server.local_addr()).expect("connect");
    for _ in 0..36 {
        second
            .session()
            .expect("a session within the store's bound");
    }
    assert_unavailable(second.session(), "server");
}

/// Asserts a session was refused with 503 for a bound on `scope`.
fn assert_unavailable(result: Result<mux_client::Session, CallError>, scope: &str) {
    match result {
        Err(CallError::Rejected { status, message }) => {
            assert_eq!(status, Status::UNAVAILABLE);
            assert!(message.contains(scope), "{message}");
        }
        other => panic!("expected 503 for the {scope}'s bound, got {other:?}"),
    }
}
