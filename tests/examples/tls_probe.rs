//! A 1 GiB upload to a counting sink and a 1 GiB download from `source`,
//! three times each, over TLS, with server and client in this process (one
//! loop thread each): the probe behind the TLS bulk figures.
//!
//! `perf record -g cargo run --release -p mux-tests --example tls_probe`

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use mux_client::{CallRequest, Client, TlsClient};
use mux_server::{Server, TlsServer};
use mux_testkit::pki::TestPki;

const GIB: u64 = 1 << 30;

fn main() {
    let pki = TestPki::new("probe CA");
    let cert = pki.issue("server", &["127.0.0.1"]);
    let tls = TlsServer::from_pem_files(&cert.cert, &cert.key, None).expect("server TLS");
    let server = mux_server::demo::routes(
        Server::builder()
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .threads(1)
            .tls(tls),
    )
    .start()
    .expect("server starts");
    let client = Client::builder(server.local_addr())
        .tls(TlsClient::with_ca_file(&pki.ca_file()).expect("client TLS"))
        .connect()
        .expect("client connects");
    let chunk = Bytes::from(vec![7u8; 256 << 10]);
    for round in 0..3 {
        let start = Instant::now();
        let mut upload = client.open_upload(CallRequest::new("sink", ""));
        for _ in 0..GIB / chunk.len() as u64 {
            upload.write(chunk.clone()).expect("write");
        }
        let reply = upload.finish().expect("finish").wait().expect("reply");
        assert_eq!(reply.body, GIB.to_string());
        let up = GIB as f64 / start.elapsed().as_secs_f64() / 1e9;
        let start = Instant::now();
        let mut download = client.open_stream(CallRequest::new("source", GIB.to_string()));
        download.head().expect("head");
        let mut received = 0u64;
        while let Some(message) = download.next_message() {
            received += message.expect("message").len() as u64;
        }
        assert_eq!(received, GIB);
        let down = GIB as f64 / start.elapsed().as_secs_f64() / 1e9;
        println!("round {round}: upload {up:.2} GB/s, download {down:.2} GB/s");
    }
}
