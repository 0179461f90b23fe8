//! A 1 GiB download from the demo's `source` route, three times, with server
//! and client in this process (one loop thread each), read message by
//! message as an application would: the probe behind the download figures
//! of the write path and the client's message hand-off. With `direct`, the
//! downloads are read by a `DirectClient` on the main thread instead.
//!
//! `perf record -g cargo run --release -p mux-tests --example download_probe [direct] [fresh] [spin-off] [ADDR]`
//!
//! With an address the downloads come from that server (one started by
//! `mux-bench serve mux`, as the benchmark runs it) and this process is
//! the client alone; with `spin-off`, `Client`'s loop never spins
//! (`SpinPolicy::OFF`); with `fresh` (and `direct`), each download has a
//! connection of its own, as the benchmark's do, and the time its first
//! and last 256 MiB took is printed too.

use std::net::SocketAddr;
use std::time::Instant;

use mux_client::{CallError, CallRequest, Client, DirectClient, SpinPolicy};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let direct = args.iter().any(|a| a == "direct");
    let fresh = args.iter().any(|a| a == "fresh");
    let spin = if args.iter().any(|a| a == "spin-off") {
        SpinPolicy::OFF
    } else {
        SpinPolicy::default()
    };
    let remote: Option<SocketAddr> = args.iter().find_map(|a| a.parse().ok());
    let (addr, _server) = mux_testkit::remote_or_demo(remote, |builder| builder.threads(1));
    let client = Client::builder(addr)
        .spin(spin)
        .connect()
        .expect("client connects");
    let mut direct_client = DirectClient::connect(addr).expect("client connects");
    let request = || CallRequest::new("source", (1u64 << 30).to_string());
    for round in 0..3 {
        let start = Instant::now();
        let received = if direct {
            if fresh {
                direct_client = DirectClient::connect(addr).expect("client connects");
            }
            let mut download = direct_client.open_stream(request()).expect("head");
            count_quarters(start, std::iter::from_fn(|| download.next_message()))
        } else {
            let mut download = client.open_stream(request());
            download.head().expect("head");
            count(std::iter::from_fn(|| download.next_message()))
        };
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "round {round}: {received} bytes, {:.2} GB/s",
            received as f64 / seconds / 1e9
        );
    }
}

/// The bytes in a download's messages; prints when each quarter of a
/// 1 GiB download was in.
fn count_quarters(
    start: Instant,
    messages: impl Iterator<Item = Result<bytes::Bytes, CallError>>,
) -> u64 {
    let quarter = 1u64 << 28;
    let mut total = 0;
    let mut marks = Vec::new();
    for message in messages {
        total += message.expect("message").len() as u64;
        if total >= quarter * (marks.len() as u64 + 1) {
            marks.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let text: Vec<String> = marks.iter().map(|ms| format!("{ms:.1}")).collect();
    println!("  quarters in at {} ms", text.join(" / "));
    total
}

/// The bytes in a download's messages.
fn count(messages: impl Iterator<Item = Result<bytes::Bytes, CallError>>) -> u64 {
    messages.map(|m| m.expect("message").len() as u64).sum()
}
