//! A quick side-by-side measurement (issue 4's note): one stream's bulk
//! throughput and 64-byte request/response rates over mux, each beside raw
//! TCP measured in the same run on loopback. The full comparison, with
//! servers in their own processes and HTTP/2, is the benchmark program.
//!
//! `cargo run --release -p mux-tests --example quick`

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_client::{CallRequest, Client};
use mux_server::Response;

const BULK: usize = 1 << 30;
const CHUNK: usize = 64 * 1024;
const CALLS: usize = 20_000;

fn raw_bulk() -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0;
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    let mut stream = TcpStream::connect(addr).expect("connect");
    let chunk = vec![7u8; CHUNK];
    let start = Instant::now();
    for _ in 0..BULK / CHUNK {
        stream.write_all(&chunk).expect("write");
    }
    drop(stream);
    let total = reader.join().expect("reader");
    total as f64 / start.elapsed().as_secs_f64()
}

fn mux_bulk(client: &Client) -> f64 {
    let chunk = Bytes::from(vec![7u8; CHUNK]);
    let start = Instant::now();
    let mut upload = client.open_upload(CallRequest::new("sink", ""));
    for _ in 0..BULK / CHUNK {
        upload.write(chunk.clone()).expect("write");
    }
    let reply = upload.finish().expect("finish").wait().expect("reply");
    let received: usize = String::from_utf8_lossy(&reply.body).parse().expect("count");
    assert_eq!(received, BULK);
    received as f64 / start.elapsed().as_secs_f64()
}

fn raw_ping_pong(outstanding: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut buf = [0u8; 64];
        while stream.read_exact(&mut buf).is_ok() {
            if stream.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let message = [1u8; 64];
    let mut reply = [0u8; 64];
    let start = Instant::now();
    for _ in 0..outstanding {
        stream.write_all(&message).expect("write");
    }
    for n in 0..CALLS {
        stream.read_exact(&mut reply).expect("read");
        if n + outstanding < CALLS {
            stream.write_all(&message).expect("write");
        }
    }
    let rate = CALLS as f64 / start.elapsed().as_secs_f64();
    drop(stream);
    let _ = server.join();
    rate
}

fn mux_calls(client: &Client, outstanding: usize) -> f64 {
    let body = Bytes::from(vec![1u8; 64]);
    let start = Instant::now();
    let mut window = VecDeque::with_capacity(outstanding);
    let mut sent = 0;
    let mut done = 0;
    while done < CALLS {
        while window.len() < outstanding && sent < CALLS {
            window.push_back(client.call_async("echo", body.clone()));
            sent += 1;
        }
        if let Some(call) = window.pop_front() {
            let reply = call.wait().expect("call");
            assert_eq!(reply.body.len(), 64);
            done += 1;
        }
    }
    CALLS as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let server = mux_server::Server::builder()
        .bind("127.0.0.1:0".parse().expect("addr"))
        .route("echo", |req| Ok(Response::ok(req.into_body())))
        .route_streaming("sink", |_| {
            Box::new(mux_server::demo::ByteCounter::default())
        })
        .start()
        .expect("server");
    let client = Client::connect(server.local_addr()).expect("client");
    // Warm up both paths.
    let _ = mux_calls(&client, 1);

    let only = std::env::args().nth(1);
    if only.as_deref() == Some("bulk") {
        println!("mux bulk {:.2} GB/s", mux_bulk(&client) / 1e9);
        return;
    }
    let raw = raw_bulk();
    let mux = mux_bulk(&client);
    println!("| workload | raw TCP | mux | mux / raw |");
    println!("|---|---|---|---|");
    println!(
        "| bulk, 1 stream, 1 GiB (GB/s) | {:.2} | {:.2} | {:.2} |",
        raw / 1e9,
        mux / 1e9,
        mux / raw
    );
    for outstanding in [1, 64] {
        let raw = raw_ping_pong(outstanding);
        let mux = mux_calls(&client, outstanding);
        println!(
            "| 64 B request/response, {outstanding} outstanding (req/s) | {:.0} | {:.0} | {:.2} |",
            raw,
            mux,
            mux / raw
        );
    }
    client.shutdown();
    server
        .shutdown_gracefully(Duration::from_secs(5))
        .expect("shutdown");
}
