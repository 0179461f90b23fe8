//! A fixed load on a running mux server (one started by `mux-bench serve
//! mux`), for counting what the server spends on it: `tools/server-cost`
//! runs it against a server under callgrind for the instructions per call
//! and per delivery in `spec/COMPARISON.md`.
//!
//! `cargo run --release -p mux-tests --example server_load -- ADDR calls N`:
//! N 64-byte calls to `echo` through a `DirectClient`, one per millisecond,
//! so that each is a pass of the server's loop of its own, as at the
//! benchmark's one call per millisecond.
//!
//! `cargo run --release -p mux-tests --example server_load -- ADDR fanout N [SUBSCRIBERS] [RATE]`:
//! N 64-byte publications at RATE per second (default 50) to SUBSCRIBERS
//! `DirectSubscription`s (default 100), each read on a thread of its own.
//! With `latency` in place of `fanout`, the same, and the delivery latency's
//! p50 / p99 / p99.9 (each publication carries the time it was made; the
//! readers' clock reads are then part of what the load process spends).
//! With `client-fanout` or `client-latency`, the subscriptions are read
//! through one `Client` (a connection each, one loop thread) instead.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mux_client::{CallError, Client, Delivery, DirectClient};

const TOPIC: &str = "load";

fn main() {
    let mut args = std::env::args().skip(1);
    let usage =
        "usage: server_load ADDR calls N | ADDR [client-]fanout|latency N [SUBSCRIBERS] [RATE]";
    let addr: SocketAddr = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let mode = args.next().expect(usage);
    let count: u64 = args.next().and_then(|n| n.parse().ok()).expect(usage);
    match mode.as_str() {
        "calls" => calls(addr, count),
        "fanout" | "latency" | "client-fanout" | "client-latency" => {
            let subscribers = args.next().map_or(100, |n| n.parse().expect(usage));
            let rate = args.next().map_or(50, |n| n.parse().expect(usage));
            let timed = mode.ends_with("latency");
            if mode.starts_with("client") {
                let client = Client::builder(addr)
                    .connections(subscribers)
                    .connect()
                    .expect("connect");
                let subscriptions = (0..subscribers)
                    .map(|_| client.subscribe(TOPIC).expect("subscribe"))
                    .map(|mut s| move || s.next_timeout(Duration::from_secs(60)));
                fanout(addr, count, subscriptions.collect(), rate, timed);
            } else {
                let subscriptions = (0..subscribers).map(|_| {
                    let mut s = DirectClient::connect(addr)
                        .expect("connect")
                        .subscribe(TOPIC)
                        .expect("subscribe");
                    move || s.next_timeout(Duration::from_secs(60))
                });
                fanout(addr, count, subscriptions.collect(), rate, timed);
            }
        }
        _ => panic!("{usage}"),
    }
}

fn calls(addr: SocketAddr, count: u64) {
    let mut client = DirectClient::connect(addr).expect("connect");
    let body = vec![1u8; 64];
    paced(count, 1000, || {
        let reply = client.call("echo", body.clone()).expect("call");
        assert_eq!(reply.body.len(), 64, "the echo");
    });
    println!("{count} calls");
}

/// What a subscriber's reader calls for its next delivery.
type NextDelivery = Option<Result<Delivery, CallError>>;

fn fanout<S>(addr: SocketAddr, count: u64, subscriptions: Vec<S>, rate: u64, timed: bool)
where
    S: FnMut() -> NextDelivery + Send + 'static,
{
    let base = Instant::now();
    let subscribers = subscriptions.len();
    let readers: Vec<_> = subscriptions
        .into_iter()
        .map(|mut next| {
            std::thread::spawn(move || {
                let mut latencies = Vec::with_capacity(if timed { count as usize } else { 0 });
                for _ in 0..count {
                    let delivery = next();
                    let Some(Ok(Delivery::Message { payload, .. })) = delivery else {
                        panic!("a delivery: {delivery:?}");
                    };
                    if timed {
                        let sent = u64::from_le_bytes(payload[..8].try_into().expect("a stamp"));
                        latencies.push(base.elapsed().as_nanos() as u64 - sent);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut publisher = DirectClient::connect(addr)
        .expect("connect")
        .publisher()
        .expect("publisher");
    paced(count, rate, || {
        let mut payload = vec![7u8; 64];
        if timed {
            payload[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
        }
        publisher.publish(TOPIC, payload).expect("publish");
    });
    let mut latencies = Vec::new();
    for reader in readers {
        latencies.extend(
            reader
                .join()
                .expect("every subscriber receives every publication"),
        );
    }
    let _ = publisher.finish();
    let deliveries = count * subscribers as u64;
    if !timed {
        println!("{deliveries} deliveries");
        return;
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1e6;
    println!(
        "{deliveries} deliveries, latency p50 / p99 / p99.9 {:.2} / {:.2} / {:.2} ms",
        at(0.5),
        at(0.99),
        at(0.999)
    );
}

/// Runs `work` `count` times, `rate` times a second.
fn paced(count: u64, rate: u64, mut work: impl FnMut()) {
    let start = Instant::now();
    for n in 1..=count {
        work();
        let next = start + Duration::from_micros(n * 1_000_000 / rate);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}
