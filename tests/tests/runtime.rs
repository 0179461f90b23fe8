//! The runtime over real sockets: concurrency and integrity, backpressure,
//! many connections, abrupt closes, graceful shutdown, the three call styles.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_client::{CallError, CallRequest, Client, DirectClient};
use mux_server::{BodySink, HandlerResult, Response, Status};
use mux_testkit::{
    block_on, fnv1a, pseudo_random, raise_open_files, server_builder, wait_until, HashingSink,
    RawPeer,
};

/// The longest any wait here may take.
const LIMIT: Duration = Duration::from_secs(10);

fn hash_server() -> mux_server::Server {
    server_builder()
        .route("hash", |req| {
            Ok(Response::ok(fnv1a(req.body()).to_string()))
        })
        .route_streaming("hash-stream", |_| Box::<HashingSink>::default())
        .start()
        .expect("server starts")
}

#[test]
fn many_concurrent_streams_keep_their_data_intact() {
    let server = hash_server();
    let client = Client::builder(server.local_addr())
        .connections(2)
        .connect()
        .expect("connect");
    let bodies: Vec<Vec<u8>> = (0..300)
        .map(|n| pseudo_random(n, (n as usize * 977) % 200_000))
        .collect();
    let calls: Vec<_> = bodies
        .iter()
        .map(|body| client.call_async("hash", Bytes::from(body.clone())))
        .collect();
    for (body, call) in bodies.iter().zip(calls) {
        let reply = call.wait().expect("call");
        assert_eq!(reply.status, Status::OK);
        assert_eq!(
            String::from_utf8_lossy(&reply.body),
            fnv1a(body).to_string()
        );
    }
    // Streamed uploads from several threads at once.
    let client = Arc::new(client);
    let threads: Vec<_> = (0..8u64)
        .map(|n| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || {
                let data = pseudo_random(1000 + n, 3 << 20);
                let mut upload = client.open_upload(CallRequest::new("hash-stream", ""));
                for piece in data.chunks(50_000) {
                    upload.write(Bytes::copy_from_slice(piece)).expect("write");
                }
                let reply = upload.finish().expect("finish").wait().expect("reply");
                assert_eq!(
                    String::from_utf8_lossy(&reply.body),
                    fnv1a(&data).to_string()
                );
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("upload thread");
    }
}

#[test]
fn a_slow_reader_bounds_the_senders_memory() {
    // A hand-driven server that reads 16 KiB per 20 ms at most.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let consumed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let consumed = Arc::clone(&consumed);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut peer = RawPeer::server(stream, mux_core::Config::default());
            while !done.load(Ordering::Relaxed) {
                let Ok(events) = peer.pump(16 * 1024) else {
                    break;
                };
                for event in events {
                    if let mux_core::Event::Readable { id } = event {
                        while let Ok(Some(chunk)) = peer.conn.read(id, usize::MAX) {
                            consumed.fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let client = Client::connect(addr).expect("connect");
    let mut upload = client.open_upload(CallRequest::new("sink", ""));
    let piece = Bytes::from(vec![9u8; 64 * 1024]);
    let mut written: u64 = 0;
    let started = Instant::now();
    let mut max_slack: u64 = 0;
    while started.elapsed() < Duration::from_secs(2) {
        if upload.try_write(piece.clone()).expect("try_write") {
            written += piece.len() as u64;
        } else {
            std::thread::sleep(Duration::from_millis(2));
        }
        max_slack = max_slack.max(written.saturating_sub(consumed.load(Ordering::Relaxed)));
    }
    done.store(true, Ordering::Relaxed);
    drop(upload);
    drop(client);
    let _ = reader.join();
    // What the writer got ahead of the reader: upload credit (1 MiB), the
    // stream's send buffer (1 MiB), the peer's window, and the kernel's
    // socket buffers on both sides.
    assert!(written > 0, "nothing was written");
    assert!(
        max_slack < 8 << 20,
        "the writer ran {max_slack} bytes ahead of a slow reader"
    );
    assert!(
        written < 64 << 20,
        "{written} bytes accepted in 2 s by a reader of ~3 MB/s"
    );
}

#[test]
fn a_thousand_concurrent_connections() {
    // Both ends of every connection live in this process: 2,000 descriptors
    // and then some. Raise the soft limit; where the hard limit forbids it,
    // test as many connections as fit.
    let limit = raise_open_files(4096);
    let connections = 1000.min(limit.saturating_sub(256) / 2) as usize;
    assert!(connections >= 100, "only {limit} open files allowed");
    let server = server_builder().start().expect("server");
    let client = Client::builder(server.local_addr())
        .connections(connections)
        .connect()
        .expect("connect");
    let calls: Vec<_> = (0..2000u32)
        .map(|n| client.call_async("echo", n.to_string()))
        .collect();
    for (n, call) in calls.into_iter().enumerate() {
        let reply = call.wait().expect("call");
        assert_eq!(String::from_utf8_lossy(&reply.body), n.to_string());
    }
    client.shutdown();
    server
        .shutdown_gracefully(Duration::from_secs(10))
        .expect("shutdown");
}

#[test]
fn connections_opened_one_by_one_spread_over_the_loops() {
    // Every loop polls the shared listener and the first awake wins an
    // accept: without hand-offs, one loop took most of a run of connections.
    let server = server_builder().threads(3).start().expect("server");
    let clients: Vec<DirectClient> = (0..31)
        .map(|n| {
            let mut client = DirectClient::connect(server.local_addr()).expect("connect");
            let reply = client.call("echo", n.to_string()).expect("call");
            assert_eq!(String::from_utf8_lossy(&reply.body), n.to_string());
            client
        })
        .collect();
    wait_until(LIMIT, "the loops to hold 31 connections, evenly", || {
        let loads = server.connections_per_loop();
        let (most, fewest) = (loads.iter().max(), loads.iter().min());
        loads.iter().sum::<usize>() == 31 && most.zip(fewest).is_some_and(|(m, f)| m - f <= 1)
    });
    let metrics = server.handle().metrics_text();
    let per_loop: usize = metrics
        .lines()
        .filter(|line| line.starts_with("mux_loop_connections{loop="))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<usize>().ok())
        .sum();
    assert_eq!(per_loop, 31, "the loops' gauges in:\n{metrics}");
    drop(clients);
}

#[test]
fn an_abrupt_close_fails_calls_in_flight_promptly() {
    // The handler blocks far longer than the bound below: neither the
    // client's failure nor `abort` may wait for it.
    let (started_tx, started) = mpsc::channel();
    let started_tx = std::sync::Mutex::new(started_tx);
    let (release, gate) = mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    let server = server_builder()
        .route_blocking("hang", move |_| {
            let _ = started_tx.lock().expect("lock").send(());
            let _ = gate
                .lock()
                .expect("lock")
                .recv_timeout(Duration::from_secs(20));
            Ok(Response::ok("late"))
        })
        .start()
        .expect("server");
    let client = Client::connect(server.local_addr()).expect("connect");
    let call = client.call_async("hang", "");
    started
        .recv_timeout(Duration::from_secs(5))
        .expect("the handler started");
    let began = Instant::now();
    server.abort();
    let result = call.wait();
    assert!(
        matches!(
            result,
            Err(CallError::ConnectionLost(_) | CallError::Reset(_))
        ),
        "{result:?}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "abort and the failure took {:?}",
        began.elapsed()
    );
    let _ = release.send(());
}

#[test]
fn graceful_shutdown_completes_every_request_in_flight() {
    let server = server_builder()
        .route_blocking("work", |req| {
            std::thread::sleep(Duration::from_millis(100));
            Ok(Response::ok(req.into_body()))
        })
        .start()
        .expect("server");
    let addr = server.local_addr();
    let client = Client::connect(addr).expect("connect");
    let calls: Vec<_> = (0..20u32)
        .map(|n| client.call_async("work", n.to_string()))
        .collect();
    // Every call must have reached the server before the GOAWAY.
    wait_until(Duration::from_secs(5), "calls to be sent", || {
        client.ping().is_ok()
    });
    let shutdown = std::thread::spawn(move || server.shutdown_gracefully(Duration::from_secs(10)));
    for (n, call) in calls.into_iter().enumerate() {
        let reply = call.wait().expect("a request in flight was lost");
        assert_eq!(String::from_utf8_lossy(&reply.body), n.to_string());
    }
    shutdown.join().expect("join").expect("shutdown");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

#[test]
fn calls_work_as_futures_callbacks_and_polled_handles() {
    let server = server_builder().start().expect("server");
    let client = Client::connect(server.local_addr()).expect("connect");
    let reply = block_on(client.call_async("echo", "future")).expect("future");
    assert_eq!(&reply.body[..], b"future");
    let both = block_on(async {
        let a = client.call_async("echo", "a").await;
        let b = client.call_async("echo", "b").await;
        (a, b)
    });
    assert_eq!(
        (&both.0.expect("a").body[..], &both.1.expect("b").body[..]),
        (&b"a"[..], &b"b"[..])
    );

    let (sender, receiver) = mpsc::channel();
    client.call_with_callback(CallRequest::new("echo", "callback"), move |result| {
        let _ = sender.send(result);
    });
    let reply = receiver
        .recv_timeout(Duration::from_secs(5))
        .expect("callback ran")
        .expect("call");
    assert_eq!(&reply.body[..], b"callback");

    let mut call = client.call_async("echo", "polled");
    let mut result = None;
    wait_until(Duration::from_secs(5), "the polled call", || {
        result = call.try_result();
        result.is_some()
    });
    assert_eq!(&result.expect("polled").expect("call").body[..], b"polled");
}

#[test]
fn dropping_a_call_resets_its_stream_on_the_server() {
    let (dropped_tx, dropped_rx) = mpsc::channel::<()>();
    struct Watch(mpsc::Sender<()>);
    impl BodySink for Watch {
        fn data(&mut self, _: &Bytes, _: bool) {}
        fn end(self: Box<Self>) -> HandlerResult {
            Ok(Response::ok(""))
        }
    }
    impl Drop for Watch {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let dropped_tx = std::sync::Mutex::new(dropped_tx);
    let server = server_builder()
        .route_streaming("watch", move |_| {
            let sender = dropped_tx.lock().map(|s| s.clone()).expect("lock");
            Box::new(Watch(sender))
        })
        .start()
        .expect("server");
    let client = Client::connect(server.local_addr()).expect("connect");
    let mut upload = client.open_upload(CallRequest::new("watch", ""));
    upload.write("partial body").expect("write");
    wait_until(
        Duration::from_secs(5),
        "the upload to reach the server",
        || client.ping().is_ok(),
    );
    drop(upload);
    dropped_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the server dropped the request when the client cancelled");
}

/// The scheduling policy (`SCHED_*`) in a thread's `/proc` stat file:
/// its field 41 (the fields from the third on follow the command name's
/// closing parenthesis).
#[cfg(target_os = "linux")]
fn policy_in_stat(stat: &str) -> Option<u32> {
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    after_name.split_whitespace().nth(41 - 3)?.parse().ok()
}

/// `Client`'s loop thread runs under `SCHED_BATCH` by default, so that it
/// does not preempt the thread that hands it a call
/// (`ClientBuilder::thread_scheduling`); the calling thread keeps its class.
#[cfg(target_os = "linux")]
#[test]
fn the_client_loop_thread_runs_under_sched_batch() {
    const SCHED_BATCH: u32 = 3;
    let own_class = || {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("own stat");
        policy_in_stat(&stat)
    };
    let caller_before = own_class();
    let server = hash_server();
    let client = Client::connect(server.local_addr()).expect("connect");
    client.call("hash", "x").expect("a call");
    // Other tests' clients may be starting in this process too: this one's
    // loop has run, so at least one thread of that name is in the class.
    let loops: Vec<u32> = std::fs::read_dir("/proc/self/task")
        .expect("this process's threads")
        .filter_map(|task| {
            let dir = task.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            (comm.trim_end() == "mux-client").then(|| policy_in_stat(&stat))?
        })
        .collect();
    assert!(
        loops.contains(&SCHED_BATCH),
        "no client loop thread under SCHED_BATCH: {loops:?}"
    );
    assert_eq!(own_class(), caller_before, "the caller's class");
}

#[test]
fn connection_refused_is_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = Client::connect(addr).expect_err("nothing listens");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn a_peer_that_is_not_mux_is_a_clear_error() {
    let (addr, fake) = mux_testkit::not_mux_peer();
    let err = Client::connect(addr).expect_err("not mux");
    assert!(err.to_string().contains("not speaking mux"), "{err}");
    let _ = fake.join();
}

#[test]
fn the_client_reconnects_after_a_server_restart() {
    let server = server_builder().start().expect("server");
    let addr = server.local_addr();
    let client = Client::builder(addr)
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .connect()
        .expect("connect");
    assert!(client.call("echo", "before").is_ok());
    server
        .shutdown_gracefully(Duration::from_secs(5))
        .expect("shutdown");
    let again = mux_server::Server::builder()
        .bind(addr)
        .threads(1)
        .route("echo", |req| Ok(Response::ok(req.into_body())))
        .start()
        .expect("restart on the same port");
    let mut reply = None;
    wait_until(
        Duration::from_secs(10),
        "a call through the reconnected client",
        || {
            reply = client.call("echo", "after").ok();
            reply.is_some()
        },
    );
    assert_eq!(&reply.expect("reply").body[..], b"after");
    drop(again);
}

/// A client that made a call to a server on loopback, reconnecting every
/// 10-20 ms since the server went away, with a `wait_for_ready` limit; and
/// the server's address.
fn client_of_a_server_that_went_away(wait_for_ready: Duration) -> (std::net::SocketAddr, Client) {
    let server = server_builder().threads(1).start().expect("server starts");
    let addr = server.local_addr();
    let client = Client::builder(addr)
        .backoff(Duration::from_millis(10), Duration::from_millis(20))
        .wait_for_ready(wait_for_ready)
        .connect()
        .expect("connect");
    assert_eq!(client.call("echo", "before").expect("echo").body, "before");
    server.abort();
    wait_until(LIMIT, "the client notices the server is gone", || {
        client.ping().is_err()
    });
    (addr, client)
}

/// Restarts the server on `addr`; `call` (an echo of "after") must be
/// carried by the client's next connection.
fn server_comes_back_and_carries(addr: std::net::SocketAddr, call: mux_client::Call) {
    let _again = server_builder()
        .bind(addr)
        .threads(1)
        .start()
        .expect("the server restarts on its port");
    let reply = call
        .wait()
        .expect("the call is carried by the new connection");
    assert_eq!(reply.body, "after");
}

/// A call made while the client reconnects waits for the next attempts
/// (within its deadline) instead of failing on the first refused one, once
/// the client had been connected: the server restarting is not the server
/// being absent.
#[test]
fn calls_waiting_through_a_reconnect_are_carried_once_the_server_is_back() {
    let (addr, client) = client_of_a_server_that_went_away(LIMIT);
    let mut call = client.start_call(CallRequest::new("echo", "after").timeout(LIMIT));
    // Reconnects are refused every 10-20 ms meanwhile; the call must outlive them.
    assert!(
        call.wait_timeout(Duration::from_millis(300)).is_none(),
        "the waiting call failed while the client was still reconnecting"
    );
    server_comes_back_and_carries(addr, call);
}

/// Wait-for-ready: a call without a deadline, made while the client
/// reconnects, is carried by the first attempt that succeeds within the
/// client's limit. Here the server's port first answers two attempts with a
/// listener that hangs up at once (each a failed attempt, counted), then the
/// server comes back on it.
#[test]
fn a_call_without_a_deadline_waits_for_the_server_to_come_back() {
    let (addr, client) = client_of_a_server_that_went_away(LIMIT);
    let hang_up = TcpListener::bind(addr).expect("the server's port is free");
    let call = client.start_call(CallRequest::new("echo", "after"));
    for attempt in 1..=2 {
        let (socket, _) = hang_up
            .accept()
            .unwrap_or_else(|err| panic!("attempt {attempt} never came: {err}"));
        drop(socket);
    }
    drop(hang_up);
    server_comes_back_and_carries(addr, call);
}

/// Past its wait-for-ready limit, a call without a deadline fails with
/// `Connect` (it never ran), while the client keeps reconnecting.
#[test]
fn a_call_without_a_deadline_fails_after_the_wait_for_ready_limit() {
    let (_, client) = client_of_a_server_that_went_away(Duration::from_millis(100));
    let mut call = client.start_call(CallRequest::new("echo", "never"));
    let outcome = call
        .wait_timeout(LIMIT)
        .expect("the call ends within its wait-for-ready limit");
    assert!(
        matches!(&outcome, Err(CallError::Connect(why)) if why.contains("no connection within")),
        "{outcome:?}"
    );
}
