//! A `Client` whose loop sleeps has its calls written on the calling thread
//! (`mux_runtime::LoopHandle::try_serve`): over real sockets, calls from
//! several threads, a subscriber's publications beside them, a deadline and
//! a connection lost all reach who waits for them. The clients never spin,
//! so that their loops sleep whenever they have nothing to do.

use std::net::TcpListener;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use mux_client::{CallError, CallRequest, Client, Delivery};
use mux_core::{Config, Event};
use mux_runtime::SpinPolicy;
use mux_server::{Response, Server};
use mux_testkit::{server_builder, within, RawPeer};

const LIMIT: Duration = Duration::from_secs(10);

/// A server with `gate`, a route that answers once the test lets it.
fn gated_server() -> (Server, mpsc::Sender<()>, mpsc::Receiver<()>) {
    let (open_tx, open) = mpsc::channel::<()>();
    let (entered_tx, entered) = mpsc::channel::<()>();
    let open = Mutex::new(open);
    let entered_tx = Mutex::new(entered_tx);
    let server = server_builder()
        .route_blocking("gate", move |req| {
            let _ = entered_tx.lock().expect("lock").send(());
            open.lock()
                .expect("lock")
                .recv_timeout(LIMIT)
                .map_err(|_| "the test never opened the gate")?;
            Ok(Response::ok(req.body().clone()))
        })
        .start()
        .expect("server starts");
    (server, open_tx, entered)
}

fn sleeping_client(server: &Server) -> Client {
    Client::builder(server.local_addr())
        .spin(SpinPolicy::OFF)
        .connect()
        .expect("client connects")
}

#[test]
fn blocking_calls_to_a_sleeping_loop_are_answered_in_order() {
    let server = server_builder().start().expect("server starts");
    let client = sleeping_client(&server);
    for n in 0..50u32 {
        let body = n.to_be_bytes().to_vec();
        let reply = client.call("echo", body.clone()).expect("call");
        assert_eq!(&reply.body[..], &body[..]);
    }
}

#[test]
fn calls_of_other_threads_beside_a_pending_one_are_answered() {
    let (server, open, entered) = gated_server();
    let client = Arc::new(sleeping_client(&server));
    client.call("echo", "warm").expect("warm-up call");
    let gated = {
        let client = Arc::clone(&client);
        std::thread::spawn(move || client.call("gate", "late"))
    };
    entered.recv_timeout(LIMIT).expect("the gated call arrived");
    // The loop sleeps again with the gated call pending: these calls are
    // written on this thread, their answers read by the loop.
    for n in 0..20u32 {
        let body = n.to_be_bytes().to_vec();
        let reply = within(LIMIT, "a call beside a gated one", {
            let client = Arc::clone(&client);
            let body = body.clone();
            move || client.call("echo", body)
        })
        .expect("call");
        assert_eq!(&reply.body[..], &body[..]);
    }
    open.send(()).expect("the gate waits");
    let late = gated.join().expect("the gated caller").expect("gated call");
    assert_eq!(&late.body[..], b"late");
}

#[test]
fn publications_reach_the_subscriber_beside_a_pending_call() {
    let (server, open, entered) = gated_server();
    let client = Arc::new(sleeping_client(&server));
    let mut subscription = client.subscribe("news").expect("subscribe");
    let gated = {
        let client = Arc::clone(&client);
        std::thread::spawn(move || client.call("gate", "late"))
    };
    entered.recv_timeout(LIMIT).expect("the gated call arrived");
    let publisher = Client::connect(server.local_addr()).expect("publisher connects");
    for n in 0..10u8 {
        publisher.publish("news", vec![n]).expect("publish");
        let delivery = subscription
            .next_timeout(LIMIT)
            .expect("a publication within the limit")
            .expect("delivered");
        match delivery {
            Delivery::Message { payload, .. } => assert_eq!(&payload[..], &[n]),
            Delivery::Lost(lost) => panic!("{lost} publications lost"),
        }
    }
    open.send(()).expect("the gate waits");
    gated.join().expect("the gated caller").expect("gated call");
}

#[test]
fn a_deadline_ends_a_call_written_on_the_callers_thread() {
    let (server, open, _entered) = gated_server();
    let client = Arc::new(sleeping_client(&server));
    client.call("echo", "warm").expect("warm-up call");
    // The deadline is a timer of the loop, set while it slept: the loop must
    // learn of it then, not at its next wake-up for something else (a
    // keepalive, seconds later).
    let outcome = within(Duration::from_secs(3), "a call with a 100 ms deadline", {
        let client = Arc::clone(&client);
        move || client.call_with(CallRequest::new("gate", "").timeout(Duration::from_millis(100)))
    });
    assert!(
        matches!(outcome, Err(CallError::DeadlineExceeded)),
        "{outcome:?}"
    );
    let _ = open.send(());
    client.call("echo", "after").expect("the client goes on");
}

#[test]
fn a_connection_lost_under_a_call_written_on_the_callers_thread_fails_it() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let addr = listener.local_addr().expect("an address");
    // A server that takes the handshake and one call, then goes away.
    let peer = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accepted");
        let mut peer = RawPeer::server(stream, Config::default());
        peer.handshake(LIMIT);
        let deadline = Instant::now() + LIMIT;
        loop {
            assert!(Instant::now() < deadline, "no call within {LIMIT:?}");
            let events = peer
                .pump(64 * 1024)
                .expect("the client keeps the connection");
            if events
                .iter()
                .any(|event| matches!(event, Event::StreamOpened { .. }))
            {
                return; // dropped: the connection closes
            }
        }
    });
    let client = Client::builder(addr)
        .spin(SpinPolicy::OFF)
        .wait_for_ready(Duration::ZERO)
        .connect()
        .expect("client connects");
    let outcome = within(LIMIT, "a call whose connection is lost", move || {
        client.call("echo", "x")
    });
    assert!(
        matches!(
            outcome,
            Err(CallError::ConnectionLost(_) | CallError::Reset(_) | CallError::Connect(_))
        ),
        "{outcome:?}"
    );
    peer.join().expect("the raw server");
}
