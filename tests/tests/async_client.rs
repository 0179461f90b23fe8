//! The client's async forms inside a tokio current-thread runtime: one
//! thread runs every task, so a ticker task stops ticking if any operation
//! blocks it. Connect, calls, publish, and a subscription read as a
//! `Stream`.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use futures_io::AsyncWrite;
use mux_client::{CallRequest, Client, Delivery};
use mux_testkit::any_local_address;

/// The next item of a stream, without a helper crate.
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

#[test]
fn async_operations_leave_a_current_thread_runtime_running() {
    let (server, _clock) =
        mux_server::demo::start(any_local_address(), Some(1), Default::default())
            .expect("demo server");
    let addr = server.local_addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });

        let client = Client::connect_async(addr).await.expect("connect");

        // Five calls to a handler that sleeps 200 ms, awaited together: the
        // ticker must tick meanwhile (a blocking wait would stop it).
        let before = ticks.load(Ordering::Relaxed);
        let calls: Vec<_> = (0..5)
            .map(|_| tokio::spawn(client.call_async("sleep", "200")))
            .collect();
        for call in calls {
            let reply = call.await.expect("task").expect("reply");
            assert!(reply.status.is_success());
        }
        let ticked = ticks.load(Ordering::Relaxed) - before;
        assert!(
            ticked > 0,
            "the runtime's thread was blocked while calls waited"
        );

        // A subscription consumed as a Stream, fed by async publications.
        let mut subscription = client.subscribe_async("chat.>").await.expect("subscribe");
        let before = ticks.load(Ordering::Relaxed);
        let publisher = {
            let publish = client.publish_async("chat.lobby", "hello");
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                publish.await
            })
        };
        let delivery = next(&mut subscription)
            .await
            .expect("a delivery")
            .expect("no error");
        assert_eq!(
            delivery,
            Delivery::Message {
                topic: "chat.lobby".into(),
                payload: "hello".into()
            }
        );
        publisher.await.expect("task").expect("published");

        // An upload written through `AsyncWrite`, 4 MiB in 64 KiB writes:
        // flow control makes writes wait as futures, never on the thread.
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut upload =
            client.open_upload(CallRequest::new("upload", "").length(data.len() as u64));
        for piece in data.chunks(64 << 10) {
            let mut written = 0;
            while written < piece.len() {
                written += poll_fn(|cx| Pin::new(&mut upload).poll_write(cx, &piece[written..]))
                    .await
                    .expect("async write");
            }
        }
        let reply = upload.finish_async().await.expect("the upload's reply");
        assert_eq!(
            String::from_utf8_lossy(&reply.body),
            format!("{} {:016x}", data.len(), mux_server::demo::fnv1a(&data))
        );
        assert!(
            ticks.load(Ordering::Relaxed) > before,
            "the runtime's thread was blocked while the subscription waited"
        );
        ticker.abort();
    });
}
