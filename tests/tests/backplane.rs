//! Several servers as one through Redis (`spec/patterns.md` §3.6): each
//! server is a node with its own `RedisBroker`; clients on different nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mux_client::{CallError, Client, Delivery, Resume, Subscription};
use mux_core::patterns::LOST_UNKNOWN;
use mux_server::backplane::{Interest, RedisBroker, RedisEvents, RedisSessions, DEFAULT_PREFIX};
use mux_server::Server;
use mux_testkit::programs::UnixRedis;
use mux_testkit::server_builder;

const LIMIT: Duration = Duration::from_secs(10);

/// A node on the Redis at `redis`.
fn node(redis: &UnixRedis, name: &str) -> (Server, Client) {
    node_asking(redis, name, Interest::Everything)
}

/// A node on the Redis at `redis` that asks it for `interest`.
fn node_asking(redis: &UnixRedis, name: &str, interest: Interest) -> (Server, Client) {
    let url = redis.url();
    let broker = RedisBroker::with_prefix(&url, name, DEFAULT_PREFIX, interest).expect("a broker");
    assert!(broker.wait_connected(LIMIT), "{name} links to Redis");
    let server = server_builder()
        .broker(Arc::new(broker))
        .start()
        .expect("the node starts");
    let client = Client::connect(server.local_addr()).expect("a client of the node");
    (server, client)
}

/// The next publication's payload (losses are returned as `Err(count)`).
fn next(subscription: &mut Subscription) -> Result<String, u64> {
    match subscription.next_timeout(LIMIT) {
        Some(Ok(Delivery::Message { payload, .. })) => Ok(String::from_utf8_lossy(&payload).into()),
        Some(Ok(Delivery::Lost(count))) => Err(count),
        other => panic!("no publication within {LIMIT:?}: {other:?}"),
    }
}

/// Publishes warm-ups until every subscription received one: a node's
/// subscription reaches Redis shortly after it is answered, and after an
/// outage each link comes back on its own (publications are refused, 503,
/// until the publisher's has).
fn warm_up(publisher: &Client, topic: &str, subscriptions: &mut [&mut Subscription]) {
    let deadline = Instant::now() + LIMIT;
    for subscription in subscriptions.iter_mut() {
        loop {
            assert!(
                Instant::now() < deadline,
                "the nodes never heard each other"
            );
            let _refused_while_relinking = publisher.publish(topic, "warm-up");
            if let Some(Ok(Delivery::Message { .. })) =
                subscription.next_timeout(Duration::from_millis(50))
            {
                break;
            }
        }
    }
}

#[test]
#[ignore = "needs redis-server"]
fn publications_cross_nodes_in_order_with_exact_wildcards() {
    let redis = UnixRedis::start().expect("redis-server starts");
    let (_one, publisher) = node(&redis, "one");
    let (_two, near) = node(&redis, "two");
    // Node three asks Redis only for globs of its patterns.
    let (_three, far) = node_asking(&redis, "three", Interest::Patterns);
    let mut tail = near.subscribe("news.>").expect("subscribe on two");
    let mut single = far.subscribe("news.*").expect("subscribe on three");
    warm_up(&publisher, "news.warm", &mut [&mut tail, &mut single]);
    // Drain the extra warm-ups before counting.
    publisher.publish("news.fence", "fence").expect("publish");
    for subscription in [&mut tail, &mut single] {
        while next(subscription).ok().as_deref() != Some("fence") {}
    }
    for n in 0..200 {
        // Redis's glob for `news.*` also matches `news.deep.x`: the node filters.
        publisher
            .publish("news.deep.x", format!("deep {n}"))
            .expect("publish");
        publisher
            .publish("news.flat", format!("{n}"))
            .expect("publish");
    }
    let flat: Vec<String> = (0..200)
        .map(|_| next(&mut single).expect("a message"))
        .collect();
    assert_eq!(
        flat,
        (0..200).map(|n| n.to_string()).collect::<Vec<_>>(),
        "in order, deep ones filtered"
    );
    let both: Vec<String> = (0..400)
        .map(|_| next(&mut tail).expect("a message"))
        .collect();
    let expected: Vec<String> = (0..200)
        .flat_map(|n| [format!("deep {n}"), n.to_string()])
        .collect();
    assert_eq!(both, expected);
}

