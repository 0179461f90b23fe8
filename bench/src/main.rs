//! `mux-bench`: the same workloads over mux, raw TCP and HTTP/2 (`h2`, with
//! its default windows and with 16 MiB windows), plus pub/sub fan-out beside
//! Redis and NATS, in one run, every server in its own process. Prints a
//! Markdown table of figures and ratios and writes it, with an SVG chart,
//! to `--out` (default `target/bench`).
//!
//! `cargo run --release -p mux-bench` (a few minutes), or `-- --quick` for a
//! smoke run that proves every workload works (CI runs it; its figures mean
//! nothing).

mod pubsub;
mod report;
mod servers;
mod work;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use mux_testkit::programs::Program;
use mux_testkit::rss_kib;
use report::{Report, Row};
use work::H2;

/// Benchmarks mux against raw TCP, HTTP/2, Redis and NATS.
#[derive(Debug, Parser)]
#[command(name = "mux-bench", version, about)]
struct Args {
    /// Tiny sizes: proves the program works, measures nothing.
    #[arg(long)]
    quick: bool,
    /// Run only these workloads (bulk, rpc, mixed, fanout, setup, memory); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where to write bench.md and bench.svg.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Internal: serve one peer kind (raw, mux, h2, h2-big) and print its address.
    Serve { kind: String },
}

/// Sizes of one run.
struct Sizes {
    bulk: usize,
    streams: usize,
    per_stream: usize,
    calls: usize,
    mixed_calls: usize,
    subscribers: usize,
    messages: usize,
    idle_connections: usize,
    idle_streams_per_connection: usize,
    setups: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                bulk: 8 << 20,
                streams: 10,
                per_stream: 1 << 20,
                calls: 300,
                mixed_calls: 100,
                subscribers: 10,
                messages: 200,
                idle_connections: 100,
                idle_streams_per_connection: 10,
                setups: 20,
            }
        } else {
            Self {
                bulk: 1 << 30,
                streams: 100,
                per_stream: 10 << 20,
                calls: 20_000,
                mixed_calls: 2_000,
                subscribers: 100,
                messages: 10_000,
                idle_connections: 10_000,
                idle_streams_per_connection: 10,
                setups: 1_000,
            }
        }
    }
}

/// A server process of ours, killed when dropped.
struct Peer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_peer(kind: &str) -> Peer {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["serve", kind])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn server process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("server address");
    let addr = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{kind} server printed {line:?}"));
    Peer { child, addr }
}

