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
use mux_client::{CallRequest, Client, Delivery, Resume};
use mux_testkit::any_local_address;

/// A tokio runtime whose one thread runs every task: any operation that
/// blocks it stops every other task.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

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
    let runtime = current_thread();
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

        // A ping, and a publishing stream written as futures.
        client.ping_async().await.expect("ping");
        let mut publisher = client.publisher();
        for n in 0..100 {
            publisher
                .publish_async("chat.lobby", n.to_string())
                .await
                .expect("publish");
        }
        let summary = publisher.finish_async().await.expect("publisher");
        assert!(summary.starts_with("100 published"), "{summary}");

        // An event stream read as a Stream.
        let mut news = client
            .events_async("news", Resume::Latest)
            .await
            .expect("event stream");
        client
            .call_async("announce", "extra")
            .await
            .expect("announce");
        let event = next(&mut news).await.expect("an event").expect("no error");
        assert_eq!(
            (event.kind.as_str(), &event.data[..]),
            ("news", &b"extra"[..])
        );

        // A session: a call in it, and its feed as a Stream.
        let session = client.session_async().await.expect("session");
        let count = session.call_async("counter", "").await.expect("counter");
        assert_eq!(count.body, "1");
        let mut feed = session.events_async(0).await.expect("session feed");
        let event = next(&mut feed).await.expect("an event").expect("no error");
        assert_eq!(&event.data[..], b"1");

        // A long poll held by the server while the ticker goes on (this
        // test's own server: the log is empty).
        let mut poller = client.long_poller("jobs", 0, Duration::from_secs(5));
        let before = ticks.load(Ordering::Relaxed);
        let enqueue = client.call_async("enqueue", "job-async");
        let waiting = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            enqueue.await
        });
        let events = poller.poll_async().await.expect("long poll");
        assert!(
            events.iter().any(|e| &e.data[..] == b"job-async"),
            "{events:?}"
        );
        waiting.await.expect("task").expect("enqueued");
        assert!(
            ticks.load(Ordering::Relaxed) > before,
            "the runtime's thread was blocked during the long poll"
        );
        ticker.abort();
    });
}

/// A subscription read as a `Stream` resubscribes by itself when its server
/// restarts (saying it may have lost messages), as a future.
#[test]
fn a_subscription_stream_resubscribes_after_a_server_restart() {
    let (server, clock) = mux_server::demo::start(any_local_address(), Some(1), Default::default())
        .expect("demo server");
    let addr = server.local_addr();
    let runtime = current_thread();
    runtime.block_on(async move {
        let client = Client::builder(addr)
            .backoff(Duration::from_millis(10), Duration::from_millis(100))
            .connect_async()
            .await
            .expect("connect");
        let mut sub = client.subscribe_async("restart.>").await.expect("subscribe");
        drop(clock);
        server.abort();
        let (again, _clock) = mux_server::demo::start(addr, Some(1), Default::default())
            .expect("restart on the same port");
        let lost = next(&mut sub).await.expect("an item").expect("no error");
        assert_eq!(lost, Delivery::Lost(0));
        // Publish until the resubscription is in place on the new server.
        let mut delivered = None;
        for _ in 0..200 {
            client.publish_async("restart.a", "after").await.expect("publish");
            let item = tokio::time::timeout(Duration::from_millis(50), next(&mut sub)).await;
            if let Ok(Some(Ok(delivery))) = item {
                delivered = Some(delivery);
                break;
            }
        }
        assert!(
            matches!(&delivered, Some(Delivery::Message { payload, .. }) if &payload[..] == b"after"),
            "{delivered:?}"
        );
        drop(again);
    });
}
