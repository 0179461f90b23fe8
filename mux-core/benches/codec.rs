//! Codec micro-benchmark: decode and encode throughput for 16 KiB DATA frames
//! (the bulk path) and 64-byte DATA frames (the small-message path).
//!
//! The project's bar: decoding DATA frames at 1 GB/s or more. Run with
//! `cargo bench -p mux-core --bench codec`.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mux_core::frame::{Data, Frame, MAX_LENGTH_FIELD};
use mux_core::StreamId;

/// Frames per batch: enough that per-iteration overhead vanishes, small
/// enough to stay in cache like a socket read buffer would.
const FRAMES_PER_BATCH: usize = 64;

fn data_frame(payload_len: usize) -> Frame {
    let stream = StreamId::new(1).unwrap_or_default();
    Frame::Data(Data::new(stream, Bytes::from(vec![0xab; payload_len])).end_message())
}

fn wire(frame: &Frame) -> BytesMut {
    let mut buf = BytesMut::new();
    for _ in 0..FRAMES_PER_BATCH {
        frame.encode(&mut buf).expect("benchmark frame encodes");
    }
    buf
}

fn bench_size(c: &mut Criterion, name: &str, payload_len: usize) {
    let frame = data_frame(payload_len);
    let encoded = wire(&frame);
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(encoded.len() as u64));

    group.bench_function("decode", |b| {
        b.iter_batched_ref(
            || encoded.clone(),
            |buf| {
                while let Ok(Some(frame)) = Frame::decode(buf, MAX_LENGTH_FIELD) {
                    black_box(frame);
                }
            },
            BatchSize::SmallInput,
        )
    });

    group.bench_function("encode_copy", |b| {
        let mut out = BytesMut::with_capacity(encoded.len());
        b.iter(|| {
            out.clear();
            for _ in 0..FRAMES_PER_BATCH {
                let _ = frame.encode(&mut out);
            }
            black_box(&out);
        })
    });

    group.bench_function("encode_split", |b| {
        let mut head = BytesMut::with_capacity(FRAMES_PER_BATCH * (payload_len + 16));
        let mut bodies = Vec::with_capacity(FRAMES_PER_BATCH);
        b.iter(|| {
            head.clear();
            bodies.clear();
            for _ in 0..FRAMES_PER_BATCH {
                if let Ok(Some(body)) = frame.encode_split(&mut head) {
                    bodies.push(body);
                }
            }
            black_box((&head, &bodies));
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    bench_size(c, "data_16k", 16 * 1024);
    bench_size(c, "data_64b", 64);
}

criterion_group!(benches, codec);
criterion_main!(benches);