#[test]
#[ignore = "needs redis-server"]
fn a_redis_restart_refuses_publications_then_reports_the_gap_and_recovers() {
    let mut redis = UnixRedis::start().expect("redis-server starts");
    let (_one, publisher) = node(&redis, "one");
    let (_two, subscriber) = node(&redis, "two");
    let mut subscription = subscriber.subscribe("jobs.*").expect("subscribe");
    warm_up(&publisher, "jobs.warm", &mut [&mut subscription]);
    redis.kill();
    let deadline = Instant::now() + LIMIT;
    let refusal = loop {
        match publisher.publish("jobs.new", "during the outage") {
            Err(CallError::Rejected { status, message }) => break (status, message),
            Ok(()) => assert!(Instant::now() < deadline, "publications kept succeeding"),
            Err(other) => panic!("{other:?}"),
        }
    };
    assert_eq!(refusal.0 .0, 503, "{refusal:?}");
    assert!(refusal.1.contains("backplane"), "{refusal:?}");
    redis
        .restart()
        .expect("redis-server restarts on its socket");
    // The subscriber's node reconnects and says publications may be lost.
    let deadline = Instant::now() + LIMIT;
    loop {
        match subscription.next_timeout(LIMIT) {
            Some(Ok(Delivery::Lost(count))) => {
                assert_eq!(count, LOST_UNKNOWN);
                break;
            }
            Some(Ok(Delivery::Message { .. })) => {} // warm-ups still in flight
            other => panic!("no Lost notice after the restart: {other:?}"),
        }
        assert!(Instant::now() < deadline);
    }
    warm_up(&publisher, "jobs.again", &mut [&mut subscription]);
}

/// A node whose broker, event logs (of `capacity` entries) and sessions are
/// on `redis`, with the demo's pattern routes (`counter` keeps a count in
/// the caller's session and pushes it to the session's feed).
fn node_with_events(redis: &UnixRedis, name: &str, capacity: usize) -> (Server, Client) {
    let url = redis.url();
    let broker = RedisBroker::start(&url, name).expect("a broker");
    assert!(broker.wait_connected(LIMIT), "{name} links to Redis");
    let events = RedisEvents::start(&url, name, DEFAULT_PREFIX, capacity).expect("an event store");
    let sessions = RedisSessions::start(&url, name, DEFAULT_PREFIX, LIMIT * 6, capacity)
        .expect("a session store");
    let server = mux_server::demo::pattern_routes(server_builder())
        .broker(Arc::new(broker))
        .event_store(Arc::new(events))
        .session_store(Arc::new(sessions))
        .start()
        .expect("the node starts");
    let client = Client::connect(server.local_addr()).expect("a client of the node");
    (server, client)
}

#[test]
#[ignore = "needs redis-server"]
fn an_event_stream_resumes_on_another_node_and_outlives_the_node_that_appended() {
    let redis = UnixRedis::start().expect("redis-server starts");
    let (one, _) = node_with_events(&redis, "one", 8);
    let (_two, reader) = node_with_events(&redis, "two", 8);
    let ids: Vec<u64> = (1..=3)
        .map(|n| {
            one.handle()
                .append_event("orders", "order", format!("{n}"))
                .expect("append")
        })
        .collect();
    assert_eq!(ids, [1, 2, 3], "ids start at 1 and count up, as in memory");
    // The node that appended goes away: what it appended stays.
    one.abort();
    let mut stream = reader
        .events("orders", Resume::After(1))
        .expect("resume on two");
    let replayed: Vec<(u64, String)> = (0..2)
        .map(|_| match stream.next_timeout(LIMIT) {
            Some(Ok(event)) => (event.id, String::from_utf8_lossy(&event.data).into_owned()),
            other => panic!("no replayed event: {other:?}"),
        })
        .collect();
    assert_eq!(replayed, [(2, "2".to_owned()), (3, "3".to_owned())]);
    // Appended on a third node: live here.
    let (three, _) = node_with_events(&redis, "three", 8);
    let appender = three.handle();
    let id = appender
        .append_event("orders", "order", "4")
        .expect("append");
    match stream.next_timeout(LIMIT) {
        Some(Ok(event)) => assert_eq!((event.id, &event.data[..]), (id, &b"4"[..])),
        other => panic!("no live event: {other:?}"),
    }
    // Trimmed to 8: a resume from before the oldest kept is gone.
    for n in 5..=20 {
        appender
            .append_event("orders", "order", format!("{n}"))
            .expect("append");
    }
    let gone = reader.events("orders", Resume::After(2));
    assert!(
        matches!(&gone, Err(CallError::Rejected { status, .. }) if status.0 == 410),
        "{gone:?}"
    );
}

