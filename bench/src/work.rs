//! The client side of each workload, for raw TCP, mux and h2.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_client::{CallRequest, Client};

/// Requests per second and latency percentiles.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rate {
    pub(crate) per_second: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

pub(crate) fn percentiles(mut samples: Vec<Duration>, elapsed: Duration) -> Rate {
    samples.sort_unstable();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Rate {
        per_second: samples.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

// ---- raw TCP ----

pub(crate) fn raw_bulk(addr: SocketAddr, total: usize) -> f64 {
    let mut stream = TcpStream::connect(addr).expect("raw connect");
    stream.write_all(b"S").expect("mode");
    let chunk = vec![7u8; 64 * 1024];
    let start = Instant::now();
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        stream.write_all(&chunk[..n]).expect("raw write");
        sent += n;
    }
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("raw count");
    assert_eq!(reply, total.to_string(), "raw sink count");
    total as f64 / start.elapsed().as_secs_f64()
}

/// Blocking 64-byte ping-pong; with `outstanding` > 1, one write per response.
pub(crate) fn raw_rpc(addr: SocketAddr, calls: usize, outstanding: usize) -> Rate {
    let mut stream = TcpStream::connect(addr).expect("raw connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.write_all(b"E").expect("mode");
    let message = [1u8; 64];
    let mut reply = [0u8; 64];
    let mut sent_at = VecDeque::with_capacity(outstanding);
    let mut samples = Vec::with_capacity(calls);
    let start = Instant::now();
    for _ in 0..outstanding.min(calls) {
        sent_at.push_back(Instant::now());
        stream.write_all(&message).expect("write");
    }
    let mut sent = outstanding.min(calls);
    for _ in 0..calls {
        stream.read_exact(&mut reply).expect("read");
        if let Some(at) = sent_at.pop_front() {
            samples.push(at.elapsed());
        }
        if sent < calls {
            sent_at.push_back(Instant::now());
            stream.write_all(&message).expect("write");
            sent += 1;
        }
    }
    percentiles(samples, start.elapsed())
}

/// TCP connections set up per second (connect, then one echo round trip).
pub(crate) fn raw_setup(addr: SocketAddr, count: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..count {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(b"E").expect("mode");
        stream.write_all(&[0u8; 64]).expect("write");
        let mut reply = [0u8; 64];
        stream.read_exact(&mut reply).expect("read");
    }
    count as f64 / start.elapsed().as_secs_f64()
}

// ---- mux ----

pub(crate) fn mux_client(addr: SocketAddr) -> Client {
    Client::builder(addr).connect().expect("mux connect")
}

pub(crate) fn mux_bulk(client: &Client, total: usize) -> f64 {
    let chunk = Bytes::from(vec![7u8; 256 * 1024]);
    let start = Instant::now();
    let mut upload = client.open_upload(CallRequest::new("sink", ""));
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
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
        total.to_string().as_bytes(),
        "mux sink count"
    );
    total as f64 / start.elapsed().as_secs_f64()
}

pub(crate) fn mux_bulk_streams(client: &Arc<Client>, streams: usize, each: usize) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..streams)
        .map(|_| {
            let client = Arc::clone(client);
            std::thread::spawn(move || {
                let chunk = Bytes::from(vec![7u8; 64 * 1024]);
                let mut upload = client.open_upload(CallRequest::new("sink", ""));
                let mut sent = 0;
                while sent < each {
                    let n = chunk.len().min(each - sent);
                    upload.write(chunk.slice(..n)).expect("mux write");
                    sent += n;
                }
                upload.finish().expect("finish").wait().expect("reply");
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("upload thread");
    }
    (streams * each) as f64 / start.elapsed().as_secs_f64()
}

pub(crate) fn mux_rpc(client: &Client, calls: usize, outstanding: usize) -> Rate {
    let body = Bytes::from(vec![1u8; 64]);
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
            assert_eq!(reply.body.len(), 64);
            samples.push(at.elapsed());
        }
    }
    percentiles(samples, start.elapsed())
}

