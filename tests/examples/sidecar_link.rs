//! The sidecar pair across a real link, beside direct connections and an
//! HAProxy pair over the same link: two network namespaces joined by a veth
//! pair, each end rate-limited with `tbf` (1 Gbit/s), so that the link, not
//! the CPU, is the bottleneck, as between two hosts. Side A runs wrk, the
//! local sidecar and the local HAProxy; side B runs nginx, the remote
//! sidecar and the remote HAProxy. Bulk through either pair crosses the
//! link once, as a direct connection does.
//!
//! `cargo build --release -p mux-sidecar && cargo run --release -p mux-tests --example sidecar_link [-- RATE]`
//! (RATE as `tc` takes it, default `1gbit`)
//! (needs root, `ip`, `tc`, nginx, haproxy and wrk; the namespaces are
//! removed at the end, or on the next run's start)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mux_testkit::programs::{comparison_row, wrk_transfer_mbps, Killed};
use std::time::Duration;

const ROUNDS: usize = 3;
const A: &str = "mux-link-a";
const B: &str = "mux-link-b";
const ADDR_A: &str = "10.77.0.1";
const ADDR_B: &str = "10.77.0.2";

/// The two namespaces, removed when dropped.
struct Link;

impl Link {
    fn create(rate: &str) -> Self {
        Self::remove();
        let run = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().expect("ip");
            assert!(status.success(), "ip {args:?} failed");
        };
        run(&["netns", "add", A]);
        run(&["netns", "add", B]);
        run(&[
            "link", "add", "mux-va", "type", "veth", "peer", "name", "mux-vb",
        ]);
        run(&["link", "set", "mux-va", "netns", A]);
        run(&["link", "set", "mux-vb", "netns", B]);
        for (ns, dev, addr) in [(A, "mux-va", ADDR_A), (B, "mux-vb", ADDR_B)] {
            run(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            run(&["-n", ns, "link", "set", dev, "up"]);
            run(&["-n", ns, "link", "set", "lo", "up"]);
            let status = Command::new("tc")
                .args([
                    "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
                ])
                .args(["burst", "256kb", "latency", "50ms"])
                .status()
                .expect("tc");
            assert!(status.success(), "tc tbf on {dev} failed");
        }
        Self
    }

    fn remove() {
        for ns in [A, B] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        Self::remove();
    }
}

/// `program args` inside namespace `ns`.
fn spawn_in(ns: &str, program: &str, args: &[String]) -> Killed {
    let child = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("{program} in {ns}: {err}"));
    Killed(child)
}

/// Waits until `addr:port` accepts connections from inside `ns`.
fn wait_listening(ns: &str, addr: &str, port: u16) {
    for _ in 0..500 {
        let probe = Command::new("ip")
            .args(["netns", "exec", ns, "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{addr}/{port}"))
            .stderr(Stdio::null())
            .status();
        if probe.is_ok_and(|s| s.success()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr}:{port} in {ns}");
}

fn nginx(dir: &Path) -> Killed {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("1m.bin"), vec![7u8; 1 << 20]).expect("1 MiB file");
    std::fs::write(www.join("64m.bin"), vec![7u8; 64 << 20]).expect("64 MiB file");
    let conf = format!(
        "worker_processes 1;\ndaemon off;\nerror_log {dir}/nginx.err;\npid {dir}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{ access_log off; sendfile on; keepalive_requests 1000000;\n\
           server {{ listen 8080; root {www}; }} }}\n",
        dir = dir.display(),
        www = www.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let nginx = spawn_in(
        B,
        "nginx",
        &[
            "-p".into(),
            dir.display().to_string(),
            "-c".into(),
            path.display().to_string(),
        ],
    );
    wait_listening(B, "127.0.0.1", 8080);
    nginx
}

fn haproxy(dir: &Path, ns: &str, name: &str, bind: &str, target: &str) -> Killed {
    let conf = format!(
        "global\n  maxconn 4000\n  nbthread 1\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         listen p\n  bind {bind}\n  server s {target}\n"
    );
    let path = dir.join(format!("{name}.cfg"));
    std::fs::write(&path, conf).expect("haproxy config");
    spawn_in(ns, "haproxy", &["-f".into(), path.display().to_string()])
}

/// wrk from side A: transfer in MB/s.
fn wrk_mbps(url: &str, connections: u32) -> f64 {
    let output = Command::new("ip")
        .args([
            "netns",
            "exec",
            A,
            "wrk",
            "-t1",
            &format!("-c{connections}"),
            "-d5s",
            url,
        ])
        .output()
        .expect("wrk");
    wrk_transfer_mbps(&String::from_utf8_lossy(&output.stdout))
}

fn main() {
    let sidecar = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("mux-sidecar")))
        .filter(|path| path.exists())
        .expect("build the sidecar first: cargo build --release -p mux-sidecar");
    let dir: PathBuf = std::env::temp_dir().join(format!("sidecar-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rate = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "1gbit".to_owned());
    let _link = Link::create(&rate);
    let _nginx = nginx(&dir);
    let program = sidecar.display().to_string();
    let _remote = spawn_in(
        B,
        &program,
        &[
            "remote",
            "--listen",
            &format!("{ADDR_B}:7900"),
            "--upstream",
            "web=127.0.0.1:8080",
        ]
        .map(str::to_owned),
    );
    wait_listening(A, ADDR_B, 7900);
    let _local = spawn_in(
        A,
        &program,
        &[
            "local",
            "--remote",
            &format!("{ADDR_B}:7900"),
            "--tunnel",
            "127.0.0.1:6001=web",
        ]
        .map(str::to_owned),
    );
    wait_listening(A, "127.0.0.1", 6001);
    let _haproxy_remote = haproxy(
        &dir,
        B,
        "remote",
        &format!("{ADDR_B}:7901"),
        "127.0.0.1:8080",
    );
    wait_listening(A, ADDR_B, 7901);
    let _haproxy_local = haproxy(
        &dir,
        A,
        "local",
        "127.0.0.1:6002",
        &format!("{ADDR_B}:7901"),
    );
    wait_listening(A, "127.0.0.1", 6002);

    let systems = [
        ("direct", format!("http://{ADDR_B}:8080")),
        ("HAProxy pair", "http://127.0.0.1:6002".to_owned()),
        ("mux sidecar pair", "http://127.0.0.1:6001".to_owned()),
    ];
    let workloads = [
        (
            "one 64 MiB file at a time, 1 connection (MB/s)",
            "/64m.bin",
            1,
        ),
        ("1 MiB files, 10 connections (MB/s)", "/1m.bin", 10),
    ];
    let mut results: Vec<[Vec<f64>; 3]> = vec![Default::default(); workloads.len()];
    for round in 0..ROUNDS {
        for (s, (name, base)) in systems.iter().enumerate() {
            eprintln!("round {}: {name}", round + 1);
            for (w, (_, path, connections)) in workloads.iter().enumerate() {
                results[w][s].push(wrk_mbps(&format!("{base}{path}"), *connections));
            }
        }
    }
    println!("{rate} link between two namespaces; {ROUNDS} rounds, interleaved; MB/s min / median / max\n");
    println!("| workload | direct | HAProxy pair | mux pair | mux / HAProxy | mux / direct |");
    println!("|---|---|---|---|---|---|");
    for ((workload, _, _), by_system) in workloads.iter().zip(&results) {
        println!("{}", comparison_row(workload, by_system));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
