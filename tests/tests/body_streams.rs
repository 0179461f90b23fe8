//! Response bodies written as they are made (`Response::channel`,
//! `Response::stream`): from a sync handler's thread, from an async
//! handler's task, held back by flow control, and reset when the writer
//! gives up halfway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mux_client::{CallError, CallRequest, Client};
use mux_core::ErrorCode;
use mux_server::Response;
use mux_testkit::server_builder;

const PIECE: usize = 16 * 1024;

#[test]
fn a_writer_thread_streams_a_body_under_flow_control() {
    const MESSAGES: u64 = 8_000; // 125 MiB
    let written = Arc::new(AtomicU64::new(0));
    let read = Arc::new(AtomicU64::new(0));
    let most_ahead = Arc::new(AtomicU64::new(0));
    let (w, r, m) = (
        Arc::clone(&written),
        Arc::clone(&read),
        Arc::clone(&most_ahead),
    );
    let server = server_builder()
        .route("numbers", move |_| {
            let (response, writer) = Response::channel(16);
            let (written, read, most_ahead) = (Arc::clone(&w), Arc::clone(&r), Arc::clone(&m));
            std::thread::spawn(move || {
                for n in 0..MESSAGES {
                    let mut message = vec![0u8; PIECE];
                    message[..8].copy_from_slice(&n.to_be_bytes());
                    if writer.write(message).is_err() {
                        return;
                    }
                    let ahead =
                        written.fetch_add(1, Ordering::SeqCst) + 1 - read.load(Ordering::SeqCst);
                    most_ahead.fetch_max(ahead, Ordering::SeqCst);
                }
                writer.finish();
            });
            Ok(response)
        })
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("connect");
    let mut stream = client.open_stream(CallRequest::new("numbers", ""));
    stream.head().expect("head");
    let mut expected = 0u64;
    while let Some(message) = stream.next_message() {
        let message = message.expect("a message");
        assert_eq!(message.len(), PIECE);
        assert_eq!(message[..8], expected.to_be_bytes(), "in order");
        expected += 1;
        read.fetch_add(1, Ordering::SeqCst);
    }
    assert_eq!(expected, MESSAGES);
    // Without backpressure the writer would run the whole body ahead of
    // the reader; with it, what waits is bounded by the channel, the
    // stream's send buffer, its window and the client's inbox.
    let ahead = most_ahead.load(Ordering::SeqCst) * PIECE as u64;
    assert!(
        ahead < 48 << 20,
        "the writer ran {ahead} bytes ahead of the reader"
    );
}

#[test]
fn an_async_handler_streams_from_its_task_and_a_stream_works_as_a_body() {
    let tokio = crate::async_handlers::another_executor();
    let spawner = tokio.handle().clone();
    let server = server_builder()
        .route_async("ticks", move |_| {
            let spawner = spawner.clone();
            async move {
                let (response, writer) = Response::channel(4);
                spawner.spawn(async move {
                    for n in 0..100u32 {
                        tokio::time::sleep(std::time::Duration::from_micros(100)).await;
                        if writer.write_async(n.to_string()).await.is_err() {
                            return;
                        }
                    }
                    writer.finish();
                });
                Ok(response)
            }
        })
        .route("letters", |_| {
            let letters = [&b"a"[..], b"b", b"c"].map(bytes::Bytes::from_static);
            Ok(Response::stream(StreamOf(letters.into_iter())))
        })
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("connect");
    let mut ticks = client.open_stream(CallRequest::new("ticks", ""));
    let mut got = Vec::new();
    while let Some(message) = ticks.next_message() {
        got.push(String::from_utf8(message.expect("tick").to_vec()).expect("text"));
    }
    assert_eq!(got, (0..100).map(|n| n.to_string()).collect::<Vec<_>>());

    let reply = client.call("letters", "").expect("letters");
    assert_eq!(
        reply.body, "abc",
        "a whole-body call gets the messages joined"
    );
}

#[test]
fn a_writer_dropped_halfway_resets_the_stream() {
    let server = server_builder()
        .route("broken", |_| {
            let (response, writer) = Response::channel(4);
            std::thread::spawn(move || {
                let _ = writer.write("the first half");
                // Dropped without finish: the body is not whole.
            });
            Ok(response)
        })
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("connect");
    let outcome = client.call("broken", "");
    assert!(
        matches!(outcome, Err(CallError::Reset(code)) if code == ErrorCode::INTERNAL_ERROR),
        "{outcome:?}"
    );
}

/// An iterator as a `Stream` (always ready).
struct StreamOf<I>(I);

impl<I: Iterator<Item = bytes::Bytes> + Unpin> futures_core::Stream for StreamOf<I> {
    type Item = bytes::Bytes;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<bytes::Bytes>> {
        std::task::Poll::Ready(self.0.next())
    }
}
