//! The web edge (`spec/patterns.md` §9) over real sockets: event streams
//! with resume, subscriptions, long polls, calls bridged to every kind of
//! route, /metrics, and every way a request can be refused.

use std::net::SocketAddr;
use std::time::Duration;

use mux_server::{HttpConfig, Response, Server, ServerBuilder};
use mux_testkit::http::{http_request, EventStream, HttpConn};
use mux_testkit::{any_local_address, server_builder, wait_until};

const LIMIT: Duration = Duration::from_secs(10);

fn with_routes(builder: ServerBuilder) -> ServerBuilder {
    builder
        .route("meta", |req| {
            let trace = req.header("trace").unwrap_or_default().to_vec();
            Response::ok("m")
                .metadata([(&b"seen"[..], &trace[..])])
                .map_err(|e| e.to_string().into())
        })
        .route_blocking("slow", |req| Ok(Response::ok(req.into_body())))
        .route_async(
            "later",
            |req| async move { Ok(Response::ok(req.into_body())) },
        )
        .route_async("never", |_req| std::future::pending())
        .route("count", |_req| {
            let (response, writer) = Response::channel(4);
            std::thread::spawn(move || {
                for n in 0..100 {
                    if writer.write(format!("{n},")).is_err() {
                        return;
                    }
                }
                writer.finish();
            });
            Ok(response)
        })
}

fn start(config: impl FnOnce(HttpConfig) -> HttpConfig) -> (Server, SocketAddr) {
    let builder = with_routes(server_builder()).event_log_capacity(8);
    let server = builder
        .http_config(config(HttpConfig::new(any_local_address())))
        .start()
        .expect("server starts");
    let addr = server.http_addr().expect("the edge listens");
    (server, addr)
}

#[test]
fn an_event_stream_replays_follows_and_resumes_from_last_event_id() {
    let (server, addr) = start(|c| c);
    let handle = server.handle();
    for n in 1..=3 {
        handle
            .append_event("news", "headline", format!("story {n}\nline two"))
            .expect("append");
    }
    let mut stream = EventStream::open(addr, "/events/news?lastEventId=0", &[]).expect("open");
    let mut ids = Vec::new();
    for n in 1..=3 {
        let event = stream.next_event().expect("a replayed event");
        assert_eq!(event.kind, "headline");
        assert_eq!(event.data, format!("story {n}\nline two"));
        ids.push(event.id.expect("an id"));
    }
    assert_eq!(
        stream.retry,
        Some(1000),
        "the reconnection delay is advertised"
    );
    handle.append_event("news", "", "live").expect("append");
    let live = stream.next_event().expect("a live event");
    assert_eq!(
        (live.kind.as_str(), live.data.as_str()),
        ("message", "live")
    );
    // A browser reconnecting sends the last id it saw.
    let last = ids[1].clone();
    let mut resumed =
        EventStream::open(addr, "/events/news", &[("Last-Event-ID", &last)]).expect("resume");
    let data: Vec<String> = (0..2)
        .map(|_| resumed.next_event().expect("resumed").data)
        .collect();
    assert_eq!(data, ["story 3\nline two", "live"]);
    // Without an id, a stream starts with the next event.
    let mut fresh = EventStream::open(addr, "/events/news", &[]).expect("fresh");
    handle.append_event("news", "", "next").expect("append");
    assert_eq!(fresh.next_event().expect("next").data, "next");
}

#[test]
fn a_resume_past_the_kept_events_is_gone_and_another_epoch_starts_over() {
    let (server, addr) = start(|c| c);
    let handle = server.handle();
    for n in 0..20 {
        handle
            .append_event("busy", "", format!("{n}"))
            .expect("append");
    }
    // Ids of another instance of the log (a restarted server): from the
    // oldest kept event.
    let mut other =
        EventStream::open(addr, "/events/busy", &[("Last-Event-ID", "12345-3")]).expect("open");
    let first = other.next_event().expect("the oldest kept");
    assert_eq!(first.data, "12");
    let epoch = first
        .id
        .as_deref()
        .and_then(|id| id.split('-').next())
        .expect("an epoch");
    // Resuming in this epoch from before the oldest kept: gone.
    let gone = http_request(
        addr,
        "GET",
        "/events/busy",
        &[("Last-Event-ID", &format!("{epoch}-2"))],
        b"",
    )
    .expect("answered");
    assert_eq!(gone.status, 410, "{}", gone.text());
}

