//! Throughput and requests/s through the sidecar beside direct connections,
//! in one run (issue 7's note): 1 GiB over one TCP connection to a sink, and
//! redis-benchmark (SET/GET, 50 clients) against redis-server.
//!
//! `cargo run --release -p mux-tests --example sidecar_quick` (needs redis-server and redis-benchmark)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mux_sidecar::{LocalConfig, RemoteConfig, Tunnel};
use mux_testkit::programs::{redis_benchmark_rps, Program};
use mux_testkit::upstream::counting_upstream;

const BULK: usize = 1 << 30;

fn bulk(addr: SocketAddr) -> f64 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let chunk = vec![7u8; 64 * 1024];
    let start = Instant::now();
    for _ in 0..BULK / chunk.len() {
        stream.write_all(&chunk).expect("write");
    }
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("count");
    assert_eq!(reply, BULK.to_string());
    BULK as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let sink = counting_upstream();
    let redis = Program::redis_server().expect("redis-server");
    let (redis_addr, redis_port) = (redis.addr, redis.addr.port());
    let remote = mux_sidecar::start_remote(
        &RemoteConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            upstreams: [
                ("sink".to_owned(), mux_client::Address::Socket(sink)),
                ("redis".to_owned(), mux_client::Address::Socket(redis_addr)),
            ]
            .into(),
            tls: Default::default(),
            rules: None,
            connection: Default::default(),
        },
        Duration::from_secs(3600),
    )
    .expect("remote");
    let local = mux_sidecar::start_local(
        &LocalConfig {
            remote: remote.local_addrs()[0].into(),
            tunnels: vec![
                Tunnel {
                    listen: "127.0.0.1:0".parse().expect("addr"),
                    upstream: "sink".into(),
                },
                Tunnel {
                    listen: "127.0.0.1:0".parse().expect("addr"),
                    upstream: "redis".into(),
                },
            ],
            connections: 1,
            tls: Default::default(),
            reconnect: Default::default(),
            connection: Default::default(),
        },
        Duration::from_secs(3600),
    )
    .expect("local");
    assert!(local.wait_connected(Duration::from_secs(5)));
    let (sink_tunnel, redis_tunnel) = (local.local_addrs()[0], local.local_addrs()[1]);

    println!("| workload | direct | through the sidecar | ratio |");
    println!("|---|---|---|---|");
    let (direct, tunnelled) = (bulk(sink), bulk(sink_tunnel));
    println!(
        "| 1 GiB over one TCP connection (GB/s) | {:.2} | {:.2} | {:.2} |",
        direct / 1e9,
        tunnelled / 1e9,
        tunnelled / direct
    );
    let direct = redis_benchmark_rps(redis_port, "set,get");
    let tunnelled = redis_benchmark_rps(redis_tunnel.port(), "set,get");
    for ((name, d), (_, t)) in direct.iter().zip(&tunnelled) {
        println!(
            "| redis-benchmark {name}, 50 clients (req/s) | {d:.0} | {t:.0} | {:.2} |",
            t / d
        );
    }
    drop(local);
    drop(remote);
    drop(redis);
}
