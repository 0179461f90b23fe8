//! A fixed load on a running mux server (one started by `mux-bench serve
//! mux`), for counting what the server spends on it: `tools/server-cost`
//! runs it against a server under callgrind for the instructions per call
//! and per delivery in `spec/PERFORMANCE-LOG.md`.
//!
//! `cargo run --release -p mux-tests --example server_load -- ADDR calls N`:
//! N 64-byte calls to `echo` through a `DirectClient`, one per millisecond,
//! so that each is a pass of the server's loop of its own, as at the
//! benchmark's one call per millisecond.
//!
//! `cargo run --release -p mux-tests --example server_load -- ADDR fanout N [SUBSCRIBERS] [RATE]`:
//! N 64-byte publications at RATE per second (default 50) to SUBSCRIBERS
//! `DirectSubscription`s (default 100), each read on a thread of its own
//! with `next_with` (in place); `owned-fanout` reads them with
//! `next_timeout` instead (each delivery handed out as owned `Bytes`).
//! With `latency` (or `owned-latency`) in place of `fanout`, the same, and the delivery latency's
//! p50 / p99 / p99.9 (each publication carries the time it was made; the
//! readers' clock reads are then part of what the load process spends).
//! With `client-fanout` or `client-latency`, the subscriptions are read
//! through one `Client` (a connection each, one loop thread) instead, each
//! delivery lent (`Subscription::next_with`); `owned-client-…` reads them
//! with `next_timeout`; with `INHERITED=1` in the environment, the
//! client's loop thread keeps the scheduling class it was started with
//! (`ThreadScheduling::Inherited`) instead of `SCHED_BATCH`.
//!
//! `cargo run --release -p mux-tests --example server_load -- ADDR redis-latency N [SUBSCRIBERS] [RATE]`:
//! the same publications and readers through a Redis server at ADDR
//! (`redis-server --save "" --appendonly no`, as the benchmark runs it),
//! each subscriber reading its own socket, the publisher's answers read by
//! a thread of their own: mux's latency beside Redis's, measured alike.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mux_client::{
    CallError, Client, Delivery, DeliveryRef, DirectClient, DirectSubscription, Subscription,
};

const TOPIC: &str = "load";
const PAYLOAD: usize = 64;

/// A subscriber's reader: the stamp its next delivery carries (the time
/// it was published, in nanoseconds after the run's start).
type Reader = Box<dyn FnMut() -> u64 + Send>;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: server_load ADDR calls N | ADDR [owned-][client-]fanout|latency N [SUBSCRIBERS] [RATE] | ADDR redis-fanout|redis-latency N [SUBSCRIBERS] [RATE]";
    let addr: SocketAddr = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let mode = args.next().expect(usage);
    let count: u64 = args.next().and_then(|n| n.parse().ok()).expect(usage);
    if mode == "calls" {
        return calls(addr, count);
    }
    let subscribers = args.next().map_or(100, |n| n.parse().expect(usage));
    let rate = args.next().map_or(50, |n| n.parse().expect(usage));
    let timed = mode.ends_with("latency");
    let run = Run {
        count,
        rate,
        timed,
        base: Instant::now(),
    };
    match mode.as_str() {
        "fanout" | "latency" | "owned-fanout" | "owned-latency" => {
            let owned = mode.starts_with("owned-");
            let readers = (0..subscribers)
                .map(|_| {
                    let subscription = DirectClient::connect(addr)
                        .expect("connect")
                        .subscribe(TOPIC)
                        .expect("subscribe");
                    mux_reader(subscription, owned)
                })
                .collect();
            run.through_mux(addr, readers);
        }
        "client-fanout" | "client-latency" | "owned-client-fanout" | "owned-client-latency" => {
            let owned = mode.starts_with("owned-");
            let scheduling = match std::env::var_os("INHERITED") {
                Some(_) => mux_client::ThreadScheduling::Inherited,
                None => mux_client::ThreadScheduling::default(),
            };
            let client = Client::builder(addr)
                .connections(subscribers)
                .thread_scheduling(scheduling)
                .connect()
                .expect("connect");
            let readers = (0..subscribers)
                .map(|_| mux_reader(client.subscribe(TOPIC).expect("subscribe"), owned))
                .collect();
            run.through_mux(addr, readers);
        }
        "redis-fanout" | "redis-latency" => {
            let readers = (0..subscribers).map(|_| redis_reader(addr)).collect();
            let mut publisher = TcpStream::connect(addr).expect("connect");
            publisher.set_nodelay(true).expect("nodelay");
            // Redis answers every PUBLISH: read on a thread of their own, so
            // that the publisher never waits for them.
            let mut answers = BufReader::new(publisher.try_clone().expect("clone"));
            let answered = std::thread::spawn(move || {
                let mut line = Vec::new();
                for _ in 0..count {
                    line.clear();
                    if answers.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                        break;
                    }
                }
            });
            let head = format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{TOPIC}\r\n${PAYLOAD}\r\n",
                TOPIC.len()
            );
            let mut command = Vec::with_capacity(head.len() + PAYLOAD + 2);
            run.fan_out(readers, |payload| {
                command.clear();
                command.extend_from_slice(head.as_bytes());
                command.extend_from_slice(payload);
                command.extend_from_slice(b"\r\n");
                publisher.write_all(&command).expect("publish");
            });
            let _ = answered.join();
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