/// 64-byte calls while a bulk upload shares the connection.
pub(crate) fn mux_mixed(client: &Arc<Client>, calls: usize) -> Rate {
    let stop = Arc::new(AtomicBool::new(false));
    let bulk = {
        let client = Arc::clone(client);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let chunk = Bytes::from(vec![7u8; 256 * 1024]);
            let mut upload = client.open_upload(CallRequest::new("sink", ""));
            while !stop.load(Ordering::Relaxed) {
                if upload.write(chunk.clone()).is_err() {
                    break;
                }
            }
            let _ = upload.finish().map(|c| c.wait());
        })
    };
    std::thread::sleep(Duration::from_millis(100)); // the bulk stream is running
    let rate = mux_rpc(client, calls, 1);
    stop.store(true, Ordering::Relaxed);
    let _ = bulk.join();
    rate
}

/// mux connections set up per second (TCP connect, prefaces, SETTINGS,
/// one echo call), driven with mux-core over a blocking socket.
pub(crate) fn mux_setup(addr: SocketAddr, count: usize) -> f64 {
    use mux_core::{Config, Connection, Event, Side};
    let start = Instant::now();
    for _ in 0..count {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let now = Instant::now();
        let mut conn = Connection::new(Side::Client, Config::default(), now);
        let head = mux_core::rpc::RequestHead::new("echo")
            .encode()
            .expect("head");
        let id = conn.open(head, true).expect("open");
        let mut out = bytes::BytesMut::new();
        let mut rx = bytes::BytesMut::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut done = false;
        while !done {
            while conn.poll_transmit(Instant::now(), &mut out) {}
            stream.write_all(&out).expect("write");
            out.clear();
            let n = stream.read(&mut buf).expect("read");
            assert!(n > 0, "server closed during setup");
            rx.extend_from_slice(&buf[..n]);
            conn.handle_read(Instant::now(), &mut rx)
                .expect("handshake");
            while let Some(event) = conn.poll_event() {
                if let Event::Readable { id: ready } = event {
                    while let Ok(Some(chunk)) = conn.read(ready, usize::MAX) {
                        done |= ready == id && chunk.fin;
                    }
                }
            }
        }
    }
    count as f64 / start.elapsed().as_secs_f64()
}

// ---- h2 ----

/// An h2 client on its own tokio runtime.
pub(crate) struct H2 {
    runtime: tokio::runtime::Runtime,
    sender: h2::client::SendRequest<Bytes>,
    authority: String,
}

