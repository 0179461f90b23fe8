//! The patterns over real sockets (`spec/patterns.md`): each with its normal
//! path and the failures users meet (timeouts, cancellation, slow
//! subscribers, reconnect and resume, server restart).

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use mux_client::{CallError, CallRequest, Client, Delivery, DeliveryRef, Resume};
use mux_core::patterns::{self, FeedMessage};
use mux_server::{MemoryStore, Response, Server, SlowSubscriber, Status};
use mux_testkit::{any_local_address, server_builder, wait_until};

const WAIT: Duration = Duration::from_secs(5);

fn demo() -> (Server, mux_server::demo::ClockGuard) {
    mux_server::demo::start(any_local_address(), Some(2), Default::default()).expect("demo server")
}

#[test]
fn publications_fan_out_to_every_matching_subscriber_in_order() {
    let (server, _clock) = demo();
    let clients: Vec<Client> = (0..6)
        .map(|_| Client::connect(server.local_addr()).expect("connect"))
        .collect();
    let mut subs: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(n, c)| {
            c.subscribe(if n % 2 == 0 { "fan.>" } else { "fan.*" })
                .expect("subscribe")
        })
        .collect();
    let publisher = Client::connect(server.local_addr()).expect("publisher");
    for n in 0..50 {
        publisher
            .publish("fan.out", n.to_string())
            .expect("publish");
    }
    // Server-side publishing reaches them too.
    server
        .handle()
        .publish("fan.out", "from the server")
        .expect("server publish");
    for (index, sub) in subs.iter_mut().enumerate() {
        for n in 0..50 {
            let expected = ("fan.out", n.to_string());
            // Half the subscribers read lent deliveries, half owned ones.
            if index % 2 == 1 {
                let lent = sub.next_with(WAIT, |delivery| match delivery {
                    DeliveryRef::Message { topic, payload } => {
                        (topic, payload) == (expected.0, expected.1.as_bytes())
                    }
                    DeliveryRef::Lost(count) => panic!("{count} lost"),
                });
                assert_eq!(lent, Some(Ok(true)), "{}: message {n}", sub.pattern());
                continue;
            }
            match sub.next_timeout(WAIT) {
                Some(Ok(Delivery::Message { topic, payload })) => {
                    assert_eq!(
                        (topic.as_str(), &payload[..]),
                        (expected.0, expected.1.as_bytes())
                    );
                }
                other => panic!("{}: message {n}: {other:?}", sub.pattern()),
            }
        }
        assert!(
            matches!(sub.next_timeout(WAIT), Some(Ok(Delivery::Message { payload, .. })) if &payload[..] == b"from the server")
        );
    }
    // A topic deeper than one level reaches `fan.>` only.
    publisher
        .publish("fan.deep.topic", "deep")
        .expect("publish");
    assert!(matches!(
        subs[0].next_timeout(WAIT),
        Some(Ok(Delivery::Message { .. }))
    ));
    assert!(subs[1].next_timeout(Duration::from_millis(100)).is_none());
}

#[test]
fn invalid_topics_and_patterns_are_refused() {
    let (server, _clock) = demo();
    let client = Client::connect(server.local_addr()).expect("connect");
    assert!(matches!(
        client.publish("chat.*", "x"),
        Err(CallError::Malformed(_))
    ));
    assert!(matches!(
        client.subscribe("a.>.b"),
        Err(CallError::Malformed(_))
    ));
    assert!(matches!(
        client.subscribe("has space"),
        Err(CallError::Malformed(_))
    ));
}

/// A server with `policy` and a 16 KiB stream send buffer, so that a
/// subscriber that does not read falls behind after a few messages.
fn slow_subscriber_builder(policy: SlowSubscriber) -> mux_server::ServerBuilder {
    let config = mux_server::core::Config {
        stream_send_buffer: 16 * 1024,
        ..mux_server::core::Config::default()
    };
    server_builder()
        .slow_subscriber_policy(policy)
        .connection_config(config)
}

fn slow_subscriber_server(policy: SlowSubscriber) -> Server {
    slow_subscriber_builder(policy).start().expect("server")
}

