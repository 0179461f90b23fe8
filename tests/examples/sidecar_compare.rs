//! The sidecar against what a user would pick instead, in one run: direct
//! connections, a pair of HAProxy processes in `mode tcp` (one TCP
//! connection per client connection, the plain proxy pair), and the mux
//! sidecar pair, carrying redis-benchmark (50 clients) to redis-server and
//! wrk to nginx (a small file with keep-alive, the same with
//! `Connection: close`, and a 1 MiB file over 10 connections). Every system
//! runs each workload in turn, `ROUNDS` times; the table gives min / median /
//! max and the sidecar's ratio to each, round by round.
//!
//! `cargo run --release -p mux-tests --example sidecar_compare [-- CONNECTIONS]`
//! (needs redis-server, redis-benchmark, nginx, haproxy and wrk; CONNECTIONS
//! is the sidecar's mux connections, default 1)

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mux_client::Address;
use mux_sidecar::{LocalConfig, RemoteConfig, Tunnel};
use mux_testkit::programs::{
    comparison_row, redis_benchmark_rps, wrk_transfer_mbps, Killed, Program,
};

const ROUNDS: usize = 3;
const WRK_SECONDS: &str = "5";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_listening(port: u16) {
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("nothing listens on {port}");
}

/// nginx serving `small.txt` (100 bytes) and `1m.bin` from `dir`.
fn nginx(dir: &Path) -> (Killed, u16) {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("small.txt"), [b'x'; 100]).expect("small file");
    std::fs::write(www.join("1m.bin"), vec![7u8; 1 << 20]).expect("1 MiB file");
    let port = free_port();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\nerror_log {dir}/nginx.err;\npid {dir}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{ access_log off; keepalive_requests 1000000;\n\
           server {{ listen 127.0.0.1:{port}; root {www}; }} }}\n",
        dir = dir.display(),
        www = www.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let child = Command::new("nginx")
        .args([
            "-p",
            &dir.display().to_string(),
            "-c",
            &path.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx");
    wait_listening(port);
    (Killed(child), port)
}

/// One HAProxy process forwarding each `(listen port, target)` in `mode tcp`.
fn haproxy(dir: &Path, name: &str, routes: &[(u16, SocketAddr)]) -> Killed {
    let mut conf = String::from(
        "global\n  maxconn 4000\n  nbthread 1\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n",
    );
    for (n, (port, target)) in routes.iter().enumerate() {
        conf += &format!("listen p{n}\n  bind 127.0.0.1:{port}\n  server s{n} {target}\n");
    }
    let path = dir.join(format!("{name}.cfg"));
    std::fs::write(&path, conf).expect("haproxy config");
    let child = Command::new("haproxy")
        .args(["-f", &path.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy");
    for (port, _) in routes {
        wait_listening(*port);
    }
    Killed(child)
}

/// wrk's requests/s and transfer/s (MB/s).
fn wrk(port: u16, path: &str, connections: u32, close: bool) -> (f64, f64) {
    let mut command = Command::new("wrk");
    command.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{WRK_SECONDS}s"),
    ]);
    if close {
        command.args(["-H", "Connection: close"]);
    }
    let output = command
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("wrk");
    let text = String::from_utf8_lossy(&output.stdout);
    let value = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(str::trim)
            .unwrap_or("0")
            .to_owned()
    };
    let rps = value("Requests/sec:").parse().unwrap_or(0.0);
    (rps, wrk_transfer_mbps(&text))
}

fn main() {
    let connections: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let dir: PathBuf = std::env::temp_dir().join(format!("sidecar-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let redis = Program::redis_server().expect("redis-server");
    let (_nginx, web_port) = nginx(&dir);
    let web = SocketAddr::from(([127, 0, 0, 1], web_port));

    // The plain proxy pair: local HAProxy → remote HAProxy → upstream.
    let (remote_redis, remote_web) = (free_port(), free_port());
    let (local_redis, local_web) = (free_port(), free_port());
    let _haproxy_remote = haproxy(
        &dir,
        "remote",
        &[(remote_redis, redis.addr), (remote_web, web)],
    );
    let remote_at = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let _haproxy_local = haproxy(
        &dir,
        "local",
        &[
            (local_redis, remote_at(remote_redis)),
            (local_web, remote_at(remote_web)),
        ],
    );

    // The mux sidecar pair.
    let remote = mux_sidecar::start_remote(
        &RemoteConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            upstreams: HashMap::from([
                ("redis".to_owned(), Address::Socket(redis.addr)),
                ("web".to_owned(), Address::Socket(web)),
            ]),
            tls: Default::default(),
            rules: None,
            connection: Default::default(),
        },
        Duration::from_secs(3600),
    )
    .expect("remote sidecar");
    let local = mux_sidecar::start_local(
        &LocalConfig {
            remote: remote.local_addrs()[0].into(),
            tunnels: ["redis", "web"]
                .map(|upstream| Tunnel {
                    listen: "127.0.0.1:0".parse().expect("addr"),
                    upstream: upstream.into(),
                })
                .to_vec(),
            connections,
            tls: Default::default(),
            reconnect: Default::default(),
            connection: Default::default(),
        },
        Duration::from_secs(3600),
    )
    .expect("local sidecar");
    assert!(local.wait_connected(Duration::from_secs(5)));
    let (mux_redis, mux_web) = (local.local_addrs()[0].port(), local.local_addrs()[1].port());

    let systems = [
        ("direct", redis.addr.port(), web_port),
        ("HAProxy pair", local_redis, local_web),
        ("mux sidecar pair", mux_redis, mux_web),
    ];
    // workload → system → values per round
    let mut results: Vec<(String, [Vec<f64>; 3])> = Vec::new();
    let mut record = |workload: String, system: usize, value: f64| {
        let row = match results.iter().position(|(w, _)| *w == workload) {
            Some(row) => row,
            None => {
                results.push((workload, Default::default()));
                results.len() - 1
            }
        };
        results[row].1[system].push(value);
    };
    for round in 0..ROUNDS {
        for (n, (name, redis_port, web_port)) in systems.iter().enumerate() {
            eprintln!("round {}: {name}", round + 1);
            for (test, rps) in redis_benchmark_rps(*redis_port, "set,get,incr,lpush") {
                record(
                    format!("redis-benchmark {test}, 50 clients (req/s)"),
                    n,
                    rps,
                );
            }
            let (rps, _) = wrk(*web_port, "/small.txt", 50, false);
            record(
                "wrk, 100 B file, 50 keep-alive connections (req/s)".into(),
                n,
                rps,
            );
            let (rps, _) = wrk(*web_port, "/small.txt", 50, true);
            record("wrk, 100 B file, Connection: close (req/s)".into(), n, rps);
            let (_, mbps) = wrk(*web_port, "/1m.bin", 10, false);
            record("wrk, 1 MiB file, 10 connections (MB/s)".into(), n, mbps);
        }
    }
    println!("mux sidecar with {connections} mux connection(s); {ROUNDS} rounds, interleaved; min / median / max\n");
    println!("| workload | direct | HAProxy pair | mux pair | mux / HAProxy | mux / direct |");
    println!("|---|---|---|---|---|---|");
    for (workload, by_system) in &results {
        println!("{}", comparison_row(workload, by_system));
    }
    drop(local);
    drop(remote);
    let _ = std::fs::remove_dir_all(&dir);
}