#[test]
fn a_subscription_is_an_event_stream_of_matching_publications() {
    let (server, addr) = start(|c| c);
    let handle = server.handle();
    let mut stream = EventStream::open(addr, "/topics/chat.*", &[]).expect("subscribe");
    // The subscription is registered on the loop before the head is written.
    handle
        .publish("chat.lobby.deep", "not matched")
        .expect("publish");
    handle
        .publish("chat.lobby", "hello\nworld")
        .expect("publish");
    let event = stream.next_event().expect("a publication");
    assert_eq!(event.data, "chat.lobby\nhello\nworld");
    let refused = http_request(addr, "GET", "/topics/chat.>.x", &[], b"").expect("answered");
    assert_eq!(refused.status, 400, "{}", refused.text());
}

#[test]
fn a_long_poll_is_held_until_an_entry_or_its_wait_ends() {
    let (server, addr) = start(|c| c);
    let handle = server.handle();
    let quiet =
        http_request(addr, "GET", "/poll/jobs?cursor=0&wait_ms=50", &[], b"").expect("poll");
    assert_eq!(quiet.status, 204);
    assert_eq!(quiet.header("mux-cursor"), Some("0"));
    let mut conn = HttpConn::connect(addr).expect("connect");
    conn.request("GET", "/poll/jobs?cursor=0&wait_ms=10000", &[], b"")
        .expect("send");
    wait_until(LIMIT, "the poll to park", || {
        server
            .handle()
            .metrics_text()
            .contains("mux_http_connections_open 1")
    });
    handle.append_event("jobs", "job", "build").expect("append");
    let answer = conn.read_response().expect("answered");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("mux-cursor"), Some("1"));
    assert_eq!(answer.text(), "id: 1\nevent: job\ndata: build\n\n");
    // The same connection polls again from the new cursor.
    handle.append_event("jobs", "job", "test").expect("append");
    conn.request("GET", "/poll/jobs?cursor=1", &[], b"")
        .expect("send");
    let next = conn.read_response().expect("answered");
    assert_eq!(next.header("mux-cursor"), Some("2"));
}

#[test]
fn calls_reach_every_kind_of_route_with_metadata_and_deadlines() {
    let (_server, addr) = start(|c| c);
    let mut conn = HttpConn::connect(addr).expect("connect");
    for route in ["echo", "slow", "later"] {
        conn.request("POST", &format!("/call/{route}"), &[], b"payload")
            .expect("send");
        let answer = conn.read_response().expect("answered");
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (200, "payload"),
            "{route}"
        );
    }
    conn.request("POST", "/call/meta", &[("mux-meta-trace", "t-1")], b"")
        .expect("send");
    let answer = conn.read_response().expect("answered");
    assert_eq!(answer.header("mux-meta-seen"), Some("t-1"));
    conn.request("POST", "/call/never", &[("mux-deadline-ms", "50")], b"")
        .expect("send");
    assert_eq!(conn.read_response().expect("answered").status, 504);
    conn.request("POST", "/call/count", &[], b"").expect("send");
    let counted = conn.read_response().expect("a streamed body");
    assert_eq!(counted.header("transfer-encoding"), Some("chunked"));
    let expected: String = (0..100).map(|n| format!("{n},")).collect();
    assert_eq!(counted.text(), expected);
    for (method, path, status) in [
        ("POST", "/call/nowhere", 404),
        ("POST", "/call/$publish", 404),
        ("GET", "/call/echo", 405),
        ("GET", "/nothing/here", 404),
        ("GET", "/", 404),
    ] {
        conn.request(method, path, &[], b"").expect("send");
        let answer = conn.read_response().expect("answered");
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.text());
        if status == 405 {
            assert_eq!(answer.header("allow"), Some("POST"));
        }
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_server, addr) = start(|c| c);
    let mut conn = HttpConn::connect(addr).expect("connect");
    let one = "POST /call/slow HTTP/1.1\r\ncontent-length: 3\r\n\r\none";
    let two = "POST /call/echo HTTP/1.1\r\ncontent-length: 3\r\n\r\ntwo";
    conn.send(format!("{one}{two}").as_bytes()).expect("send");
    assert_eq!(conn.read_response().expect("first").text(), "one");
    assert_eq!(conn.read_response().expect("second").text(), "two");
}