/// Reads a subscription up to the message "last": how many publications
/// arrived, and how many it was told it lost.
fn count_until_last(sub: &mut mux_client::Subscription) -> (u64, u64) {
    let (mut received, mut lost) = (0u64, 0u64);
    loop {
        match sub.next_timeout(WAIT) {
            Some(Ok(Delivery::Message { payload, .. })) if &payload[..] == b"last" => {
                return (received, lost)
            }
            Some(Ok(Delivery::Message { .. })) => received += 1,
            Some(Ok(Delivery::Lost(count))) => lost += count,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_slow_subscriber_loses_the_oldest_and_is_told_how_many() {
    let server = slow_subscriber_server(SlowSubscriber::DropOldest { queue: 16 });
    let subscriber = Client::connect(server.local_addr()).expect("connect");
    let mut sub = subscriber.subscribe("flood").expect("subscribe");
    let publisher = Client::connect(server.local_addr()).expect("publisher");
    let payload = vec![b'x'; 4096];
    let published = 3000u64;
    for _ in 0..published {
        publisher
            .publish("flood", payload.clone())
            .expect("publish");
    }
    publisher.publish("flood", "last").expect("publish");
    let (received, lost) = count_until_last(&mut sub);
    assert!(
        lost > 0,
        "nothing was dropped: the test did not make the subscriber slow"
    );
    assert_eq!(
        received + lost,
        published,
        "every publication was delivered or counted as lost"
    );
}

#[test]
fn a_slow_subscribers_queue_is_bounded_in_bytes_too() {
    // A policy that allows 100,000 messages, but a 64 KiB byte cap: with
    // 16 KiB publications, the cap binds long before the count.
    let config = mux_server::core::Config {
        stream_send_buffer: 16 * 1024,
        ..mux_server::core::Config::default()
    };
    let server = server_builder()
        .slow_subscriber_policy(SlowSubscriber::DropOldest { queue: 100_000 })
        .feed_queue_bytes(64 * 1024)
        .connection_config(config)
        .start()
        .expect("server");
    let subscriber = Client::connect(server.local_addr()).expect("connect");
    let mut sub = subscriber.subscribe("big").expect("subscribe");
    let publisher = Client::connect(server.local_addr()).expect("publisher");
    let payload = vec![b'x'; 16 * 1024];
    let published = 1000u64;
    for _ in 0..published {
        publisher.publish("big", payload.clone()).expect("publish");
    }
    publisher.publish("big", "last").expect("publish");
    let (received, lost) = count_until_last(&mut sub);
    assert!(lost > 0, "the byte cap dropped nothing");
    assert_eq!(received + lost, published);
}

/// A server whose feeds may hold a message for 20 ms (and, in count and
/// bytes, far more than the tests publish), under `policy`.
fn max_wait_server(policy: SlowSubscriber) -> Server {
    slow_subscriber_builder(policy)
        .feed_queue_bytes(64 << 20)
        .feed_max_wait(Duration::from_millis(20))
        .start()
        .expect("server")
}

/// Publishes 4 KiB messages to `topic` past what the subscriber's windows
/// and buffers take (its inbox, the stream window, the send buffer), then
/// lets the feed's queue grow older than the server's 20 ms limit.
fn publish_then_wait(publisher: &Client, topic: &str, count: u64) {
    for _ in 0..count {
        publisher.publish(topic, vec![b'x'; 4096]).expect("publish");
    }
    // Time passing, not synchronisation: what waits in the queue is older
    // than the limit when the next publication arrives.
    std::thread::sleep(Duration::from_millis(60));
}

#[test]
fn messages_that_waited_past_the_limit_are_dropped_and_counted() {
    let server = max_wait_server(SlowSubscriber::DropOldest { queue: 100_000 });
    let subscriber = Client::connect(server.local_addr()).expect("connect");
    let mut sub = subscriber.subscribe("stale").expect("subscribe");
    let publisher = Client::connect(server.local_addr()).expect("publisher");
    let published = 400;
    publish_then_wait(&publisher, "stale", published);
    publisher.publish("stale", "last").expect("publish");
    let (received, lost) = count_until_last(&mut sub);
    assert!(
        lost > 0,
        "nothing was dropped: the queue was bounded in count and bytes only"
    );
    assert_eq!(
        received + lost,
        published,
        "every publication accounted for"
    );
    let losses = format!("mux_feed_losses_total {lost}");
    wait_until(WAIT, &losses, || {
        server.handle().metrics_text().contains(&losses)
    });
}

#[test]
fn a_subscriber_behind_for_longer_than_the_limit_can_be_disconnected() {
    let server = max_wait_server(SlowSubscriber::Disconnect { queue: 100_000 });
    let subscriber = Client::connect(server.local_addr()).expect("connect");
    let mut sub = subscriber.subscribe("stale").expect("subscribe");
    let publisher = Client::connect(server.local_addr()).expect("publisher");
    publish_then_wait(&publisher, "stale", 400);
    publisher.publish("stale", "last").expect("publish");
    let outcome = loop {
        match sub.next_timeout(WAIT) {
            Some(Ok(Delivery::Message { payload, .. })) => {
                assert_ne!(&payload[..], b"last", "the stale queue was written");
            }
            other => break other,
        }
    };
    assert_eq!(
        outcome,
        Some(Err(CallError::Reset(
            mux_server::core::ErrorCode::ENHANCE_YOUR_CALM
        )))
    );
}

#[test]
fn a_slow_subscriber_can_be_disconnected_instead() {
    let server = slow_subscriber_server(SlowSubscriber::Disconnect { queue: 16 });
    let subscriber = Client::connect(server.local_addr()).expect("connect");
    let mut sub = subscriber.subscribe("flood").expect("subscribe");
    let publisher = Client::connect(server.local_addr()).expect("publisher");
    for _ in 0..3000 {
        publisher
            .publish("flood", vec![b'x'; 4096])
            .expect("publish");
    }
    let outcome = loop {
        match sub.next_timeout(WAIT) {
            Some(Ok(_)) => {}
            other => break other,
        }
    };
    assert_eq!(
        outcome,
        Some(Err(CallError::Reset(
            mux_server::core::ErrorCode::ENHANCE_YOUR_CALM
        )))
    );
}

#[test]
fn subscriptions_come_back_after_a_server_restart() {
    let (server, clock) = demo();
    let addr = server.local_addr();
    let client = Client::builder(addr)
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .connect()
        .expect("connect");
    let mut sub = client.subscribe("restart.>").expect("subscribe");
    client.publish("restart.a", "before").expect("publish");
    assert!(matches!(
        sub.next_timeout(WAIT),
        Some(Ok(Delivery::Message { .. }))
    ));
    drop(clock);
    server.shutdown_gracefully(WAIT).expect("shutdown");
    let (again, _clock) = mux_server::demo::start(addr, Some(1), Default::default())
        .expect("restart on the same port");
    // The subscription resubscribes by itself; it says it may have lost
    // messages (read lent here; `next_timeout` says it as `Delivery::Lost`).
    let lent = sub.next_with(WAIT, |delivery| delivery == DeliveryRef::Lost(0));
    assert_eq!(lent, Some(Ok(true)));
    wait_until(WAIT, "a publication through the restarted server", || {
        client.publish("restart.a", "after").is_ok()
    });
    assert!(
        matches!(sub.next_timeout(WAIT), Some(Ok(Delivery::Message { payload, .. })) if &payload[..] == b"after")
    );
    drop(again);
}

#[test]
fn event_streams_resume_from_the_last_id_and_report_gaps() {
    let server = server_builder()
        .event_log_capacity(8)
        .start()
        .expect("server");
    let handle = server.handle();
    let client = Client::connect(server.local_addr()).expect("connect");
    for n in 1..=3 {
        handle
            .append_event("feed", "item", format!("{n}"))
            .expect("append");
    }
    let mut events = client.events("feed", Resume::After(1)).expect("events");
    let ids: Vec<u64> = (0..2)
        .map(|_| events.next_timeout(WAIT).expect("event").expect("ok").id)
        .collect();
    assert_eq!(ids, [2, 3]);
    handle.append_event("feed", "item", "4").expect("append");
    assert_eq!(events.next_timeout(WAIT).expect("live").expect("ok").id, 4);
    assert_eq!(events.last_id(), Some(4));
    // Far behind: more than the 8 kept events were appended since.
    for n in 5..=20 {
        handle
            .append_event("feed", "item", format!("{n}"))
            .expect("append");
    }
    match client.events("feed", Resume::After(2)) {
        Err(CallError::Rejected { status, .. }) => assert_eq!(status, Status::GONE),
        other => panic!("{other:?}"),
    }
}

#[test]
fn event_streams_survive_a_server_restart() {
    let (server, clock) = demo();
    let addr = server.local_addr();
    let client = Client::builder(addr)
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .connect()
        .expect("connect");
    let mut events = client.events("news", Resume::Latest).expect("events");
    client.call("announce", "one").expect("announce");
    assert_eq!(
        &events.next_timeout(WAIT).expect("event").expect("ok").data[..],
        b"one"
    );
    drop(clock);
    server.shutdown_gracefully(WAIT).expect("shutdown");
    let (again, _clock) =
        mux_server::demo::start(addr, Some(1), Default::default()).expect("restart");
    wait_until(WAIT, "the restarted server", || {
        client.call("announce", "two").is_ok()
    });
    // The restarted (in-memory) log starts over; the stream follows it.
    let event = events.next_timeout(WAIT);
    let event = event.expect("event after restart").expect("ok");
    assert_eq!(&event.data[..], b"two");
    drop(again);
}

#[test]
fn long_polls_hold_until_data_and_never_skip_or_repeat() {
    let server = server_builder().start().expect("server");
    let handle = server.handle();
    let client = Client::connect(server.local_addr()).expect("connect");
    for n in 1..=5 {
        handle
            .append_event("queue", "job", format!("{n}"))
            .expect("append");
    }
    let mut poller = client.long_poller("queue", 0, Duration::from_secs(2));
    let first: Vec<u64> = poller.poll().expect("poll").iter().map(|e| e.id).collect();
    assert_eq!(first, [1, 2, 3, 4, 5]);
    assert_eq!(poller.cursor(), 5);
    // Nothing new: held, then an empty answer with the cursor unchanged.
    let mut short = client.long_poller("queue", 5, Duration::from_millis(50));
    assert!(short.poll().expect("poll").is_empty());
    assert_eq!(short.cursor(), 5);
    // A poll with nothing new is held: opened before an echo on the same
    // connection, it is parked on the server once the echo is answered, and
    // has no answer until an entry arrives, which ends it at once.
    let mut held = client.open_stream(
        CallRequest::new(patterns::LONG_POLL, "")
            .header(patterns::STREAM, "queue")
            .header(patterns::AFTER, "5")
            .header(patterns::WAIT_MS, "10000"),
    );
    assert_eq!(client.call("echo", "x").expect("echo").body, "x");
    assert!(
        held.try_next().is_none(),
        "answered before any entry arrived"
    );
    handle.append_event("queue", "job", "6").expect("append");
    assert_eq!(held.head().expect("answered").status, Status::OK);
    match held.next_timeout(WAIT).map(|m| m.map(FeedMessage::decode)) {
        Some(Ok(Ok(FeedMessage::Event { id, .. }))) => assert_eq!(id, 6),
        other => panic!("expected event 6, got {other:?}"),
    }
    let next: Vec<u64> = poller.poll().expect("poll").iter().map(|e| e.id).collect();
    assert_eq!(next, [6]);
}

#[test]
fn conditional_polling_sends_bodies_only_on_change() {
    let (server, _clock) = demo();
    let client = Client::connect(server.local_addr()).expect("connect");
    let poller = client.poll("config", "", Duration::from_millis(10));
    let first = poller.next_change(WAIT).expect("first").expect("ok");
    wait_until(WAIT, "unchanged polls", || poller.unchanged() >= 3);
    assert!(
        poller.next_change(Duration::from_millis(30)).is_none(),
        "no change, no delivery"
    );
    client.call("config.set", "").expect("change");
    let second = poller.next_change(WAIT).expect("second").expect("ok");
    assert_ne!(first.body, second.body);
}

#[test]
fn sessions_keep_state_and_replay_missed_events_after_a_reconnect() {
    let (server, _clock) = demo();
    let addr = server.local_addr();
    let first = Client::connect(addr).expect("connect");
    let session = first.session().expect("session");
    assert_eq!(&session.call("counter", "").expect("call").body[..], b"1");
    let mut feed = session.events(0).expect("feed");
    assert_eq!(
        &feed.next_timeout(WAIT).expect("event").expect("ok").data[..],
        b"1"
    );
    let seen = feed.last_id().expect("seen");
    drop(feed);
    first.shutdown(); // the client goes away; the session stays on the server
    let second = Client::connect(addr).expect("reconnect");
    let resumed = second.resume_session(session.token());
    assert_eq!(&resumed.call("counter", "").expect("call").body[..], b"2");
    let mut feed = resumed.events(seen).expect("feed");
    assert_eq!(
        &feed.next_timeout(WAIT).expect("missed").expect("ok").data[..],
        b"2"
    );
}

#[test]
fn expired_sessions_and_old_gaps_are_clear_errors() {
    let server = server_builder()
        .session_store(Arc::new(MemoryStore::new(Duration::from_millis(200), 4)))
        .route("touch", |req| match req.session() {
            Some(session) => {
                for n in 0..10 {
                    session.push("n", format!("{n}").into());
                }
                Ok(Response::ok("pushed"))
            }
            None => Ok(Response::ok("no session")),
        })
        .start()
        .expect("server");
    let client = Client::connect(server.local_addr()).expect("connect");
    let session = client.session().expect("session");
    session.call("touch", "").expect("touch");
    // Only the last 4 events are kept: asking from the start is a gap.
    match session.events(0) {
        Err(CallError::Rejected { status, message }) => {
            assert_eq!(status, Status::GONE);
            assert!(message.contains("no longer kept"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Past its TTL the session is gone.
    std::thread::sleep(Duration::from_millis(400));
    let reply = session.call("touch", "").expect("call");
    assert_eq!(reply.status, Status::GONE);
}

#[test]
fn pushes_reach_a_handler_and_a_refusing_client_gets_none() {
    let server = server_builder().threads(1).start().expect("server");
    let (sender, receiver) = mpsc::sync_channel(64);
    let accepting = Client::builder(server.local_addr())
        .on_push(move |push| {
            let _ = sender.try_send(push);
        })
        .connect()
        .expect("connect");
    server
        .handle()
        .push_all([(&b"kind"[..], &b"test"[..])], "hello")
        .expect("push");
    let push = loop {
        let push = receiver.recv_timeout(WAIT).expect("a push");
        if push.metadata.get(b"kind") == Some(&b"test"[..]) {
            break push;
        }
    };
    assert_eq!(&push.body[..], b"hello");
    assert_eq!(push.associated, None);
    // A client that refuses pushes (MAX_CONCURRENT_STREAMS 0) is sent none:
    // its handler would count them.
    let refused = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = Arc::clone(&refused);
    let refusing = Client::builder(server.local_addr())
        .refuse_pushes()
        .on_push(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .connect()
        .expect("connect");
    server
        .handle()
        .push_all([(&b"kind"[..], &b"second"[..])], "seen by one")
        .expect("push");
    loop {
        let push = receiver.recv_timeout(WAIT).expect("the second push");
        if push.metadata.get(b"kind") == Some(&b"second"[..]) {
            break;
        }
    }
    // One loop serves both clients: the push to the accepting one went out
    // with any to the refusing one, before this echo's answer.
    assert!(refusing.call("echo", "fine").is_ok());
    assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 0);
    drop(accepting);
}

#[test]
fn tied_pushes_name_their_request() {
    let server = server_builder()
        .route("page", |_| {
            Response::ok("page")
                .push([(&b"asset"[..], &b"style.css"[..])], "body { }")
                .map_err(|e| e.to_string().into())
        })
        .start()
        .expect("server");
    let (sender, receiver) = mpsc::sync_channel(8);
    let client = Client::builder(server.local_addr())
        .on_push(move |push| {
            let _ = sender.try_send(push);
        })
        .connect()
        .expect("connect");
    assert_eq!(&client.call("page", "").expect("call").body[..], b"page");
    let push = receiver.recv_timeout(WAIT).expect("tied push");
    assert!(push.associated.is_some());
    assert_eq!(&push.body[..], b"body { }");
}

#[test]
fn dropping_a_subscription_unsubscribes() {
    let (server, _clock) = demo();
    let client = Client::connect(server.local_addr()).expect("connect");
    let sub = client.subscribe("bye").expect("subscribe");
    assert_eq!(server.handle().feed_count(), 1);
    drop(sub);
    wait_until(WAIT, "the server to drop the subscription", || {
        server.handle().feed_count() == 0
    });
    let mut other = client.subscribe("bye").expect("subscribe again");
    client.publish("bye", "x").expect("publish");
    assert!(matches!(
        other.next_timeout(WAIT),
        Some(Ok(Delivery::Message { .. }))
    ));
}

#[test]
fn a_publishing_stream_delivers_in_order_without_answers() {
    let (server, _clock) = demo();
    let client = Client::connect(server.local_addr()).expect("connect");
    let mut sub = client.subscribe("stream.>").expect("subscribe");
    let mut publisher = client.publisher();
    for n in 0..200 {
        publisher
            .publish("stream.items", n.to_string())
            .expect("publish");
    }
    assert!(matches!(
        publisher.publish("bad..topic", "x"),
        Err(CallError::Malformed(_))
    ));
    for n in 0..200 {
        match sub.next_timeout(WAIT) {
            Some(Ok(Delivery::Message { payload, .. })) => {
                assert_eq!(&payload[..], n.to_string().as_bytes())
            }
            other => panic!("publication {n}: {other:?}"),
        }
    }
    assert_eq!(
        publisher.finish().expect("finish"),
        "200 published, 0 rejected"
    );
}

/// Publications on several topics, in runs of varying length, reach each
/// subscriber in publication order (the loop hands a run on one topic to
/// each subscriber in turn, and runs keep their order).
#[test]
fn interleaved_topics_reach_each_subscriber_in_publication_order() {
    let (server, _clock) = demo();
    let client = Client::connect(server.local_addr()).expect("connect");
    let patterns = ["mix.>", "mix.a", "mix.*", "mix.c.>"];
    let mut subs: Vec<_> = patterns
        .iter()
        .map(|pattern| client.subscribe(pattern).expect("subscribe"))
        .collect();
    let topics = ["mix.a", "mix.b", "mix.c.d"];
    let sent: Vec<(&str, String)> = (0..300)
        .map(|n: usize| (topics[(n / (1 + n % 5)) % 3], n.to_string()))
        .collect();
    let mut publisher = client.publisher();
    for (topic, payload) in &sent {
        publisher.publish(topic, payload.clone()).expect("publish");
    }
    assert_eq!(
        publisher.finish().expect("finish"),
        "300 published, 0 rejected"
    );
    let matches = |pattern: &str, topic: &str| match pattern {
        "mix.>" => true,
        "mix.a" => topic == "mix.a",
        "mix.*" => topic != "mix.c.d",
        _ => topic == "mix.c.d",
    };
    for (sub, pattern) in subs.iter_mut().zip(patterns) {
        for (topic, payload) in sent.iter().filter(|(topic, _)| matches(pattern, topic)) {
            match sub.next_timeout(WAIT) {
                Some(Ok(Delivery::Message {
                    topic: got,
                    payload: body,
                })) => assert_eq!(
                    (got.as_str(), &body[..]),
                    (*topic, payload.as_bytes()),
                    "{pattern}"
                ),
                other => panic!("{pattern}: {topic} {payload}: {other:?}"),
            }
        }
    }
}

/// Every demo route answers from the first request after start: nothing
/// it answers depends on state set after `start` returned (the routes that
/// append to event logs reached the server through a handle set only then,
/// and answered 500 in between).
#[test]
fn every_demo_route_answers_from_the_first_request() {
    let routes: [(&str, &str, u16); 11] = [
        ("announce", "first", 200),
        ("enqueue", "job", 200),
        ("echo", "x", 200),
        ("status", "200", 200),
        ("sleep", "1", 200),
        ("upload", "abc", 200),
        ("sink", "abc", 200),
        ("source", "10", 200),
        ("config", "", 200),
        ("config.set", "", 200),
        ("counter", "", 400), // needs a session: refused, not failed
    ];
    for (route, body, status) in routes {
        let (server, _clock) =
            mux_server::demo::start(any_local_address(), Some(1), Default::default())
                .expect("demo server");
        let client = Client::connect(server.local_addr()).expect("connect");
        let reply = client.call(route, body).expect("an answer");
        assert_eq!(
            reply.status.0, status,
            "{route} right after start: {:?}",
            reply.body
        );
    }
}

/// A broker that only reports gaps, when the test says so.
#[derive(Default)]
struct GapBroker {
    deliveries: std::sync::Mutex<Vec<mux_server::broker::Delivery>>,
}

impl mux_server::Broker for GapBroker {
    fn publish(
        &self,
        _topic: &str,
        _payload: &bytes::Bytes,
        _ack: Option<mux_server::Acknowledge>,
    ) -> Result<mux_server::Accepted, mux_server::BrokerError> {
        Err(mux_server::BrokerError::Overloaded)
    }

    fn attach(&self, delivery: mux_server::broker::Delivery) {
        self.deliveries.lock().expect("deliveries").push(delivery);
    }
}

#[test]
fn a_broker_gap_is_announced_even_when_nothing_is_published_after_it() {
    let broker = Arc::new(GapBroker::default());
    let server = server_builder()
        .threads(2)
        .broker(Arc::clone(&broker) as Arc<dyn mux_server::Broker>)
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("connect");
    let mut sub = client.subscribe("quiet.>").expect("subscribe");
    for delivery in broker.deliveries.lock().expect("deliveries").iter() {
        delivery(mux_server::Arrival::Gap);
    }
    match sub.next_timeout(WAIT) {
        Some(Ok(Delivery::Lost(count))) => assert_eq!(count, patterns::LOST_UNKNOWN),
        other => panic!("the gap was not announced: {other:?}"),
    }
}
