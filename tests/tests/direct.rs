//! `DirectClient` over real sockets: calls on the caller's thread, with
//! bodies past every window, deadlines that keep the connection, a
//! connection the server closed while idle replaced without losing the
//! call, tokens, and peers that do not speak mux; `DirectSubscription`:
//! order, wildcards, a slow reader's losses counted, its end, deliveries
//! lent in place or handed out, in any mix.

use std::time::Duration;

use bytes::Bytes;
use mux_client::{
    CallError, CallRequest, Client, Delivery, DeliveryRef, DirectClient, DirectSubscription,
};
use mux_core::Config;
use mux_server::auth::StaticTokens;
use mux_server::{Response, SlowSubscriber, Status};
use mux_testkit::{fnv1a, pseudo_random, server_builder, wait_until, HashingSink};

const LIMIT: Duration = Duration::from_secs(10);

fn server() -> mux_server::Server {
    server_builder()
        .route_streaming("hash-stream", |_| Box::<HashingSink>::default())
        .route("hash", |req| {
            Ok(Response::ok(fnv1a(req.body()).to_string()))
        })
        .route("bytes", |req| {
            let len: usize = std::str::from_utf8(req.body())
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(0);
            Ok(Response::ok(pseudo_random(7, len)))
        })
        .route_blocking("slow", |_| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(Response::ok("too late"))
        })
        .start()
        .expect("server starts")
}

/// Waits until the server's metrics show `line`.
fn wait_for_metric(server: &mux_server::Server, line: &str) {
    wait_until(LIMIT, line, || {
        server.handle().metrics_text().contains(line)
    });
}

/// The server saw one connection: the client never had to reconnect.
fn assert_one_connection(server: &mux_server::Server) {
    let metrics = server.handle().metrics_text();
    assert!(
        metrics.contains("mux_connections_opened_total 1"),
        "{metrics}"
    );
}

#[test]
fn bodies_of_every_size_cross_both_ways_intact() {
    let server = server();
    let mut client = DirectClient::connect(server.local_addr()).expect("connect");
    // Past the stream window (256 KiB) and the connection's, both ways.
    for (seed, len) in [(1, 0), (2, 64), (3, 70_000), (4, 1 << 20), (5, 5 << 20)] {
        let body = pseudo_random(seed, len);
        let reply = client.call("hash", body.clone()).expect("hash");
        assert_eq!(reply.status, Status::OK);
        assert_eq!(reply.body, fnv1a(&body).to_string(), "{len} bytes up");

        let reply = client.call("bytes", len.to_string()).expect("bytes");
        assert_eq!(reply.body, pseudo_random(7, len), "{len} bytes down");
    }
    let reply = client.call("missing", "").expect("an answer");
    assert_eq!(reply.status, Status::NOT_FOUND);
}

#[test]
fn a_deadline_fails_the_call_and_keeps_the_connection() {
    let server = server();
    let mut client = DirectClient::connect(server.local_addr()).expect("connect");
    let request = CallRequest::new("slow", "").timeout(Duration::from_millis(50));
    assert_eq!(
        client.call_with(request).expect_err("answers too late"),
        CallError::DeadlineExceeded
    );
    assert_eq!(client.call("hash", "x").expect("after").status, Status::OK);
    // The same connection carried both: the server saw one.
    assert_one_connection(&server);
}

#[test]
fn a_response_over_the_limit_fails_and_the_connection_goes_on() {
    let server = server();
    let mut client = DirectClient::builder(server.local_addr())
        .max_response(1000)
        .connect()
        .expect("connect");
    let err = client.call("bytes", "200000").expect_err("too large");
    assert_eq!(err, CallError::TooLarge(1000));
    let reply = client.call("bytes", "1000").expect("within the limit");
    assert_eq!(reply.body.len(), 1000);
}

