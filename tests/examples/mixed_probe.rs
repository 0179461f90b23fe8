//! 64-byte blocking calls alone, then beside a bulk upload on the same
//! `Client` connection (256 KiB writes from a thread of their own), against
//! the demo routes in this process: the probe behind the beside-an-upload
//! latency experiments in `spec/PERFORMANCE-LOG.md`. Prints p50 / p99 / p99.9 of each and
//! the upload's rate.
//!
//! `cargo run --release -p mux-tests --example mixed_probe -- [ADDR]`
//!
//! With an address the calls go to that server (one started by `mux-bench
//! serve mux`, as the benchmark runs it). With `WIN=K` in the environment,
//! the server in this process grants every stream a fixed window of K KiB
//! (initial and ceiling), to measure how the bytes a bulk stream keeps in
//! flight set the calls' latency beside it; with `INIT=K`, only the initial
//! window is K KiB (the floor of a shared stream's credit, spec §9.6.9),
//! and auto-tuning works above it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_client::{CallRequest, Client};

const CALLS: usize = 20_000;

fn main() {
    let remote: Option<SocketAddr> = std::env::args().nth(1).map(|a| a.parse().expect("ADDR"));
    let (addr, _server) =
        mux_testkit::remote_or_demo(remote, |builder| builder.connection_config(windows()));
    let client = Arc::new(Client::connect(addr).expect("client connects"));
    println!("alone:  {}", calls(&client));
    let stop = Arc::new(AtomicBool::new(false));
    // `SEPARATE=1`: the upload on a connection (and a loop) of its own, to
    // tell the bytes queued ahead of a call from the cores the upload takes.
    let uploader = match std::env::var_os("SEPARATE") {
        Some(_) => Arc::new(Client::connect(addr).expect("second client connects")),
        None => Arc::clone(&client),
    };
    let upload = {
        let (client, stop) = (uploader, Arc::clone(&stop));
        std::thread::spawn(move || {
            let chunk = Bytes::from(vec![7u8; 256 * 1024]);
            let mut upload = client.open_upload(CallRequest::new("sink", ""));
            let (start, mut sent) = (Instant::now(), 0usize);
            while !stop.load(Ordering::Relaxed) {
                upload.write(chunk.clone()).expect("write");
                sent += chunk.len();
            }
            let rate = sent as f64 / start.elapsed().as_secs_f64() / 1e9;
            upload.finish().expect("finish").wait().expect("reply");
            rate
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let beside = calls(&client);
    stop.store(true, Ordering::Relaxed);
    let rate = upload.join().expect("upload");
    println!("beside: {beside}, upload {rate:.2} GB/s");
}

/// `CALLS` blocking 64-byte calls: their latency percentiles.
fn calls(client: &Client) -> String {
    let body = Bytes::from(vec![1u8; 64]);
    let start = Instant::now();
    let mut samples: Vec<Duration> = (0..CALLS)
        .map(|_| {
            let start = Instant::now();
            let reply = client.call("echo", body.clone()).expect("call");
            assert_eq!(reply.body.len(), 64, "the echo");
            start.elapsed()
        })
        .collect();
    let rate = CALLS as f64 / start.elapsed().as_secs_f64();
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    format!(
        "{rate:.0} calls/s, p50 / p99 / p99.9 {:.3} / {:.3} / {:.3} ms",
        at(0.5),
        at(0.99),
        at(0.999)
    )
}

/// The server's connection settings: every stream window fixed at `WIN`
/// KiB, or the initial one at `INIT` KiB, if the environment sets them;
/// the defaults otherwise.
fn windows() -> mux_core::Config {
    let mut config = mux_core::Config::default();
    let fixed = std::env::var("WIN")
        .ok()
        .and_then(|k| k.parse::<u32>().ok());
    if let Some(kib) = fixed {
        config.initial_stream_window = kib * 1024;
        config.max_stream_window = kib * 1024;
    }
    let initial = std::env::var("INIT")
        .ok()
        .and_then(|k| k.parse::<u32>().ok());
    if let Some(kib) = initial {
        config.initial_stream_window = kib * 1024;
    }
    config
}