/// How long a reader waits for a delivery before the run fails.
const DELIVERY_WAIT: Duration = Duration::from_secs(60);

/// A mux subscription as the probe reads it: each delivery handed out
/// (`next_timeout`) or lent (`next_with`, its stamp read in place).
trait Subscribed: Send + 'static {
    fn next_owned(&mut self) -> Option<Result<Delivery, CallError>>;
    fn next_lent(&mut self) -> Option<Result<u64, CallError>>;
}

impl Subscribed for DirectSubscription {
    fn next_owned(&mut self) -> Option<Result<Delivery, CallError>> {
        self.next_timeout(DELIVERY_WAIT)
    }
    fn next_lent(&mut self) -> Option<Result<u64, CallError>> {
        self.next_with(DELIVERY_WAIT, stamp_of)
    }
}

impl Subscribed for Subscription {
    fn next_owned(&mut self) -> Option<Result<Delivery, CallError>> {
        self.next_timeout(DELIVERY_WAIT)
    }
    fn next_lent(&mut self) -> Option<Result<u64, CallError>> {
        self.next_with(DELIVERY_WAIT, stamp_of)
    }
}

/// A reader of `subscription`, its deliveries handed out if `owned`, else lent.
fn mux_reader(mut subscription: impl Subscribed, owned: bool) -> Reader {
    Box::new(move || {
        if !owned {
            return match subscription.next_lent() {
                Some(Ok(stamp)) => stamp,
                other => panic!("a delivery: {other:?}"),
            };
        }
        let delivery = subscription.next_owned();
        let Some(Ok(Delivery::Message { payload, .. })) = delivery else {
            panic!("a delivery: {delivery:?}");
        };
        stamp(&payload)
    })
}

/// A Redis subscriber on a connection of its own, parsing each
/// `message` push without allocating.
fn redis_reader(addr: SocketAddr) -> Reader {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let subscribe = format!("*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{TOPIC}\r\n", TOPIC.len());
    stream.write_all(subscribe.as_bytes()).expect("subscribe");
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let mut line = Vec::with_capacity(64);
    // The confirmation: *3, $9, subscribe, $4, load, :1.
    for _ in 0..6 {
        next_line(&mut reader, &mut line);
    }
    let mut payload = [0u8; PAYLOAD + 2];
    Box::new(move || {
        // *3, $7, message, $4, load, $64, then the payload and its CRLF.
        for _ in 0..6 {
            next_line(&mut reader, &mut line);
        }
        reader.read_exact(&mut payload).expect("a payload");
        stamp(&payload)
    })
}

/// Reads one line of a Redis subscriber's socket into `line`.
fn next_line(reader: &mut BufReader<TcpStream>, line: &mut Vec<u8>) {
    line.clear();
    let read = reader.read_until(b'\n', line).expect("a line");
    assert!(read > 0, "Redis closed the subscription");
}

/// The publication time at the start of a payload.
/// A lent delivery's stamp.
fn stamp_of(delivery: DeliveryRef<'_>) -> u64 {
    match delivery {
        DeliveryRef::Message { payload, .. } => stamp(payload),
        DeliveryRef::Lost(count) => panic!("{count} publications lost"),
    }
}

fn stamp(payload: &[u8]) -> u64 {
    let digits = payload.get(..8).and_then(|s| s.try_into().ok());
    u64::from_le_bytes(digits.expect("a stamp"))
}

/// One fan-out run: `count` publications at `rate` per second.
struct Run {
    count: u64,
    rate: u64,
    /// Whether readers note each delivery's latency.
    timed: bool,
    base: Instant,
}

impl Run {
    /// [`Run::fan_out`] with a mux publisher of its own.
    fn through_mux(&self, addr: SocketAddr, readers: Vec<Reader>) {
        let mut publisher = DirectClient::connect(addr)
            .expect("connect")
            .publisher()
            .expect("publisher");
        self.fan_out(readers, |payload| {
            publisher.publish(TOPIC, payload.to_vec()).expect("publish");
        });
        let _ = publisher.finish();
    }

    /// Starts a thread per reader, publishes through `publish`, and prints
    /// the deliveries (and their latency, when timed).
    fn fan_out(&self, readers: Vec<Reader>, mut publish: impl FnMut(&[u8; PAYLOAD])) {
        let subscribers = readers.len();
        let (count, timed, base) = (self.count, self.timed, self.base);
        let readers: Vec<_> = readers
            .into_iter()
            .map(|mut next| {
                std::thread::spawn(move || {
                    let mut latencies = Vec::with_capacity(if timed { count as usize } else { 0 });
                    for _ in 0..count {
                        let sent = next();
                        if timed {
                            latencies.push(base.elapsed().as_nanos() as u64 - sent);
                        }
                    }
                    latencies
                })
            })
            .collect();
        paced(count, self.rate, || {
            let mut payload = [7u8; PAYLOAD];
            if timed {
                payload[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
            }
            publish(&payload);
        });
        let mut latencies = Vec::new();
        for reader in readers {
            latencies.extend(
                reader
                    .join()
                    .expect("every subscriber receives every publication"),
            );
        }
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
