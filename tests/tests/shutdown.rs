//! Shutdown keeps its word: a graceful shutdown returns by its deadline
//! whatever blocking handlers do, and jobs whose connection is gone are
//! dropped unrun.

use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use mux_client::Client;
use mux_core::rpc::RequestHead;
use mux_core::Config;
use mux_server::Response;
use mux_testkit::{server_builder, RawPeer};

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn a_graceful_shutdown_returns_by_its_deadline_whatever_handlers_do() {
    let (started_tx, started) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let server = server_builder()
        .route_blocking("stuck", move |_| {
            let _ = started_tx.lock().expect("lock").send(());
            // Blocks far past the shutdown deadline (until released).
            let _ = gate.lock().expect("lock").recv_timeout(LIMIT);
            Ok(Response::ok("late"))
        })
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("connect");
    let call = client.call_async("stuck", "");
    started.recv_timeout(LIMIT).expect("the handler started");
    let began = Instant::now();
    server
        .shutdown_gracefully(Duration::from_millis(200))
        .expect("shutdown");
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "a 200 ms graceful shutdown took {took:?} with a handler blocked"
    );
    drop(call);
    let _ = release.send(());
}

#[test]
fn queued_jobs_of_a_closed_connection_are_dropped_unrun() {
    let ran = Arc::new(AtomicU32::new(0));
    let (started_tx, started) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let counter = Arc::clone(&ran);
    let server = server_builder()
        .threads(1)
        .workers(1)
        .route_blocking("job", move |_| {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = started_tx.lock().expect("lock").send(());
                let _ = gate.lock().expect("lock").recv_timeout(LIMIT);
            }
            Ok(Response::ok("done"))
        })
        .route_blocking("marker", |_| Ok(Response::ok("marker")))
        .start()
        .expect("server starts");
    // A raw client queues 20 jobs, then vanishes.
    let stream = TcpStream::connect(server.local_addr()).expect("connect");
    let mut peer = RawPeer::client(stream, Config::default());
    peer.handshake(LIMIT);
    let metadata = RequestHead::new("job").encode().expect("metadata");
    for _ in 0..20 {
        peer.conn.open(metadata.clone(), true).expect("open");
    }
    peer.pump(64 * 1024).expect("send the calls");
    started.recv_timeout(LIMIT).expect("the first job started");
    drop(peer);
    // A call on another connection of the same loop: once it is answered,
    // the loop has seen the first connection close.
    let client = Client::connect(server.local_addr()).expect("connect");
    assert_eq!(client.call("echo", "x").expect("echo").body, "x");
    let _ = release.send(());
    // The marker queues behind the 19 cancelled jobs on the one worker.
    assert_eq!(client.call("marker", "").expect("marker").body, "marker");
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "jobs of a closed connection ran"
    );
}
