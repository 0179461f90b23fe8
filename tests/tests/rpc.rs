//! Request/response over real sockets.

use std::sync::{mpsc, Mutex};
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
    // The blocking handler waits for a call the loop answers inline: it can
    // only finish if the loop keeps serving while it blocks.
    let (started_tx, started) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let (echoed_tx, echoed) = mpsc::channel::<()>();
    let echoed = Mutex::new(echoed);
    let server = server_builder()
        .threads(1)
        .route_blocking("slow", move |req| {
            let _ = started_tx.lock().expect("lock").send(());
            echoed
                .lock()
                .expect("lock")
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| "the loop did not answer while a handler blocked")?;
            Ok(Response::ok(req.body().clone()))
        })
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("client connects");
    let mut slow = client.call_async("slow", "late");
    started
        .recv_timeout(Duration::from_secs(10))
        .expect("the blocking handler started");
    let fast = client.call("echo", "early").expect("echo");
    assert_eq!(&fast.body[..], b"early");
    assert!(slow.try_result().is_none(), "answered out of order");
    echoed_tx.send(()).expect("the handler waits");
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

#[test]
fn a_client_dropped_inside_its_own_callback_stops_cleanly() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let server = server_builder().start().expect("server starts");
    let holder = std::sync::Arc::new(Mutex::new(None::<Client>));
    let (done_tx, done) = mpsc::channel();
    let in_callback = std::sync::Arc::clone(&holder);
    let client = Client::connect(server.local_addr()).expect("client connects");
    *holder.lock().expect("lock") = Some(client);
    let guard = holder.lock().expect("lock");
    let Some(client) = guard.as_ref() else {
        panic!("the client is held");
    };
    client.call_with_callback(CallRequest::new("echo", "x"), move |_| {
        // The last owner drops the client on its own loop thread.
        let last = in_callback.lock().expect("lock").take();
        let dropped = catch_unwind(AssertUnwindSafe(|| drop(last)));
        let _ = done_tx.send(dropped.is_ok());
    });
    drop(guard);
    let clean = done
        .recv_timeout(Duration::from_secs(10))
        .expect("the callback ran");
    assert!(clean, "dropping the client in its callback panicked");
}

/// The demo's `sink` and `source` routes move a gibibyte each way, counted.
#[test]
fn the_sink_and_source_routes_move_a_gibibyte_each_way() {
    const GIB: u64 = 1 << 30;
    let server = mux_server::demo::routes(server_builder())
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("connect");
    let transfer = sink_then_source(&client, GIB);
    assert_eq!(
        transfer.messages,
        GIB / mux_server::demo::SOURCE_MESSAGE as u64,
        "the source's message boundaries"
    );

    let refused = client.call("source", "lots").expect("a reply");
    assert_eq!(refused.status, Status::BAD_REQUEST);
}

/// What [`sink_then_source`] saw.
pub(crate) struct Transfer {
    pub(crate) up: Duration,
    pub(crate) down: Duration,
    /// Messages the download came in.
    pub(crate) messages: u64,
}

/// Uploads `size` bytes to the demo's `sink` and downloads as many from its
/// `source`, checking both counts.
pub(crate) fn sink_then_source(client: &Client, size: u64) -> Transfer {
    let started = std::time::Instant::now();
    let piece = bytes::Bytes::from(vec![0x5au8; 256 * 1024]);
    let mut upload = client.open_upload(CallRequest::new("sink", ""));
    for _ in 0..size / piece.len() as u64 {
        upload.write(piece.clone()).expect("write");
    }
    let reply = upload.finish().expect("finish").wait().expect("sink reply");
    assert_eq!(reply.body, size.to_string(), "the sink's count");
    let up = started.elapsed();

    let started = std::time::Instant::now();
    let mut download = client.open_stream(CallRequest::new("source", size.to_string()));
    download.head().expect("the source's head");
    let (mut bytes, mut messages) = (0u64, 0u64);
    while let Some(message) = download.next_message() {
        bytes += message.expect("a message").len() as u64;
        messages += 1;
    }
    assert_eq!(bytes, size, "bytes the source sent");
    Transfer {
        up,
        down: started.elapsed(),
        messages,
    }
}
