//! A 1 GiB download from the demo's `source` route, three times, with server
//! and client in this process (one loop thread each), read message by
//! message as an application would: the probe behind the download figures
//! of the write path and the client's message hand-off. With `direct`, the
//! downloads are read by a `DirectClient` on the main thread instead.
//!
//! `perf record -g cargo run --release -p mux-tests --example download_probe [direct]`

use std::net::SocketAddr;
use std::time::Instant;

use mux_client::{CallError, CallRequest, Client, DirectClient};
use mux_server::Server;

fn main() {
    let server = mux_server::demo::routes(
        Server::builder()
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .threads(1),
    )
    .start()
    .expect("server starts");
    let direct = std::env::args().nth(1).as_deref() == Some("direct");
    let client = Client::connect(server.local_addr()).expect("client connects");
    let mut direct_client = DirectClient::connect(server.local_addr()).expect("client connects");
    let request = || CallRequest::new("source", (1u64 << 30).to_string());
    for round in 0..3 {
        let start = Instant::now();
        let received = if direct {
            let mut download = direct_client.open_stream(request()).expect("head");
            count(std::iter::from_fn(|| download.next_message()))
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

/// The bytes in a download's messages.
fn count(messages: impl Iterator<Item = Result<bytes::Bytes, CallError>>) -> u64 {
    messages.map(|m| m.expect("message").len() as u64).sum()
}
