//! mux's side of each workload, through `mux-client` as an application
//! would use it: uploads to the demo server's `sink`, downloads from its
//! `source`, calls to `echo` (through a `Client`, or a `DirectClient` on
//! the calling thread).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_client::{CallRequest, Client, DirectClient, SpinPolicy};

use crate::measure::{Outcome, SteadyHalf};
use crate::raw::MESSAGE;

pub(crate) fn client(addr: SocketAddr, spin: SpinPolicy) -> Client {
    Client::builder(addr)
        .spin(spin)
        .connect()
        .expect("mux connect")
}

/// A client over TLS, trusting the CA certificate in `ca`.
pub(crate) fn client_tls(addr: SocketAddr, spin: SpinPolicy, ca: &std::path::Path) -> Client {
    let tls = mux_client::TlsClient::with_ca_file(ca).expect("mux TLS configuration");
    Client::builder(addr)
        .spin(spin)
        .tls(tls)
        .connect()
        .expect("mux TLS connect")
}

/// One upload of `each` bytes in writes of `write_size`; checks the count.
fn upload(client: &Client, each: usize, write_size: usize) {
    let chunk = Bytes::from(vec![7u8; write_size]);
    let mut upload = client.open_upload(CallRequest::new("sink", ""));
    let mut sent = 0;
    while sent < each {
        let n = write_size.min(each - sent);
        upload.write(chunk.slice(..n)).expect("mux write");
        sent += n;
    }
    let reply = upload
        .finish()
        .expect("finish")
        .wait()
        .expect("mux sink reply");
    assert_eq!(
        &reply.body[..],
        each.to_string().as_bytes(),
        "mux sink count"
    );
}

pub(crate) fn bulk(client: &Client, total: usize) -> Outcome {
    let start = Instant::now();
    upload(client, total, 256 * 1024);
    Outcome::bytes(total, start.elapsed())
}

/// One upload of `total` bytes in 256 KiB writes through a
/// `DirectClient`: the caller's thread writes the socket itself.
pub(crate) fn bulk_direct(addr: SocketAddr, total: usize) -> Outcome {
    let mut client = DirectClient::connect(addr).expect("mux direct connect");
    let chunk = Bytes::from(vec![7u8; 256 * 1024]);
    let start = Instant::now();
    let mut upload = client
        .upload(CallRequest::new("sink", ""))
        .expect("mux direct upload");
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        upload.write(chunk.slice(..n)).expect("mux direct write");
        sent += n;
    }
    let reply = upload.finish().expect("mux direct sink reply");
    assert_eq!(
        &reply.body[..],
        total.to_string().as_bytes(),
        "mux sink count"
    );
    Outcome::bytes(total, start.elapsed())
}

/// One download of `total` bytes from the server's `source` route, read
/// message by message.
pub(crate) fn download(client: &Client, total: usize) -> Outcome {
    let start = Instant::now();
    let mut stream = client.open_stream(CallRequest::new("source", total.to_string()));
    stream.head().expect("mux source head");
    let mut got = 0;
    while let Some(message) = stream.next_message() {
        got += message.expect("mux source message").len();
    }
    assert_eq!(got, total, "mux source bytes");
    Outcome::bytes(total, start.elapsed())
}

/// One download of `total` bytes from the `source` route through a
/// `DirectClient`: the caller's thread reads the socket itself.
pub(crate) fn download_direct(addr: SocketAddr, total: usize) -> Outcome {
    let mut client = DirectClient::connect(addr).expect("mux direct connect");
    let start = Instant::now();
    let mut stream = client
        .open_stream(CallRequest::new("source", total.to_string()))
        .expect("mux direct source");
    let mut got = 0;
    while let Some(message) = stream.next_message() {
        got += message.expect("mux direct source message").len();
    }
    assert_eq!(got, total, "mux direct source bytes");
    Outcome::bytes(total, start.elapsed())
}

/// A fresh connection to `addr` (through a long link), one download of
/// `total` bytes from the `source` route, timed over its second half.
pub(crate) fn download_steady(addr: SocketAddr, total: usize, spin: SpinPolicy) -> Outcome {
    let client = client(addr, spin);
    let mut stream = client.open_stream(CallRequest::new("source", total.to_string()));
    stream.head().expect("mux source head");
    let mut steady = SteadyHalf::new(total);
    while let Some(message) = stream.next_message() {
        steady.received(message.expect("mux source message").len());
    }
    assert_eq!(steady.got(), total, "mux source bytes");
    steady.outcome()
}

/// `streams` concurrent uploads on one connection, a thread each.
pub(crate) fn bulk_streams(client: &Arc<Client>, streams: usize, each: usize) -> Outcome {
    let start = Instant::now();
    let threads: Vec<_> = (0..streams)
        .map(|_| {
            let client = Arc::clone(client);
            std::thread::spawn(move || upload(&client, each, 64 * 1024))
        })
        .collect();
    for thread in threads {
        thread.join().expect("upload thread");
    }
    Outcome::bytes(streams * each, start.elapsed())
}

/// Blocking calls, `outstanding` in flight from one application thread.
pub(crate) fn rpc(client: &Client, calls: usize, outstanding: usize) -> Outcome {
    let body = Bytes::from(vec![1u8; MESSAGE]);
    let mut window = VecDeque::with_capacity(outstanding);
    let mut samples = Vec::with_capacity(calls);
    let start = Instant::now();
    let mut sent = 0;
    while samples.len() < calls {
        while window.len() < outstanding && sent < calls {
            window.push_back((Instant::now(), client.call_async("echo", body.clone())));
            sent += 1;
        }
        if let Some((at, call)) = window.pop_front() {
            let reply = call.wait().expect("mux call");
            assert_eq!(reply.body.len(), MESSAGE);
            samples.push(at.elapsed());
        }
    }
    Outcome::operations(samples, start.elapsed())
}

