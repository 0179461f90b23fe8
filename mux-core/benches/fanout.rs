//! Fan-out send-path micro-benchmark: one server-side `Connection` per
//! subscriber, each with one stream; a batch of small messages is queued on
//! every stream (subscriber by subscriber, as mux-server's loop hands out a
//! run of publications, or publication by publication) and then every
//! connection is flushed, as the loop does at the end of a pass. Compares
//! the two orders, and handing each stream a handle of the shared message
//! (`send`) with lending it (`send_copy`).
//!
//! Run with `cargo bench -p mux-core --bench fanout`.

use std::time::Instant;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mux_core::{Config, Connection, Outgoing, StreamId};

mod support;

/// Subscribers, one connection each.
const SUBSCRIBERS: usize = 100;

/// Messages per pass: about what each subscriber's write carries in the
/// benchmark's fan-out at a fixed rate.
const MESSAGES_PER_PASS: usize = 44;

/// A 64-byte publication as a feed message (kind, topic length, topic).
const MESSAGE_LEN: usize = 67;

/// A server connection with a stream its client opened, the client gone
/// (its windows are large enough for the whole benchmark run: credit is
/// not what is measured).
fn subscriber(now: Instant) -> (Connection, StreamId) {
    let config = Config {
        initial_stream_window: 1 << 30,
        max_stream_window: 1 << 30,
        initial_connection_window: 1 << 30,
        max_connection_window: 1 << 30,
        ..Config::default()
    };
    let (_client, server, id) = support::connected(config, now);
    (server, id)
}

fn bench_fanout(c: &mut Criterion) {
    let now = Instant::now();
    let mut subscribers: Vec<(Connection, StreamId, Outgoing)> = (0..SUBSCRIBERS)
        .map(|_| {
            let (conn, id) = subscriber(now);
            (conn, id, Outgoing::new())
        })
        .collect();
    let messages: Vec<Bytes> = (0..MESSAGES_PER_PASS)
        .map(|n| Bytes::from(vec![n as u8; MESSAGE_LEN]))
        .collect();
    let mut group = c.benchmark_group("fanout_64b");
    group.throughput(Throughput::Elements(
        (SUBSCRIBERS * MESSAGES_PER_PASS) as u64,
    ));
    for (by_subscriber, lend) in [(false, false), (true, false), (true, true)] {
        let name = match (by_subscriber, lend) {
            (false, _) => "send_by_publication",
            (true, false) => "send_by_subscriber",
            (true, true) => "send_copy_by_subscriber",
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                // Each pass's messages are new, as each publication's are.
                let pass: Vec<Bytes> = messages.iter().map(|m| Bytes::copy_from_slice(m)).collect();
                let deliver = |conn: &mut Connection, id: StreamId, message: &Bytes| {
                    let sent = if lend {
                        conn.send_copy(id, message, true, false)
                    } else {
                        conn.send(id, message.clone(), true, false)
                    };
                    black_box(sent.expect("the stream is open"));
                };
                if by_subscriber {
                    for (conn, id, _) in subscribers.iter_mut() {
                        for message in &pass {
                            deliver(conn, *id, message);
                        }
                    }
                } else {
                    for message in &pass {
                        for (conn, id, _) in subscribers.iter_mut() {
                            deliver(conn, *id, message);
                        }
                    }
                }
                for (conn, _, out) in subscribers.iter_mut() {
                    while conn.poll_transmit(now, out) {}
                    assert_eq!(conn.queued_send_bytes(), 0, "the window ran out");
                    let written = out.len();
                    out.advance(written);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_fanout);
criterion_main!(benches);