/// Server RSS per idle connection and per idle stream, in bytes.
fn memory(sizes: &Sizes) -> (f64, f64) {
    use mux_core::{Config, Connection, Side};
    let peer = spawn_peer("mux");
    std::thread::sleep(Duration::from_millis(200));
    let base = rss_kib(peer.child.id());
    let mut conns = Vec::with_capacity(sizes.idle_connections);
    for _ in 0..sizes.idle_connections {
        let mut stream = TcpStream::connect(peer.addr).expect("connect");
        let mut conn = Connection::new(Side::Client, Config::default(), Instant::now());
        let mut out = bytes::BytesMut::new();
        while conn.poll_transmit(Instant::now(), &mut out) {}
        stream.write_all(&out).expect("handshake");
        let mut rx = bytes::BytesMut::new();
        let mut buf = [0u8; 4096];
        while !conn.is_established() {
            let n = stream.read(&mut buf).expect("read");
            rx.extend_from_slice(&buf[..n]);
            conn.handle_read(Instant::now(), &mut rx)
                .expect("handshake");
        }
        out.clear();
        while conn.poll_transmit(Instant::now(), &mut out) {}
        stream.write_all(&out).expect("ack");
        conns.push((stream, conn));
    }
    std::thread::sleep(Duration::from_millis(500));
    let with_conns = rss_kib(peer.child.id());
    let streams = sizes.idle_connections * sizes.idle_streams_per_connection;
    for (stream, conn) in &mut conns {
        for _ in 0..sizes.idle_streams_per_connection {
            let head = mux_core::rpc::RequestHead::new("sink")
                .encode()
                .expect("head");
            let _ = conn.open(head, false).expect("open");
        }
        let mut out = bytes::BytesMut::new();
        while conn.poll_transmit(Instant::now(), &mut out) {}
        stream.write_all(&out).expect("open streams");
    }
    std::thread::sleep(Duration::from_millis(500));
    let with_streams = rss_kib(peer.child.id());
    let per_conn = (with_conns.saturating_sub(base) * 1024) as f64 / sizes.idle_connections as f64;
    let per_stream = (with_streams.saturating_sub(with_conns) * 1024) as f64 / streams as f64;
    drop(conns);
    (per_conn, per_stream)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Sub::Serve { kind }) = &args.command {
        return match servers::serve(kind) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("mux-bench serve {kind}: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let sizes = Sizes::new(args.quick);
    let mut report = Report::default();
    let gb = |v: f64| v / 1e9;

    eprintln!("starting peers (each its own process)");
    let raw = spawn_peer("raw");
    let mux = spawn_peer("mux");
    let h2 = spawn_peer("h2");
    let h2_big = spawn_peer("h2-big");
    let client = Arc::new(work::mux_client(mux.addr));
    let h2_default = H2::connect(h2.addr, false);
    let h2_raised = H2::connect(h2_big.addr, true);

    let wants = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    if wants("bulk") {
        eprintln!("bulk, 1 stream");
        let bulk_mb = sizes.bulk >> 20;
        report.push(Row::throughput(
            format!("bulk, 1 stream, {bulk_mb} MiB (GB/s)"),
            gb(work::mux_bulk(&client, sizes.bulk)),
            vec![
                ("raw TCP", gb(work::raw_bulk(raw.addr, sizes.bulk))),
                ("h2 default", gb(h2_default.bulk(1, sizes.bulk))),
                ("h2 16 MiB", gb(h2_raised.bulk(1, sizes.bulk))),
            ],
        ));

        eprintln!("bulk, {} streams", sizes.streams);
        report.push(Row::throughput(
            format!(
                "bulk, {} streams × {} MiB (GB/s)",
                sizes.streams,
                sizes.per_stream >> 20
            ),
            gb(work::mux_bulk_streams(
                &client,
                sizes.streams,
                sizes.per_stream,
            )),
            vec![
                (
                    "h2 default",
                    gb(h2_default.bulk(sizes.streams, sizes.per_stream)),
                ),
                (
                    "h2 16 MiB",
                    gb(h2_raised.bulk(sizes.streams, sizes.per_stream)),
                ),
            ],
        ));
    }
    let mut idle_p99 = Duration::ZERO;
    if wants("rpc") {
        for outstanding in [1, 64] {
            eprintln!("64 B request/response, {outstanding} outstanding");
            let ours = work::mux_rpc(&client, sizes.calls, outstanding);
            if outstanding == 1 {
                idle_p99 = ours.p99;
            }
            let raw_rate = work::raw_rpc(raw.addr, sizes.calls, outstanding);
            let h2_rate = h2_default.rpc(sizes.calls, outstanding);
            let h2_big_rate = h2_raised.rpc(sizes.calls, outstanding);
            report.push(Row::rate(
                format!("64 B request/response, {outstanding} outstanding, blocking calls"),
                ours,
                vec![
                    ("raw TCP", raw_rate),
                    ("h2 default", h2_rate),
                    ("h2 16 MiB", h2_big_rate),
                ],
            ));
            let chained = work::mux_rpc_callbacks(&client, sizes.calls, outstanding);
            report.push(Row::rate(
                format!("64 B request/response, {outstanding} outstanding, callbacks on the loop"),
                chained,
                vec![
                    ("raw TCP", raw_rate),
                    ("h2 default", h2_rate),
                    ("h2 16 MiB", h2_big_rate),
                ],
            ));
        }
    }
    if wants("mixed") {
        eprintln!("mixed: 64 B calls beside a bulk upload");
        let mixed = work::mux_mixed(&client, sizes.mixed_calls);
        let h2_mixed = h2_raised.mixed(sizes.mixed_calls);
        report.mixed = Some((idle_p99, mixed, h2_mixed));
        report.push(Row::rate(
            "64 B calls during a bulk upload, same connection".to_owned(),
            mixed,
            vec![("h2 16 MiB", h2_mixed)],
        ));
    }
    if wants("fanout") {
        eprintln!("pub/sub fan-out");
        let ours = pubsub::mux(mux.addr, sizes.subscribers, sizes.messages);
        let mut peers = Vec::new();
        match Program::redis_server() {
            Ok(redis) => {
                peers.push((
                    "Redis",
                    pubsub::redis(redis.addr.port(), sizes.subscribers, sizes.messages),
                ));
            }
            Err(err) => report
                .notes
                .push(format!("{err}: Redis pub/sub not measured")),
        }
        let nats_args = |port: u16| {
            ["-a", "127.0.0.1", "-p", &port.to_string()]
                .map(str::to_owned)
                .to_vec()
        };
        match Program::on_free_port("nats-server", nats_args) {
            Ok(nats) => peers.push((
                "NATS",
                pubsub::nats(nats.addr.port(), sizes.subscribers, sizes.messages),
            )),
            Err(err) => report.notes.push(format!("{err}: NATS not measured")),
        }
        report.push(Row::fanout(
            format!(
                "pub/sub fan-out, 1 → {} subscribers, 64 B (deliveries/s)",
                sizes.subscribers
            ),
            ours,
            peers,
        ));
    }
    if wants("setup") {
        eprintln!("connection set-up");
        report.push(Row::throughput(
            "connection set-up and first call (per second)".to_owned(),
            work::mux_setup(mux.addr, sizes.setups),
            vec![("raw TCP", work::raw_setup(raw.addr, sizes.setups))],
        ));
    }
    if wants("memory") {
        eprintln!("memory");
        let (per_conn, per_stream) = memory(&sizes);
        report.memory = Some((
            sizes.idle_connections,
            per_conn,
            sizes.idle_connections * sizes.idle_streams_per_connection,
            per_stream,
        ));
    }
    drop(client);
    let markdown = report.markdown(args.quick);
    println!("{markdown}");
    if let Err(err) = report.write(&args.out, &markdown) {
        eprintln!("mux-bench: cannot write {}: {err}", args.out.display());
        return ExitCode::FAILURE;
    }
    eprintln!("wrote {}/bench.md and bench.svg", args.out.display());
    ExitCode::SUCCESS
}
