//! Shutdown keeps its word: a graceful shutdown returns by its deadline
//! whatever blocking handlers do, and jobs whose connection is gone are
//! dropped unrun.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use mux_client::{CallError, Client, Resume};
use mux_core::frame::{Data, Frame, Metadata};
use mux_core::rpc::{RequestHead, ResponseHead, Status};
use mux_core::{Config, ErrorCode, Event, StreamId};
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

/// The streams a raw server saw opened, and the resets it received.
type Seen = (Vec<StreamId>, Vec<(StreamId, ErrorCode)>);

/// A raw server that answers every stream's head with `200`, announces each
/// stream on `opened_tx`, and records the resets it receives until the
/// client closes the connection.
fn serve_heads_and_record_resets(
    listener: std::net::TcpListener,
    opened_tx: mpsc::Sender<StreamId>,
) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut peer = RawPeer::server(stream, Config::default());
        peer.handshake(LIMIT);
        let (mut opened, mut resets) = (Vec::new(), Vec::new());
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            let Ok(events) = peer.pump(64 * 1024) else {
                break; // the client closed the connection
            };
            for event in events {
                match event {
                    Event::StreamOpened { id, .. } => {
                        let head = ResponseHead {
                            length: None,
                            status: Status::OK,
                            metadata: Metadata::new(),
                        };
                        peer.conn
                            .send(id, head.encode(), true, false)
                            .expect("head");
                        opened.push(id);
                        let _ = opened_tx.send(id);
                    }
                    Event::StreamReset { id, code } => resets.push((id, code)),
                    _ => {}
                }
            }
            let _ = peer.flush();
        }
        (opened, resets)
    })
}

#[test]
fn a_client_ends_its_own_streams_at_once_when_it_shuts_down() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let (opened_tx, opened_rx) = mpsc::channel();
    let server = serve_heads_and_record_resets(listener, opened_tx);
    let client = Client::connect(addr).expect("connect");
    let subscription = client.subscribe("news.>").expect("subscribe");
    let events = client.events("log", Resume::Latest).expect("event stream");
    let mut poller = client.long_poller("jobs", 0, Duration::from_secs(60));
    let poll = std::thread::spawn(move || poller.poll());
    for _ in 0..3 {
        opened_rx
            .recv_timeout(LIMIT)
            .expect("the subscription, the event stream and the long poll reach the server");
    }
    let began = Instant::now();
    client.shutdown();
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "shutting down with three open streams took {took:?}"
    );
    let polled = poll.join().expect("the poller thread");
    assert!(
        matches!(polled, Err(CallError::Closed)),
        "the long poll ended with {polled:?}"
    );
    let (opened, resets) = server.join().expect("the raw server");
    assert_eq!(opened.len(), 3, "streams the server saw: {opened:?}");
    for id in opened {
        assert!(
            resets.contains(&(id, ErrorCode::CANCEL)),
            "stream {id:?} was not reset with CANCEL (resets: {resets:?})"
        );
    }
    drop((subscription, events));
}

#[test]
fn a_client_shuts_down_at_once_after_an_upload_the_server_refused() {
    let server = server_builder()
        .max_request_body(1024 * 1024)
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("connect");
    let mut upload = client.open_upload(mux_client::CallRequest::new("echo", ""));
    let piece = bytes::Bytes::from(vec![7u8; 64 * 1024]);
    let began = Instant::now();
    // A write fails once the refusal is in (if it comes before the body
    // ends); either way the call's outcome is the server's answer.
    for _ in 0..64 {
        if let Err(err) = upload.write(piece.clone()) {
            assert!(
                matches!(&err, CallError::Rejected { status, .. } if status.0 == 413),
                "a write into a refused upload failed with {err:?}"
            );
            break;
        }
    }
    let outcome = upload.finish().and_then(|call| call.wait());
    assert!(
        matches!(&outcome, Ok(reply) if reply.status.0 == 413),
        "a 4 MiB upload against a 1 MiB limit ended with {outcome:?}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "the refusal took {:?}",
        began.elapsed()
    );
    let began = Instant::now();
    client.shutdown();
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "shutting down after a refused upload took {took:?}"
    );
}

/// A connection the server ends while the client is still sending closes
/// with the GOAWAY and then the end of the byte stream (TCP FIN), not a
/// reset: the server lingers, discarding what still arrives (spec
/// §11.3.4). Closed at once, it had unread bytes, the kernel answered with
/// RST, and the client's write failed or its read ended in a reset that
/// may take the GOAWAY with it.
#[test]
fn a_connection_ended_while_the_peer_sends_closes_with_fin_not_reset() {
    let server = server_builder().start().expect("server starts");
    let stream = TcpStream::connect(server.local_addr()).expect("connect");
    let mut peer = RawPeer::client(stream, Config::default());
    peer.handshake(LIMIT);
    // DATA on an idle stream is a connection error (spec §6.3); the
    // quarter megabyte behind it is never parsed.
    let mut bytes = bytes::BytesMut::new();
    let idle = StreamId::new(99).expect("stream id");
    Frame::Data(Data::new(idle, bytes::Bytes::from_static(b"x")))
        .encode(&mut bytes)
        .expect("encode");
    bytes.extend_from_slice(&[0; 256 * 1024]);
    peer.stream
        .write_all(&bytes)
        .expect("the server reset the connection instead of lingering");
    peer.stream
        .set_read_timeout(Some(LIMIT))
        .expect("read timeout");
    let mut goaway = None;
    let end = loop {
        match peer.pump(64 * 1024) {
            Ok(events) => {
                for event in events {
                    if let Event::GoAway { code, .. } = event {
                        goaway = Some(code);
                    }
                }
            }
            Err(end) => break end,
        }
    };
    assert_eq!(goaway, Some(ErrorCode::PROTOCOL_ERROR), "the GOAWAY");
    assert_eq!(
        end.kind(),
        std::io::ErrorKind::UnexpectedEof,
        "the connection ended with {end} instead of the server's FIN"
    );
}