impl H2 {
    pub(crate) fn connect(addr: SocketAddr, big: bool) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio");
        let sender = runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .expect("h2 connect");
            tcp.set_nodelay(true).expect("nodelay");
            let mut builder = h2::client::Builder::new();
            if big {
                builder
                    .initial_window_size(crate::servers::BIG_WINDOW)
                    .initial_connection_window_size(crate::servers::BIG_WINDOW);
            }
            let (sender, connection) = builder
                .handshake::<_, Bytes>(tcp)
                .await
                .expect("h2 handshake");
            tokio::spawn(async move {
                let _ = connection.await;
            });
            sender.ready().await.expect("h2 ready")
        });
        Self {
            runtime,
            sender,
            authority: addr.to_string(),
        }
    }

    fn request(&self, path: &str) -> http::Request<()> {
        http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", self.authority))
            .body(())
            .expect("request")
    }

    pub(crate) fn bulk(&self, streams: usize, each: usize) -> f64 {
        let start = Instant::now();
        self.runtime.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..streams {
                let mut sender = self.sender.clone();
                let request = self.request("/sink");
                tasks.push(tokio::spawn(async move {
                    sender = sender.ready().await.expect("ready");
                    let (response, mut send) =
                        sender.send_request(request, false).expect("send_request");
                    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
                    let mut sent = 0;
                    while sent < each {
                        let want = chunk.len().min(each - sent);
                        send.reserve_capacity(want);
                        let granted = std::future::poll_fn(|cx| send.poll_capacity(cx))
                            .await
                            .expect("capacity")
                            .expect("capacity ok");
                        let n = granted.min(want);
                        send.send_data(chunk.slice(..n), false).expect("send_data");
                        sent += n;
                    }
                    send.send_data(Bytes::new(), true).expect("end");
                    let mut body = response.await.expect("response").into_body();
                    let mut reply = Vec::new();
                    while let Some(Ok(data)) = body.data().await {
                        let _ = body.flow_control().release_capacity(data.len());
                        reply.extend_from_slice(&data);
                    }
                    assert_eq!(reply, each.to_string().into_bytes(), "h2 sink count");
                }));
            }
            for task in tasks {
                task.await.expect("h2 task");
            }
        });
        (streams * each) as f64 / start.elapsed().as_secs_f64()
    }

    pub(crate) fn rpc(&self, calls: usize, outstanding: usize) -> Rate {
        let start = Instant::now();
        let per_task = calls.div_ceil(outstanding);
        let samples = self.runtime.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..outstanding {
                let sender = self.sender.clone();
                let authority = self.authority.clone();
                tasks.push(tokio::spawn(async move {
                    let mut samples = Vec::with_capacity(per_task);
                    let body = Bytes::from(vec![1u8; 64]);
                    for _ in 0..per_task {
                        let at = Instant::now();
                        let mut sender = sender.clone().ready().await.expect("ready");
                        let request = http::Request::builder()
                            .method("POST")
                            .uri(format!("http://{authority}/echo"))
                            .body(())
                            .expect("request");
                        let (response, mut send) =
                            sender.send_request(request, false).expect("send");
                        send.send_data(body.clone(), true).expect("data");
                        let mut reply = response.await.expect("response").into_body();
                        let mut got = 0;
                        while let Some(Ok(data)) = reply.data().await {
                            got += data.len();
                            let _ = reply.flow_control().release_capacity(data.len());
                        }
                        assert_eq!(got, 64);
                        samples.push(at.elapsed());
                    }
                    samples
                }));
            }
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.expect("h2 task"));
            }
            all
        });
        percentiles(samples, start.elapsed())
    }

    /// 64-byte calls while a bulk upload shares the connection.
    pub(crate) fn mixed(&self, calls: usize) -> Rate {
        let stop = Arc::new(AtomicBool::new(false));
        let bulk = {
            let mut sender = self.sender.clone();
            let request = self.request("/sink");
            let stop = Arc::clone(&stop);
            self.runtime.spawn(async move {
                sender = sender.ready().await.expect("ready");
                let (_response, mut send) =
                    sender.send_request(request, false).expect("send_request");
                let chunk = Bytes::from(vec![7u8; 64 * 1024]);
                while !stop.load(Ordering::Relaxed) {
                    send.reserve_capacity(chunk.len());
                    let Some(Ok(granted)) = std::future::poll_fn(|cx| send.poll_capacity(cx)).await
                    else {
                        break;
                    };
                    if send
                        .send_data(chunk.slice(..granted.min(chunk.len())), false)
                        .is_err()
                    {
                        break;
                    }
                }
                let _ = send.send_data(Bytes::new(), true);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let rate = self.rpc(calls, 1);
        stop.store(true, Ordering::Relaxed);
        let _ = self.runtime.block_on(bulk);
        rate
    }
}

/// 64-byte calls chained from completion callbacks: each callback, on the
/// client's loop thread, records its latency and starts the next call, so no
/// application thread is woken per call (mux's non-blocking style, as h2's
/// client runs inside its runtime).
pub(crate) fn mux_rpc_callbacks(client: &Arc<Client>, calls: usize, outstanding: usize) -> Rate {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;
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
        body: Bytes::from(vec![1u8; 64]),
    });
    let start = Instant::now();
    for _ in 0..outstanding.min(calls) {
        issue(Arc::clone(&chain));
    }
    done_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("chained calls finished");
    let elapsed = start.elapsed();
    let samples = std::mem::take(&mut *chain.samples.lock().expect("samples"));
    percentiles(samples, elapsed)
}