#[test]
fn a_connection_closed_while_idle_is_replaced_and_the_call_goes_through() {
    let server = server_builder()
        .connection_config(Config {
            idle_timeout: Some(Duration::from_millis(50)),
            ..Config::default()
        })
        .route("hash", |req| {
            Ok(Response::ok(fnv1a(req.body()).to_string()))
        })
        .start()
        .expect("server starts");
    let mut client = DirectClient::connect(server.local_addr()).expect("connect");
    for round in 0..3 {
        assert_eq!(client.call("hash", "x").expect("call").status, Status::OK);
        // The server ends the idle connection (GOAWAY, close); the client
        // reads none of it until its next call.
        wait_until(LIMIT, "the server to close the idle connection", || {
            server
                .handle()
                .metrics_text()
                .contains("mux_connections_open 0")
        });
        let body = Bytes::from(format!("round {round}"));
        let reply = client.call("hash", body.clone()).expect("replaced");
        assert_eq!(reply.body, fnv1a(&body).to_string());
    }
}

#[test]
fn a_connection_idle_for_a_while_is_checked_before_use() {
    let server = server_builder()
        .connection_config(Config {
            idle_timeout: Some(Duration::from_millis(50)),
            ..Config::default()
        })
        .start()
        .expect("server starts");
    // One attempt only: the call cannot be rescued by a retry.
    let mut client = DirectClient::builder(server.local_addr())
        .max_attempts(1)
        .connect()
        .expect("connect");
    let closed = || {
        server
            .handle()
            .metrics_text()
            .contains("mux_connections_open 0")
    };
    assert!(client.call("echo", "x").is_ok());
    wait_until(LIMIT, "the server to close the idle connection", closed);
    // Used soon after its last call, the connection is trusted: the request
    // goes out, and the server's GOAWAY says it was not processed.
    match client.call("echo", "y") {
        Err(CallError::ConnectionLost(why)) => assert!(why.contains("going away"), "{why}"),
        other => panic!("a request on a closed connection: {other:?}"),
    }
    assert!(client.call("echo", "z").is_ok());
    wait_until(LIMIT, "the server to close the idle connection", closed);
    // Idle for longer than a second, it is checked first and replaced.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(client.call("echo", "w").expect("checked").body, "w");
}

#[test]
fn a_token_is_presented_and_a_wrong_one_is_refused_at_connect() {
    let server = server_builder()
        .authenticator(StaticTokens::new([("alice-s3cret", "alice")]))
        .route("whoami", |req| {
            Ok(Response::ok(req.identity().name().to_owned()))
        })
        .start()
        .expect("server starts");
    let mut alice = DirectClient::builder(server.local_addr())
        .token("alice-s3cret")
        .connect()
        .expect("alice connects");
    assert_eq!(alice.call("whoami", "").expect("whoami").body, "alice");

    let err = DirectClient::builder(server.local_addr())
        .token("guess")
        .connect()
        .expect_err("a wrong token connects");
    assert!(
        err.to_string().contains("authentication refused (401)"),
        "unclear error: {err}"
    );
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
}