/// One blocking call every `1 / rate` seconds.
pub(crate) fn paced(client: &Client, calls: usize, rate: f64) -> Outcome {
    let body = Bytes::from(vec![1u8; MESSAGE]);
    crate::measure::paced(calls, rate, || {
        let reply = client.call("echo", body.clone()).expect("mux call");
        assert_eq!(reply.body.len(), MESSAGE);
    })
}

/// Blocking calls one after another on this thread through a
/// `DirectClient`: no loop thread between the caller and the socket.
pub(crate) fn rpc_direct(addr: SocketAddr, calls: usize) -> Outcome {
    let body = Bytes::from(vec![1u8; MESSAGE]);
    let mut client = DirectClient::connect(addr).expect("mux direct connect");
    let mut samples = Vec::with_capacity(calls);
    let start = Instant::now();
    for _ in 0..calls {
        let at = Instant::now();
        let reply = client.call("echo", body.clone()).expect("mux direct call");
        assert_eq!(reply.body.len(), MESSAGE);
        samples.push(at.elapsed());
    }
    Outcome::operations(samples, start.elapsed())
}

/// One `DirectClient` call every `1 / rate` seconds.
pub(crate) fn paced_direct(addr: SocketAddr, calls: usize, rate: f64) -> Outcome {
    let body = Bytes::from(vec![1u8; MESSAGE]);
    let mut client = DirectClient::connect(addr).expect("mux direct connect");
    crate::measure::paced(calls, rate, || {
        let reply = client.call("echo", body.clone()).expect("mux direct call");
        assert_eq!(reply.body.len(), MESSAGE);
    })
}

/// 64-byte blocking calls while a bulk upload shares the connection.
pub(crate) fn beside_upload(client: &Arc<Client>, calls: usize) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let bulk = {
        let client = Arc::clone(client);
        let (stop, started) = (Arc::clone(&stop), Arc::clone(&started));
        std::thread::spawn(move || {
            let chunk = Bytes::from(vec![7u8; 256 * 1024]);
            let mut upload = client.open_upload(CallRequest::new("sink", ""));
            let (start, mut sent) = (Instant::now(), 0);
            while !stop.load(Ordering::Relaxed) {
                if upload.write(chunk.clone()).is_err() {
                    break;
                }
                sent += chunk.len();
                started.store(true, Ordering::Relaxed);
            }
            let elapsed = start.elapsed();
            let _ = upload.finish().map(|c| c.wait());
            Outcome::bytes(sent, elapsed).value
        })
    };
    mux_testkit::wait_until(Duration::from_secs(10), "the upload to start", || {
        started.load(Ordering::Relaxed)
    });
    let mut outcome = rpc(client, calls, 1);
    stop.store(true, Ordering::Relaxed);
    outcome.beside = bulk.join().ok();
    outcome
}

/// Calls chained from completion callbacks: each callback, on the client's
/// loop thread, records its latency and starts the next call, so no
/// application thread is woken per call (mux's non-blocking style, as an
/// h2 client runs inside its runtime).
pub(crate) fn rpc_callbacks(client: &Arc<Client>, calls: usize, outstanding: usize) -> Outcome {
    struct Chain {
        client: Arc<Client>,
        samples: Mutex<Vec<Duration>>,
        to_start: AtomicUsize,
        finished: AtomicUsize,
        total: usize,
        done: Mutex<Option<std::sync::mpsc::Sender<()>>>,
        body: Bytes,
    }
    fn issue(chain: Arc<Chain>) {
        let at = Instant::now();
        let request = CallRequest::new("echo", chain.body.clone());
        let next = Arc::clone(&chain);
        chain.client.call_with_callback(request, move |result| {
            assert!(result.is_ok(), "chained call failed: {result:?}");
            if let Ok(mut samples) = next.samples.lock() {
                samples.push(at.elapsed());
            }
            if next.finished.fetch_add(1, Ordering::Relaxed) + 1 == next.total {
                if let Some(done) = next.done.lock().ok().and_then(|mut d| d.take()) {
                    let _ = done.send(());
                }
            }
            if next
                .to_start
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                issue(next);
            }
        });
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let chain = Arc::new(Chain {
        client: Arc::clone(client),
        samples: Mutex::new(Vec::with_capacity(calls)),
        to_start: AtomicUsize::new(calls - outstanding.min(calls)),
        finished: AtomicUsize::new(0),
        total: calls,
        done: Mutex::new(Some(done_tx)),
        body: Bytes::from(vec![1u8; MESSAGE]),
    });
    let start = Instant::now();
    for _ in 0..outstanding.min(calls) {
        issue(Arc::clone(&chain));
    }
    done_rx
        .recv_timeout(Duration::from_secs(300))
        .expect("chained calls finished");
    let elapsed = start.elapsed();
    let samples = std::mem::take(&mut *chain.samples.lock().expect("samples"));
    Outcome::operations(samples, elapsed)
}

/// Clients set up per second: connect (TCP, prefaces, SETTINGS), one call,
/// shut down.
pub(crate) fn setup(addr: SocketAddr, count: usize, spin: SpinPolicy) -> Outcome {
    let body = Bytes::from(vec![1u8; MESSAGE]);
    let mut samples = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        let at = Instant::now();
        let client = client(addr, spin);
        client.call("echo", body.clone()).expect("first call");
        client.shutdown();
        samples.push(at.elapsed());
    }
    Outcome::operations(samples, start.elapsed())
}