#[test]
fn every_bad_request_gets_its_status_and_a_close() {
    let (_server, addr) = start(|c| HttpConfig {
        max_headers: 8,
        ..c
    });
    let long_head = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000));
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "x-a: 1\r\n".repeat(9));
    let too_big = format!(
        "POST /call/echo HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
        mux_server::DEFAULT_MAX_REQUEST_BODY + 1
    );
    let cases: [(&str, u16); 6] = [
        ("HELLO THERE\r\n\r\n", 400),
        (&long_head, 431),
        (&many, 431),
        (&too_big, 413),
        (
            "POST /call/echo HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            411,
        ),
        ("GET / HTTP/2.0\r\n\r\n", 505),
    ];
    for (request, status) in cases {
        let mut conn = HttpConn::connect(addr).expect("connect");
        conn.send(request.as_bytes()).expect("send");
        let answer = conn.read_response().expect("answered");
        assert_eq!(
            answer.status,
            status,
            "{:?}: {}",
            &request[..20.min(request.len())],
            answer.text()
        );
        assert_eq!(answer.header("connection"), Some("close"));
    }
}

#[test]
fn a_head_that_trickles_in_is_timed_out_and_connections_are_bounded() {
    let (server, addr) = start(|c| HttpConfig {
        header_timeout: Duration::from_millis(500),
        max_connections: 2,
        ..c
    });
    let mut slow = HttpConn::connect(addr).expect("connect");
    slow.send(b"GET /metrics HTTP/1.1\r\nx-slow: ")
        .expect("send");
    let mut idle = HttpConn::connect(addr).expect("connect");
    wait_until(LIMIT, "two HTTP connections", || {
        server
            .handle()
            .metrics_text()
            .contains("mux_http_connections_open 2")
    });
    let mut third = HttpConn::connect(addr).expect("connect");
    assert_eq!(third.read_response().expect("refused").status, 503);
    assert_eq!(slow.read_response().expect("timed out").status, 408);
    idle.request("GET", "/metrics", &[], b"").expect("send");
    assert_eq!(idle.read_response().expect("served").status, 200);
}

