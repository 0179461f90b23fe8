//! Addresses as users write them: host names resolved at each attempt, and
//! lists the client spreads its connections over and fails over between.

use std::collections::HashSet;
use std::time::Duration;

use mux_client::{CallError, CallRequest, Client};
use mux_server::{Response, Server};
use mux_testkit::{server_builder, wait_until};

const LIMIT: Duration = Duration::from_secs(10);

/// A server whose `who` route answers `name`, after `delay` on a worker.
fn named_server(name: &'static str, delay: Duration) -> Server {
    server_builder()
        .threads(1)
        .route_blocking("who", move |_| {
            std::thread::sleep(delay);
            Ok(Response::ok(name))
        })
        .start()
        .expect("server starts")
}

#[test]
fn a_host_name_is_resolved() {
    let server = server_builder().start().expect("server starts");
    // `localhost` may resolve to ::1 first, where nothing listens: the
    // client tries each address the name resolves to.
    let name = format!("localhost:{}", server.local_addr().port());
    let client = Client::connect(name.as_str()).expect("connect by name");
    assert_eq!(client.call("echo", "hi").expect("echo").body, "hi");
}

#[test]
fn bad_and_unknown_addresses_fail_with_their_reason() {
    let err = Client::connect("localhost").expect_err("no port");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("no port"), "{err}");

    let err = Client::connect("no-such-host.invalid:7878").expect_err("unknown host");
    assert!(err.to_string().contains("cannot resolve"), "{err}");
}

#[test]
fn the_first_live_address_of_a_list_is_used() {
    let down = std::net::TcpListener::bind(mux_testkit::any_local_address()).expect("bind");
    let dead = down.local_addr().expect("address");
    drop(down);
    let live = named_server("live", Duration::ZERO);
    let list = format!("{dead},{}", live.local_addr());
    let client = Client::connect(list.as_str()).expect("the live entry is reached");
    assert_eq!(client.call("who", "").expect("who").body, "live");
}

#[test]
fn connections_spread_over_the_list_and_fail_over() {
    let a = named_server("a", Duration::from_millis(100));
    let b = named_server("b", Duration::from_millis(100));
    let client = Client::builder(vec![a.local_addr(), b.local_addr()])
        .connections(2)
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect()
        .expect("connect");
    // Two calls at once go to the two connections, one per server.
    let mut seen = HashSet::new();
    wait_until(LIMIT, "calls answered by both servers", || {
        let calls: Vec<_> = (0..2)
            .map(|_| client.start_call(CallRequest::new("who", "")))
            .collect();
        for call in calls {
            if let Ok(reply) = call.wait() {
                seen.insert(reply.body);
            }
        }
        seen.len() == 2
    });

    // `a` goes away: every call is carried by `b`, its slot failing over.
    a.abort();
    wait_until(LIMIT, "calls carried by b alone", || {
        let replies: Vec<Result<_, CallError>> = (0..4)
            .map(|_| client.call_with(CallRequest::new("who", "").timeout(LIMIT)))
            .collect();
        replies
            .iter()
            .all(|reply| reply.as_ref().is_ok_and(|r| r.body == "b"))
    });
}