#[test]
#[ignore = "needs redis-server"]
fn a_session_opened_on_one_node_is_attached_on_another_after_it_stopped() {
    let redis = UnixRedis::start().expect("redis-server starts");
    let (one, first) = node_with_events(&redis, "one", 8);
    let session = first.session().expect("a session on one");
    for expected in 1..=3 {
        let reply = session.call("counter", "").expect("counter");
        assert_eq!(reply.body, expected.to_string(), "state kept across calls");
    }
    let token = session.token().to_owned();
    drop(first);
    one.abort(); // the node that opened it is gone
    let (_two, second) = node_with_events(&redis, "two", 8);
    let resumed = second.resume_session(&token);
    // Its state and its feed were on Redis: the count goes on, and the
    // events pushed on node one are replayed on node two.
    assert_eq!(resumed.call("counter", "").expect("counter").body, "4");
    let mut feed = resumed.events(1).expect("attach on two");
    let replayed: Vec<String> = (0..3)
        .map(|_| match feed.next_timeout(LIMIT) {
            Some(Ok(event)) => String::from_utf8_lossy(&event.data).into_owned(),
            other => panic!("no replayed session event: {other:?}"),
        })
        .collect();
    assert_eq!(replayed, ["2", "3", "4"]);
    // A new event pushed through a third node reaches the feed on two live.
    let (_three, third) = node_with_events(&redis, "three", 8);
    let elsewhere = third.resume_session(&token);
    assert_eq!(elsewhere.call("counter", "").expect("counter").body, "5");
    match feed.next_timeout(LIMIT) {
        Some(Ok(event)) => assert_eq!(&event.data[..], b"5"),
        other => panic!("no live session event: {other:?}"),
    }
    // An unknown token is gone on every node.
    let stranger = second.resume_session("no-such-token");
    let refused = stranger.call("counter", "");
    assert!(
        matches!(&refused, Err(CallError::Rejected { status, .. }) if status.0 == 410)
            || matches!(&refused, Ok(reply) if reply.status.0 == 410),
        "{refused:?}"
    );
}

#[test]
#[ignore = "needs redis-server"]
fn an_event_stream_survives_a_redis_restart_into_a_new_epoch() {
    let mut redis = UnixRedis::start().expect("redis-server starts");
    let (one, _) = node_with_events(&redis, "one", 8);
    let (_two, reader) = node_with_events(&redis, "two", 8);
    let appender = one.handle();
    appender
        .append_event("ticks", "tick", "before")
        .expect("append");
    let mut stream = reader
        .events("ticks", Resume::After(0))
        .expect("follow on two");
    match stream.next_timeout(LIMIT) {
        Some(Ok(event)) => assert_eq!((event.id, &event.data[..]), (1, &b"before"[..])),
        other => panic!("{other:?}"),
    }
    redis.kill(); // and with it the log (no persistence)
    assert!(
        appender.append_event("ticks", "tick", "lost").is_err(),
        "an append Redis did not take is not acknowledged"
    );
    redis
        .restart()
        .expect("redis-server restarts on its socket");
    // The log starts over in a new epoch, its ids from 1 again: the stream
    // on two ends, the client resumes, and gets the new epoch from its start.
    let deadline = Instant::now() + LIMIT;
    let mut appended = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "the stream never reached the new epoch"
        );
        if appender.append_event("ticks", "tick", "after").is_ok() {
            appended += 1;
        }
        match stream.next_timeout(Duration::from_millis(100)) {
            Some(Ok(event)) => {
                assert_eq!((event.id, &event.data[..]), (1, &b"after"[..]));
                break;
            }
            None => {}
            Some(Err(err)) => panic!("the stream failed: {err}"),
        }
    }
    assert!(appended >= 1);
}