#[test]
fn a_peer_that_is_not_mux_or_not_there_is_a_clear_error() {
    let (addr, fake) = mux_testkit::not_mux_peer();
    let err = DirectClient::connect(addr).expect_err("not mux");
    assert!(err.to_string().contains("not speaking mux"), "{err}");
    let _ = fake.join();

    // Nothing listens on the port the fake used any more.
    let err = DirectClient::builder(addr)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .expect_err("nothing listens");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn a_server_shutting_down_fails_no_call_it_did_not_run() {
    let server = server();
    let addr = server.local_addr();
    let mut client = DirectClient::connect(addr).expect("connect");
    assert_eq!(client.call("hash", "x").expect("call").status, Status::OK);
    server
        .shutdown_gracefully(Duration::from_secs(5))
        .expect("shutdown");
    match client.call("hash", "y") {
        Err(CallError::Connect(_) | CallError::ConnectionLost(_)) => {}
        other => panic!("a call to a stopped server: {other:?}"),
    }
}

/// Reads a direct subscription up to the message "last": how many
/// publications arrived (checking their order), and how many it was told
/// it lost.
fn read_until_last(sub: &mut DirectSubscription) -> (u64, u64) {
    let (mut received, mut lost, mut previous) = (0u64, 0u64, None::<u64>);
    for turn in 0.. {
        match next_either_way(sub, turn % 3 != 0) {
            Some(Ok(Delivery::Message { payload, .. })) if &payload[..] == b"last" => {
                return (received, lost)
            }
            Some(Ok(Delivery::Message { payload, .. })) => {
                let n: u64 = std::str::from_utf8(&payload[..20])
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .expect("a numbered payload");
                assert!(previous < Some(n), "{n} after {previous:?}");
                previous = Some(n);
                received += 1;
            }
            Some(Ok(Delivery::Lost(count))) => lost += count,
            other => panic!("{other:?}"),
        }
    }
    unreachable!("the turns do not end")
}

/// The next delivery, lent (`next_with`, copied here to compare) or handed
/// out (`next_timeout`).
fn next_either_way(
    sub: &mut DirectSubscription,
    lent: bool,
) -> Option<Result<Delivery, CallError>> {
    if !lent {
        return sub.next_timeout(LIMIT);
    }
    sub.next_with(LIMIT, |delivery| match delivery {
        DeliveryRef::Message { topic, payload } => Delivery::Message {
            topic: topic.into(),
            payload: Bytes::copy_from_slice(payload),
        },
        DeliveryRef::Lost(count) => Delivery::Lost(count),
    })
}

#[test]
fn a_direct_subscription_lends_small_and_large_deliveries_in_order() {
    let server = server();
    let mut sub = direct_subscription(&server, "sizes.>");
    let publisher = Client::connect(server.local_addr()).expect("publisher");
    // Small ones come whole in a frame and are read in place; 100 KiB ones
    // span frames and are assembled first.
    let sizes = [20, 100, 100 * 1024, 5000, 70_000, 20];
    let published: Vec<(String, Vec<u8>)> = (0..300u64)
        .map(|n| {
            let size = sizes[n as usize % sizes.len()];
            (format!("sizes.{}", n % 7), numbered(n, size))
        })
        .collect();
    // Published while read: the server's feed never falls behind enough
    // to drop.
    let publishing = std::thread::scope(|scope| {
        let publishing = scope.spawn(|| {
            for (topic, payload) in &published {
                publisher.publish(topic, payload.clone()).expect("publish");
            }
        });
        read_in_order(&mut sub, &published);
        publishing.join()
    });
    publishing.expect("the publisher");
    assert!(
        sub.next_with(Duration::from_millis(50), |_| ()).is_none(),
        "nothing more, and the reader is not called"
    );
}

#[test]
fn a_lent_delivery_over_the_limit_fails_the_subscription() {
    let server = server();
    let mut sub = DirectClient::builder(server.local_addr())
        .max_response(1000)
        .connect()
        .expect("connect")
        .subscribe("limited")
        .expect("subscribe");
    let publisher = Client::connect(server.local_addr()).expect("publisher");
    for size in [900, 995, 5000] {
        publisher
            .publish("limited", vec![7u8; size])
            .expect("publish");
    }
    let length = |sub: &mut DirectSubscription| {
        sub.next_with(LIMIT, |delivery| match delivery {
            DeliveryRef::Message { payload, .. } => payload.len(),
            DeliveryRef::Lost(count) => panic!("{count} lost"),
        })
    };
    // The feed message adds the topic and two bytes to the payload.
    assert_eq!(length(&mut sub).map(Result::ok), Some(Some(900)));
    assert!(matches!(
        length(&mut sub),
        Some(Err(CallError::TooLarge(1000)))
    ));
    assert!(
        matches!(length(&mut sub), Some(Err(CallError::TooLarge(1000)))),
        "the subscription stays failed"
    );
}

/// Reads `published` from `sub`, lent, checking each.
fn read_in_order(sub: &mut DirectSubscription, published: &[(String, Vec<u8>)]) {
    for (n, (topic, payload)) in published.iter().enumerate() {
        let lent = sub.next_with(LIMIT, |delivery| match delivery {
            DeliveryRef::Message {
                topic: t,
                payload: p,
            } => t == topic && p == &payload[..],
            DeliveryRef::Lost(count) => panic!("{count} lost"),
        });
        assert_eq!(
            lent.map(|read| read.expect("a delivery")),
            Some(true),
            "delivery {n}"
        );
    }
}

/// A `DirectClient` of its own subscribed to `pattern`.
fn direct_subscription(server: &mux_server::Server, pattern: &str) -> DirectSubscription {
    DirectClient::connect(server.local_addr())
        .expect("connect")
        .subscribe(pattern)
        .expect("subscribe")
}

/// A payload of `len` bytes starting with `n` in 20 digits.
fn numbered(n: u64, len: usize) -> Vec<u8> {
    let mut payload = format!("{n:020}").into_bytes();
    payload.resize(len.max(20), b'.');
    payload
}

#[test]
fn a_direct_subscription_receives_every_match_in_order() {
    let server = server();
    let mut sub = direct_subscription(&server, "orders.*.created");
    assert_eq!(sub.pattern(), "orders.*.created");
    let publisher = Client::connect(server.local_addr()).expect("publisher");
    let published = 2000;
    for n in 0..published {
        publisher
            .publish("orders.eu.created", numbered(n, 100))
            .expect("publish");
        // Not matched: one level too deep, another verb.
        publisher
            .publish("orders.eu.x.created", "no")
            .expect("publish");
        publisher
            .publish("orders.eu.deleted", "no")
            .expect("publish");
    }
    publisher
        .publish("orders.us.created", "last")
        .expect("publish");
    assert_eq!(read_until_last(&mut sub), (published, 0));
}

#[test]
fn a_slow_direct_subscriber_is_told_what_it_lost() {
    let server = server_builder()
        .slow_subscriber_policy(SlowSubscriber::DropOldest { queue: 16 })
        .connection_config(Config {
            stream_send_buffer: 16 * 1024,
            ..Config::default()
        })
        .start()
        .expect("server");
    let mut sub = direct_subscription(&server, "flood");
    let publisher = Client::connect(server.local_addr()).expect("publisher");
    // Nobody reads while 3,000 publications of 4 KiB (12 MiB, far past the
    // stream's window) are made.
    let published = 3000;
    for n in 0..published {
        publisher
            .publish("flood", numbered(n, 4096))
            .expect("publish");
    }
    publisher.publish("flood", "last").expect("publish");
    let (received, lost) = read_until_last(&mut sub);
    assert!(lost > 0, "nothing was dropped: the subscriber was not slow");
    assert_eq!(received + lost, published, "delivered or counted as lost");
}

#[test]
fn a_direct_subscription_is_refused_ended_and_dropped_clearly() {
    let server = server();
    let err = DirectClient::connect(server.local_addr())
        .expect("connect")
        .subscribe("bad..pattern")
        .expect_err("an invalid pattern");
    assert!(matches!(err, CallError::Malformed(_)), "{err:?}");

    let sub = direct_subscription(&server, "news");
    wait_until(LIMIT, "the server to hold the subscription", || {
        server.handle().feed_count() == 1
    });
    drop(sub);
    wait_until(
        LIMIT,
        "the dropped subscription to end on the server",
        || server.handle().feed_count() == 0,
    );

    let mut sub = direct_subscription(&server, "news");
    server
        .shutdown_gracefully(Duration::from_secs(5))
        .expect("shutdown");
    match sub.next_timeout(LIMIT) {
        Some(Err(CallError::ConnectionLost(_) | CallError::Reset(_))) => {}
        other => panic!("a subscription to a stopped server: {other:?}"),
    }
    // The error stays.
    assert!(matches!(sub.next_timeout(LIMIT), Some(Err(_))));
}

#[test]
fn a_direct_publisher_streams_past_its_window_in_order() {
    let server = server();
    let mut sub = direct_subscription(&server, "prices.>");
    let mut publisher = DirectClient::connect(server.local_addr())
        .expect("connect")
        .publisher()
        .expect("publisher");
    // 4 MiB: sixteen times the stream's initial window, so the publisher
    // runs out of credit and reads the server's WINDOW_UPDATEs itself,
    // while a thread of its own reads the subscription.
    let published = 4096;
    let reader = std::thread::spawn(move || read_until_last(&mut sub));
    for n in 0..published {
        publisher
            .publish("prices.eu", numbered(n, 1024))
            .expect("publish");
    }
    assert!(matches!(
        publisher.publish("bad..topic", "x"),
        Err(CallError::Malformed(_))
    ));
    publisher.publish("prices.us", "last").expect("publish");
    assert_eq!(
        publisher.finish().expect("finish"),
        format!("{} published, 0 rejected", published + 1)
    );
    assert_eq!(reader.join().expect("reader"), (published, 0));
}

#[test]
fn a_dropped_direct_publisher_cancels_its_stream() {
    let server = server();
    let mut publisher = DirectClient::connect(server.local_addr())
        .expect("connect")
        .publisher()
        .expect("publisher");
    publisher.publish("news", "one").expect("publish");
    drop(publisher);
    wait_for_metric(
        &server,
        r#"mux_resets_total{direction="received",code="CANCEL"} 1"#,
    );
}

#[test]
fn a_timeout_too_long_to_be_a_time_waits_without_a_deadline() {
    // `Instant::now() + Duration::MAX` overflows (a panic): such a wait
    // must simply have no deadline.
    let server = server();
    let mut sub = direct_subscription(&server, "forever");
    let publisher = Client::connect(server.local_addr()).expect("publisher");
    publisher.publish("forever", "one").expect("publish");
    let delivery =
        mux_testkit::within(LIMIT, "a delivery", move || sub.next_timeout(Duration::MAX));
    match delivery {
        Some(Ok(Delivery::Message { payload, .. })) => assert_eq!(&payload[..], b"one"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_direct_publication_is_on_the_wire_when_publish_returns() {
    let server = server();
    let mut sub = direct_subscription(&server, "ticks");
    let mut publisher = DirectClient::connect(server.local_addr())
        .expect("connect")
        .publisher()
        .expect("publisher");
    // Small publications, 1 MiB in all: four times the stream's initial
    // window, yet few enough bytes that the state machine's send buffer
    // takes them all. Each must still reach the subscriber while the
    // publisher does nothing but publish.
    let published = 10_000;
    for n in 0..published {
        publisher
            .publish("ticks", numbered(n, 80))
            .expect("publish");
    }
    publisher.publish("ticks", "last").expect("publish");
    assert_eq!(read_until_last(&mut sub), (published, 0));
    assert!(publisher.finish().is_ok());
}

#[test]
fn a_direct_upload_streams_a_body_and_gives_the_connection_back() {
    let server = server();
    let mut client = DirectClient::connect(server.local_addr()).expect("connect");
    let body = pseudo_random(9, 10 << 20);
    let mut upload = client
        .upload(CallRequest::new("hash-stream", ""))
        .expect("upload");
    for piece in body.chunks(256 * 1024) {
        upload.write(Bytes::copy_from_slice(piece)).expect("write");
    }
    let reply = upload.finish().expect("reply");
    assert_eq!(reply.body, fnv1a(&body).to_string());
    // The connection came back to the client.
    assert_eq!(client.call("hash", "x").expect("after").status, Status::OK);
    assert_one_connection(&server);
}

#[test]
fn a_direct_upload_the_server_refuses_fails_its_writes_with_the_refusal() {
    let server = server_builder()
        .max_request_body(1024 * 1024)
        .start()
        .expect("server starts");
    let mut client = DirectClient::connect(server.local_addr()).expect("connect");
    let mut upload = client.upload(CallRequest::new("echo", "")).expect("upload");
    let piece = Bytes::from(vec![7u8; 64 * 1024]);
    // 16 MiB against a 1 MiB limit: once the window is spent, the writer
    // reads the server's answer.
    let refusal = (0..256)
        .find_map(|_| upload.write(piece.clone()).err())
        .expect("a write fails");
    assert!(
        matches!(&refusal, CallError::Rejected { status, .. } if status.0 == 413),
        "{refusal:?}"
    );
    assert_eq!(upload.finish().expect("the answer").status.0, 413);
    assert_eq!(client.call("echo", "x").expect("after").body, "x");

    // A dropped upload cancels its call; the client goes on.
    let mut upload = client.upload(CallRequest::new("echo", "")).expect("upload");
    upload.write("partial").expect("write");
    drop(upload);
    assert_eq!(client.call("echo", "y").expect("after a drop").body, "y");
}

#[test]
fn a_direct_stream_reads_a_download_and_gives_the_connection_back() {
    let server = mux_server::demo::routes(server_builder())
        .start()
        .expect("server starts");
    let mut client = DirectClient::connect(server.local_addr()).expect("connect");
    // 64 MiB: far past every window, read message by message.
    let total = 64usize << 20;
    let mut stream = client
        .open_stream(CallRequest::new("source", total.to_string()))
        .expect("stream");
    assert_eq!(stream.head().map(|head| head.status), Some(Status::OK));
    let (mut got, mut messages) = (0, 0);
    // Every other message lent (`next_with`), the rest handed out.
    while !stream.is_over() {
        let zeros = |message: &[u8]| (message.iter().all(|&b| b == 0), message.len());
        let read = if messages % 2 == 0 {
            stream.next_with(LIMIT, zeros)
        } else {
            stream
                .next_timeout(LIMIT)
                .map(|message| message.map(|m| zeros(&m)))
        };
        let Some(read) = read else { continue };
        let (all_zeros, len) = read.expect("message");
        assert!(all_zeros, "the source sends zeros");
        got += len;
        messages += 1;
    }
    drop(stream);
    assert_eq!(got, total);
    assert!(messages > 1, "one message: not a stream");
    assert_eq!(client.call("echo", "after").expect("call").body, "after");

    // A refusal comes back as the error; the connection stays.
    let refusal = client
        .open_stream(CallRequest::new("source", "many"))
        .expect_err("not a byte count");
    assert!(
        matches!(&refusal, CallError::Rejected { status, message } if status.0 == 400 && message.contains("byte count")),
        "{refusal:?}"
    );
    // Left halfway, a stream is cancelled; the connection goes on.
    let mut stream = client
        .open_stream(CallRequest::new("source", (1u64 << 30).to_string()))
        .expect("stream");
    assert!(matches!(stream.next_message(), Some(Ok(_))));
    drop(stream);
    assert_eq!(client.call("echo", "still").expect("call").body, "still");
    assert_one_connection(&server);
}

#[test]
fn a_dropped_direct_client_says_goodbye_with_goaway() {
    let server = server();
    let mut client = DirectClient::connect(server.local_addr()).expect("connect");
    assert!(client.call("echo", "x").is_ok());
    drop(client);
    wait_for_metric(
        &server,
        r#"mux_goaways_total{direction="received",code="NO_ERROR"} 1"#,
    );
}

/// What no outcome waits on (the reset of a call past its deadline, the
/// goodbye when the client goes) waits a bounded time for the socket: a
/// server that stopped reading, with the socket's buffers full, holds
/// neither the call nor the dropping of the client.
#[test]
fn a_server_that_stops_reading_cannot_hold_the_direct_client() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let (release, released) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        // Windows above the socket buffers (a few MiB on loopback), so
        // that the upload stops on a full socket, not on flow control.
        let config = Config {
            initial_stream_window: 16 << 20,
            initial_connection_window: 16 << 20,
            ..Config::default()
        };
        let mut peer = mux_testkit::RawPeer::server(stream, config);
        peer.handshake(LIMIT);
        // Never reads again; holds the connection until the test ends.
        let _ = released.recv_timeout(LIMIT);
    });
    let what = "the direct client, on a server that stopped reading,";
    let written = mux_testkit::within(LIMIT, what, move || {
        let mut client = DirectClient::builder(addr)
            .default_timeout(Duration::from_millis(300))
            .connect()
            .expect("connect");
        let mut upload = client.upload(CallRequest::new("sink", "")).expect("upload");
        let chunk = Bytes::from(vec![0u8; 1 << 20]);
        let written = (0..64).try_for_each(|_| upload.write(chunk.clone()));
        drop(upload);
        drop(client);
        written
    });
    assert!(
        matches!(written, Err(CallError::DeadlineExceeded)),
        "{written:?}"
    );
    let _ = release.send(());
    server.join().expect("server");
}
