//! Receive-path micro-benchmark: a connected client `Connection` takes in a
//! batch of small messages on one stream (as a subscriber does), the
//! application reads them, and the credit goes back: `handle_read`, `read`
//! and `poll_transmit`, the state machine's whole share of a delivery.
//! Each message is read two ways: handed out (`read`, a `Chunk` sharing the
//! stream's buffer, dropped at once) and lent (`read_with`, a slice of it).
//! The `publications_64b` group takes the same 64 publications of 64 bytes
//! as a subscriber reads them, each parsed in place: as 64 Publication
//! feed messages, or as one Publications message (`spec/patterns.md` §3.3).
//!
//! Run with `cargo bench -p mux-core --bench receive`.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mux_core::patterns::{FeedMessage, FeedMessageRef, PublicationsBuilder};
use mux_core::{Config, Connection, Event, StreamId};

mod support;

/// Messages per batch: about what one read of a busy subscriber's socket
/// holds on loopback.
const MESSAGES_PER_BATCH: usize = 64;

/// A client and a server with one stream the client opened, and the bytes
/// of `messages` the server sends on it.
fn subscribed(messages: &[Bytes]) -> (Connection, StreamId, BytesMut) {
    let now = Instant::now();
    let (client, mut server, id) = support::connected(Config::default(), now);
    for message in messages {
        let sent = server
            .send(id, message.clone(), true, false)
            .expect("the stream is open");
        assert_eq!(sent, message.len(), "the batch fits the initial window");
    }
    let mut batch = BytesMut::new();
    while server.poll_transmit(now, &mut batch) {}
    (client, id, batch)
}

fn bench_receive(c: &mut Criterion, name: &str, size: usize) {
    let message = Bytes::from(vec![0xab; size]);
    let (mut client, id, batch) = subscribed(&vec![message; MESSAGES_PER_BATCH]);
    let now = Instant::now();
    let mut credit = BytesMut::new();
    // One input buffer for the connection's life, as the runtime keeps:
    // each batch is appended to it, as a short read is.
    let mut input = BytesMut::new();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(MESSAGES_PER_BATCH as u64));
    for lend in [false, true] {
        let name = if lend {
            "receive_lend_credit"
        } else {
            "receive_read_credit"
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                input.extend_from_slice(&batch);
                client
                    .handle_read(now, &mut input)
                    .expect("the batch is well formed");
                while let Some(event) = client.poll_event() {
                    black_box(matches!(event, Event::Readable { .. }));
                }
                if lend {
                    while let Ok(Some(len)) =
                        client.read_with(id, usize::MAX, |chunk| black_box(chunk.bytes).len())
                    {
                        black_box(len);
                    }
                } else {
                    while let Ok(Some(chunk)) = client.read(id, usize::MAX) {
                        black_box(chunk);
                    }
                }
                credit.clear();
                while client.poll_transmit(now, &mut credit) {}
            })
        });
    }
    group.finish();
}

/// Takes in `batch`, reads every message on `id` lent and parses it as a
/// feed message in place, returns the credit: the deliveries read.
fn take_publications(
    client: &mut Connection,
    id: StreamId,
    input: &mut BytesMut,
    batch: &[u8],
    credit: &mut BytesMut,
) -> usize {
    let now = Instant::now();
    input.extend_from_slice(batch);
    client
        .handle_read(now, input)
        .expect("the batch is well formed");
    while client.poll_event().is_some() {}
    let mut deliveries = 0;
    while let Ok(Some(read)) =
        client.read_with(id, usize::MAX, |chunk| {
            match FeedMessageRef::parse(chunk.bytes) {
                Ok(FeedMessageRef::Publication { payload, .. }) => {
                    black_box(payload);
                    1
                }
                Ok(FeedMessageRef::Publications { payloads, .. }) => {
                    payloads.map(black_box).count()
                }
                _ => 0,
            }
        })
    {
        deliveries += read;
    }
    credit.clear();
    while client.poll_transmit(now, credit) {}
    deliveries
}

fn bench_publications(c: &mut Criterion) {
    let topic = "bench.topic";
    let payload = [0xab; 64];
    let single = FeedMessage::Publication {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(&payload),
    }
    .encode();
    let mut builder = PublicationsBuilder::new(topic, MESSAGES_PER_BATCH * 68);
    for _ in 0..MESSAGES_PER_BATCH {
        assert!(builder.push(&payload));
    }
    let each = vec![single; MESSAGES_PER_BATCH];
    let together = vec![builder.finish()];
    let mut group = c.benchmark_group("publications_64b");
    group.throughput(Throughput::Elements(MESSAGES_PER_BATCH as u64));
    for (name, messages) in [
        ("one_message_each", each),
        ("one_publications_message", together),
    ] {
        let (mut client, id, batch) = subscribed(&messages);
        let (mut input, mut credit) = (BytesMut::new(), BytesMut::new());
        let read = take_publications(&mut client, id, &mut input, &batch, &mut credit);
        assert_eq!(read, MESSAGES_PER_BATCH, "{name}: every publication read");
        group.bench_function(name, |b| {
            b.iter(|| take_publications(&mut client, id, &mut input, &batch, &mut credit))
        });
    }
    group.finish();
}

fn receive(c: &mut Criterion) {
    bench_receive(c, "messages_64b", 64);
    bench_receive(c, "messages_512b", 512);
    bench_publications(c);
}

criterion_group!(benches, receive);
criterion_main!(benches);
