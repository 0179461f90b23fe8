//! Several servers as one through Redis (`spec/patterns.md` §3.6): each
//! server is a node with its own `RedisBroker`; clients on different nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mux_client::{CallError, Client, Delivery, Subscription};
use mux_core::patterns::LOST_UNKNOWN;
use mux_server::backplane::RedisBroker;
use mux_server::Server;
use mux_testkit::programs::Program;
use mux_testkit::server_builder;

const LIMIT: Duration = Duration::from_secs(10);

/// A node on the Redis at `redis`.
fn node(redis: &Program, name: &str) -> (Server, Client) {
    let broker = RedisBroker::start(&format!("redis://{}", redis.addr), name).expect("a broker");
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
    let redis = Program::redis_server().expect("redis-server starts");
    let (_one, publisher) = node(&redis, "one");
    let (_two, near) = node(&redis, "two");
    let (_three, far) = node(&redis, "three");
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
    let redis = Program::redis_server().expect("redis-server starts");
    let port = redis.addr.port();
    let (_one, publisher) = node(&redis, "one");
    let (_two, subscriber) = node(&redis, "two");
    let mut subscription = subscriber.subscribe("jobs.*").expect("subscribe");
    warm_up(&publisher, "jobs.warm", &mut [&mut subscription]);
    drop(redis); // killed
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
    let _redis = Program::redis_server_on(port).expect("redis-server restarts on its port");
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
