//! A 1 GiB download from the demo's `source` route, three times, with server
//! and client in this process (one loop thread each), read message by
//! message as an application would: the probe behind the download figures
//! of the write path and the client's message hand-off.
//!
//! `perf record -g cargo run --release -p mux-tests --example download_probe`

use std::net::SocketAddr;
use std::time::Instant;

use mux_client::{CallRequest, Client};
use mux_server::Server;

fn main() {
    let server = mux_server::demo::routes(
        Server::builder()
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .threads(1),
    )
    .start()
    .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("client connects");
    for round in 0..3 {
        let start = Instant::now();
        let mut download = client.open_stream(CallRequest::new("source", (1u64 << 30).to_string()));
        download.head().expect("head");
        let mut received = 0u64;
        while let Some(message) = download.next_message() {
            received += message.expect("message").len() as u64;
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "round {round}: {received} bytes, {:.2} GB/s",
            received as f64 / seconds / 1e9
        );
    }
}
