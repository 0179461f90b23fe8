//! One 64-byte call per millisecond for 3 s, client and server in this
//! process: the CPU (of both, from /proc) and latency behind the spin
//! policy figures in `spec/PERFORMANCE-LOG.md`.
//!
//! `cargo run --release -p mux-tests --example paced_probe -- [fixed|adaptive|off] [ADDR]`
//!
//! With an address the calls go to that server (for example one started by
//! `mux-bench serve mux`, to profile it alone) and the CPU is this
//! process's: the client's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mux_client::Client;
use mux_server::{Response, Server, SpinPolicy};

fn cpu_seconds() -> f64 {
    mux_testkit::cpu_seconds(std::process::id())
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "fixed".into());
    let policy = match mode.as_str() {
        "off" => SpinPolicy::OFF,
        "adaptive" => SpinPolicy::ADAPTIVE,
        _ => SpinPolicy::default(),
    };
    let remote: Option<SocketAddr> = std::env::args().nth(2).map(|a| a.parse().expect("ADDR"));
    let server = Server::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .threads(1)
        .spin(policy)
        .route("echo", |req| Ok(Response::ok(req.into_body())))
        .start()
        .expect("server starts");
    let client = Client::builder(remote.unwrap_or(server.local_addr()))
        .spin(policy)
        .connect()
        .expect("client connects");
    let (cpu_before, start) = (cpu_seconds(), Instant::now());
    let mut latencies = Vec::with_capacity(3000);
    for n in 0..3000u64 {
        let sent = Instant::now();
        client.call("echo", "x").expect("call");
        latencies.push(sent.elapsed());
        let next = start + Duration::from_millis(n + 1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort();
    println!(
        "{mode}: CPU {:.1}% of a core (client and server), p50 {:?}, p99 {:?}",
        (cpu_seconds() - cpu_before) / seconds * 100.0,
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100]
    );
}