#[test]
fn metrics_count_connections_frames_and_http_requests() {
    let (server, addr) = start(|c| c);
    let client = mux_client::Client::connect(server.local_addr()).expect("connect");
    client.call("echo", "x").expect("call");
    drop(client);
    wait_until(LIMIT, "the closed connection's counters", || {
        let text = server.handle().metrics_text();
        text.contains("mux_frames_received_total{type=\"OPEN\"}")
            && text.contains("mux_connections_open 0")
    });
    let answer = http_request(addr, "GET", "/metrics", &[], b"").expect("scraped");
    let text = answer.text();
    for line in [
        "mux_connections_opened_total 1",
        "mux_data_bytes_received_total",
        "mux_goaways_total{direction=\"received\",code=\"NO_ERROR\"}",
        "mux_http_connections_open 1",
        "# EOF",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    // A mux subscriber's delivery is counted like an HTTP one.
    let subscriber = mux_client::Client::connect(server.local_addr()).expect("connect");
    let mut subscription = subscriber.subscribe("news.*").expect("subscribe");
    server.handle().publish("news.today", "x").expect("publish");
    let delivered = subscription.next_timeout(LIMIT);
    assert!(matches!(delivered, Some(Ok(_))), "{delivered:?}");
    assert!(server
        .handle()
        .metrics_text()
        .contains("mux_feed_deliveries_total 1"));
    let again = http_request(addr, "GET", "/metrics", &[], b"").expect("scraped");
    assert!(again
        .text()
        .contains("mux_http_requests_total{status=\"200\"} 1"));
}

#[test]
fn a_graceful_shutdown_ends_event_streams_and_answers_polls() {
    let (server, addr) = start(|c| c);
    let mut stream = EventStream::open(addr, "/events/news", &[]).expect("open");
    let mut poll = HttpConn::connect(addr).expect("connect");
    poll.request("GET", "/poll/jobs?cursor=0", &[], b"")
        .expect("send");
    wait_until(LIMIT, "both to be served", || {
        server
            .handle()
            .metrics_text()
            .contains("mux_http_connections_open 2")
    });
    server
        .shutdown_gracefully(Duration::from_secs(5))
        .expect("shuts down");
    assert!(
        stream.ended().expect("read to its end"),
        "the stream ended whole"
    );
    assert_eq!(poll.read_response().expect("answered").status, 204);
}

/// A server with the web edge whose slow subscribers lose the oldest
/// (`feeds` sets their other bounds), and an event stream subscribed to
/// `bulk.*` on it, not yet read.
fn bulk_subscriber(feeds: impl FnOnce(ServerBuilder) -> ServerBuilder) -> (Server, EventStream) {
    let builder = with_routes(server_builder())
        .slow_subscriber_policy(mux_server::SlowSubscriber::DropOldest { queue: 1_000_000 });
    let server = feeds(builder)
        .http(any_local_address())
        .start()
        .expect("server starts");
    let addr = server.http_addr().expect("the edge listens");
    let stream = EventStream::open(addr, "/topics/bulk.*", &[]).expect("subscribe");
    (server, stream)
}

/// Publishes `count` 64 KiB payloads on `bulk.data` from server code.
fn publish_bulk(server: &Server, count: u64) {
    let payload = "x".repeat(64 * 1024);
    for _ in 0..count {
        server
            .handle()
            .publish("bulk.data", payload.clone())
            .expect("publish");
    }
}

/// Reads a `bulk.*` subscription until `published` publications are
/// accounted for: how many arrived, and how many `lost` events counted.
fn count_bulk_events(stream: &mut EventStream, published: u64) -> (u64, u64) {
    let (mut received, mut lost) = (0u64, 0u64);
    while received + lost < published {
        let event = stream.next_event().expect("an event");
        match event.kind.as_str() {
            "lost" => lost += event.data.parse::<u64>().expect("a count"),
            _ => {
                assert!(
                    event.data.starts_with("bulk.data\nxxx"),
                    "{}",
                    &event.data[..20]
                );
                received += 1;
            }
        }
    }
    (received, lost)
}

#[test]
fn a_subscriber_that_does_not_read_is_told_what_it_lost() {
    let (server, mut stream) = bulk_subscriber(|feeds| feeds.feed_queue_bytes(256 * 1024));
    // Far more than the socket buffers (up to 32 MiB received and 4 MiB
    // sent on Linux's defaults) and the feed bound hold, unread.
    let published = 2_000;
    publish_bulk(&server, published);
    let (received, lost) = count_bulk_events(&mut stream, published);
    assert!(
        lost > 0,
        "nothing was dropped: the test did not fill the queues"
    );
    assert_eq!(
        received + lost,
        published,
        "every publication delivered or counted lost"
    );
}

#[test]
fn a_subscriber_behind_for_longer_than_the_limit_loses_what_follows() {
    // Bounded in count and bytes far beyond what the test publishes: only
    // the 20 ms limit on how long the edge's unwritten bytes may wait binds.
    let (server, mut stream) = bulk_subscriber(|feeds| {
        feeds
            .feed_queue_bytes(1 << 30)
            .feed_max_wait(Duration::from_millis(20))
    });
    // More than the socket buffers hold unread (see above), so that bytes
    // wait at the edge.
    let before = 1_000;
    publish_bulk(&server, before);
    // The loop has taken them all (delivered, or dropped if it took longer
    // than the limit to); then time passes, not as synchronisation: the
    // unwritten bytes are older than the limit when the next ones arrive.
    wait_until(LIMIT, "the edge to take the publications", || {
        let metrics = server.handle().metrics_text();
        let count = |name: &str| {
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        count("mux_feed_deliveries_total ") + count("mux_feed_losses_total ") >= before
    });
    std::thread::sleep(Duration::from_millis(60));
    let after = 100;
    publish_bulk(&server, after);
    let published = before + after;
    let (received, lost) = count_bulk_events(&mut stream, published);
    assert!(
        lost >= after,
        "{lost} lost: publications were queued behind bytes older than the limit"
    );
    assert_eq!(received + lost, published);
}

#[test]
fn many_pipelined_requests_and_a_long_streamed_body_do_not_deepen_the_stack() {
    let builder = mux_server::demo::routes(server_builder()).http(any_local_address());
    let server = builder.start().expect("server starts");
    let addr = server.http_addr().expect("the edge listens");
    let mut conn = HttpConn::connect(addr).expect("connect");
    // 20,000 requests in one write: answered one after the other.
    let one = "POST /call/echo HTTP/1.1\r\ncontent-length: 1\r\n\r\nx";
    conn.send(one.repeat(20_000).as_bytes()).expect("send");
    for _ in 0..20_000 {
        assert_eq!(conn.read_response().expect("answered").text(), "x");
    }
    // 256 MiB streamed in 64 KiB messages from the demo's `source` route.
    let size = (256u64 << 20).to_string();
    conn.request("POST", "/call/source", &[], size.as_bytes())
        .expect("send");
    let (status, _) = conn.read_head().expect("a head");
    assert_eq!(status, 200);
    let mut total = 0u64;
    while let Some(chunk) = conn.chunk().expect("a chunk") {
        total += chunk.len() as u64;
    }
    assert_eq!(total, 256 << 20);
}
