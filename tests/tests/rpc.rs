//! Request/response over real sockets.

use std::time::Duration;

use mux_client::{CallError, CallRequest, Client};
use mux_server::{Response, Status};
use mux_testkit::server_builder;

#[test]
fn echo_round_trip() {
    let server = server_builder().start().expect("server starts");
    let client = Client::connect(server.local_addr()).expect("client connects");
    let reply = client.call("echo", "hello").expect("call");
    assert_eq!(reply.status, Status::OK);
    assert_eq!(&reply.body[..], b"hello");
    client.shutdown();
    server
        .shutdown_gracefully(Duration::from_secs(5))
        .expect("shutdown");
}

#[test]
fn unknown_route_is_not_found() {
    let server = server_builder().start().expect("server starts");
    let client = Client::connect(server.local_addr()).expect("client connects");
    let reply = client.call("nope", "").expect("call");
    assert_eq!(reply.status, Status::NOT_FOUND);
}

#[test]
fn blocking_handler_runs_off_the_loop() {
    let server = server_builder()
        .route_blocking("slow", |req| {
            std::thread::sleep(Duration::from_millis(50));
            Ok(Response::ok(req.body().clone()))
        })
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("client connects");
    let slow = client.call_async("slow", "late");
    // The loop keeps answering inline routes while the worker sleeps.
    let fast = client.call("echo", "early").expect("echo");
    assert_eq!(&fast.body[..], b"early");
    assert_eq!(&slow.wait().expect("slow").body[..], b"late");
}

#[test]
fn deadline_exceeded() {
    let server = server_builder()
        .route_blocking("slow", |_| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(Response::ok("too late"))
        })
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("client connects");
    let result = client.call_with(CallRequest::new("slow", "").timeout(Duration::from_millis(50)));
    assert_eq!(result, Err(CallError::DeadlineExceeded));
}
