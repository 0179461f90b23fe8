//! A 1 GiB upload to a counting sink, three times, with server and client in
//! this process (one loop thread each): the probe behind the page-fault and
//! throughput figures of the read path in `spec/PERFORMANCE-LOG.md`.
//!
//! `perf stat -e page-faults,task-clock cargo run --release -p mux-tests --example upload_probe`

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use mux_client::{CallRequest, Client};
use mux_server::demo::ByteCounter;
use mux_server::Server;

fn main() {
    let server = Server::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .threads(1)
        .route_streaming("sink", |_| Box::new(ByteCounter::default()))
        .start()
        .expect("server starts");
    let client = Client::connect(server.local_addr()).expect("client connects");
    let chunk = Bytes::from(vec![7u8; 1 << 20]);
    for round in 0..3 {
        let start = Instant::now();
        let mut upload = client.open_upload(CallRequest::new("sink", ""));
        for _ in 0..1024 {
            upload.write(chunk.clone()).expect("write");
        }
        let reply = upload.finish().expect("finish").wait().expect("reply");
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "round {round}: {} bytes, {:.2} GB/s",
            String::from_utf8_lossy(&reply.body),
            (1u64 << 30) as f64 / seconds / 1e9
        );
    }
}
