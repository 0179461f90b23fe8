//! Async handlers (`ServerBuilder::route_async`): futures polled on the
//! server's own loop and woken by whatever completes them, here tokio's
//! timers on a runtime of their own; deadlines, resets and panics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mux_client::{CallError, CallRequest, Client};
use mux_server::{Response, Status};
use mux_testkit::{server_builder, wait_until};

const LIMIT: Duration = Duration::from_secs(10);

/// A tokio runtime on a thread of its own: futures it completes wake mux's
/// loop from outside.
pub(crate) fn another_executor() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// Counts drops: shows that a future was cancelled.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn an_async_handler_awaits_another_executors_timer() {
    // The timers run on a tokio runtime of their own: the loop is woken by
    // tokio's thread, not by anything of ours.
    let tokio = another_executor();
    let timers = tokio.handle().clone();
    let server = server_builder()
        .threads(1)
        .route_async("later", move |req| {
            let timers = timers.clone();
            async move {
                let millis: u64 = std::str::from_utf8(req.body())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                // Made and run inside tokio (its timers need its context);
                // awaited here, on mux's loop.
                timers
                    .spawn(async move { tokio::time::sleep(Duration::from_millis(millis)).await })
                    .await
                    .map_err(|err| err.to_string())?;
                Ok(Response::ok(format!("slept {millis} ms")))
            }
        })
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("connect");
    // Five handlers wait at once on the one loop thread; an echo is answered
    // meanwhile, so the loop was not blocked by them.
    let waiting: Vec<_> = (0..5)
        .map(|_| client.start_call(CallRequest::new("later", "300")))
        .collect();
    assert_eq!(
        client.call("echo", "meanwhile").expect("echo").body,
        "meanwhile"
    );
    let mut answered_before_the_echo = 0;
    for mut call in waiting {
        let reply = match call.try_result() {
            Some(early) => {
                answered_before_the_echo += 1;
                early
            }
            None => call.wait(),
        };
        assert_eq!(reply.expect("the handler's answer").body, "slept 300 ms");
    }
    assert!(
        answered_before_the_echo < 5,
        "the echo waited for the sleeping handlers"
    );
}

#[test]
fn a_reset_or_a_deadline_drops_the_future_and_a_panic_answers_500() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&dropped);
    let server = server_builder()
        .threads(1)
        .route_async("forever", move |_| {
            let guard = DropCounter(Arc::clone(&counter));
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok(Response::ok(""))
            }
        })
        .route_async("panics", |_| async {
            panic!("an async handler panicked on purpose")
        })
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("connect");

    let call = client.start_call(CallRequest::new("forever", ""));
    call.cancel();
    wait_until(LIMIT, "the cancelled call's future is dropped", || {
        dropped.load(Ordering::SeqCst) == 1
    });

    let outcome =
        client.call_with(CallRequest::new("forever", "").timeout(Duration::from_millis(50)));
    assert!(
        matches!(
            &outcome,
            Err(CallError::DeadlineExceeded) | Err(CallError::Rejected { .. })
        ) || outcome
            .as_ref()
            .is_ok_and(|r| r.status == Status::DEADLINE_EXCEEDED),
        "{outcome:?}"
    );
    wait_until(LIMIT, "the timed-out call's future is dropped", || {
        dropped.load(Ordering::SeqCst) == 2
    });

    let reply = client.call("panics", "").expect("an answer");
    assert_eq!(reply.status, Status::INTERNAL);
    assert_eq!(
        client.call("echo", "still here").expect("echo").body,
        "still here"
    );
}
