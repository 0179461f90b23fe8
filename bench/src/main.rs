//! `mux-bench`: the same workloads over mux, raw TCP and HTTP/2 (h2), and
//! pub/sub fan-out beside Redis and NATS, every server in its own process,
//! every peer in the best configuration we know for it (see each module).
//! Each workload runs every system in turn, `--rounds` times interleaved;
//! the report gives min/median/max, mux's ratio to each peer round by round,
//! CPU-seconds per unit of work from each process's own counters, and
//! latency percentiles. Prints Markdown and writes it, with an SVG chart, to
//! `--out` (default `target/bench`).
//!
//! `cargo run --release -p mux-bench` (about 15 minutes), or `-- --quick`
//! for a smoke run that proves every workload works (CI runs it; its figures
//! mean nothing).

mod http2;
mod idle;
mod measure;
mod memory;
mod ours;
mod pubsub;
mod raw;
mod report;
mod servers;
mod web;

use std::io::BufRead;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use mux_server::SpinPolicy;
use mux_testkit::programs::Program;

use measure::{measure, Outcome, Series};
use pubsub::Pace;
use report::{Report, Workload};

/// Benchmarks mux against raw TCP, HTTP/2, Redis and NATS.
#[derive(Debug, Parser)]
#[command(name = "mux-bench", version, about)]
struct Args {
    /// Tiny sizes and one round: proves the program works, measures nothing.
    #[arg(long)]
    quick: bool,
    /// Run only these workloads (bulk, longlink, rpc, busy, paced, idle, mixed, backplane,
    /// web, tls, fanout, setup, memory); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// How many times each system runs each workload (interleaved).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The spin policy of mux's loops, client and server.
    #[arg(long, value_enum, default_value_t = Spin::Default)]
    spin: Spin,
    /// Also measure fan-out at these publication rates (per second), beside
    /// the default half of the slowest peak.
    #[arg(long, value_delimiter = ',')]
    fanout_rates: Vec<f64>,
    /// Where to write bench.md and bench.svg.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Internal: serve one peer kind (raw, mux, h2, mux-tls, h2-tls, busy)
    /// and print its address.
    Serve {
        kind: String,
        #[arg(long, value_enum, default_value_t = Spin::Default)]
        spin: Spin,
        /// The TLS kinds' certificate (PEM).
        #[arg(long)]
        cert: Option<PathBuf>,
        /// The TLS kinds' key (PEM).
        #[arg(long)]
        key: Option<PathBuf>,
        /// `mux`: publish/subscribe through this Redis (`redis://host:port`).
        #[arg(long)]
        backplane: Option<String>,
    },
}

/// The spin policies `--spin` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Spin {
    /// The library's default.
    Default,
    /// Spin only while it pays ([`SpinPolicy::ADAPTIVE`]).
    Adaptive,
    /// Spin 200 µs before every sleep.
    Fixed,
    /// Never spin.
    Off,
}

impl Spin {
    fn policy(self) -> SpinPolicy {
        match self {
            Self::Default => SpinPolicy::default(),
            Self::Adaptive => SpinPolicy::ADAPTIVE,
            Self::Fixed => SpinPolicy {
                adaptive: false,
                ..SpinPolicy::ADAPTIVE
            },
            Self::Off => SpinPolicy::OFF,
        }
    }

    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// Sizes of one run.
struct Sizes {
    bulk: usize,
    streams: usize,
    per_stream: usize,
    calls: usize,
    busy_calls: usize,
    pipelined_calls: usize,
    paced_calls: usize,
    mixed_calls: usize,
    subscribers: usize,
    /// Publications per round at peak.
    messages: usize,
    /// At most this many publications per round at a fixed rate, which
    /// otherwise publishes for `PACED_SECONDS`.
    paced_messages: usize,
    /// The web workload: server-sent-events subscribers, publications, and
    /// how long wrk runs.
    web_subscribers: usize,
    web_messages: usize,
    wrk_seconds: u64,
    setups: usize,
    idle_connections: usize,
    /// How long the idle measurement lasts.
    idle_span: std::time::Duration,
    idle_streams_per_connection: usize,
    /// Round-trip times (ms) of the long-link workload, with the bytes each
    /// downloads: enough that the second half is past the ramp-up.
    long_links: Vec<(u64, usize)>,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                bulk: 8 << 20,
                streams: 10,
                per_stream: 1 << 20,
                calls: 300,
                busy_calls: 300,
                pipelined_calls: 1000,
                paced_calls: 50,
                mixed_calls: 100,
                subscribers: 10,
                messages: 200,
                paced_messages: 200,
                web_subscribers: 10,
                web_messages: 50,
                wrk_seconds: 1,
                setups: 20,
                idle_connections: 100,
                idle_span: std::time::Duration::from_millis(200),
                idle_streams_per_connection: 10,
                long_links: vec![(50, 16 << 20)],
            }
        } else {
            Self {
                bulk: 1 << 30,
                streams: 100,
                per_stream: 10 << 20,
                calls: 100_000,
                busy_calls: 100_000,
                pipelined_calls: 200_000,
                // Ten seconds a system and round at one call per millisecond:
                // 100,000 samples would take twenty minutes a run.
                paced_calls: 10_000,
                mixed_calls: 10_000,
                subscribers: 100,
                messages: 10_000,
                // Two seconds at up to 50,000 publications/s: a p99 over a
                // few tenths of a second is one scheduling hiccup's.
                paced_messages: 100_000,
                web_subscribers: 1_000,
                web_messages: 1_000,
                wrk_seconds: 10,
                setups: 1_000,
                idle_connections: 10_000,
                idle_span: std::time::Duration::from_secs(5),
                idle_streams_per_connection: 10,
                long_links: vec![
                    (20, 256 << 20),
                    (50, 256 << 20),
                    (100, 384 << 20),
                    (200, 512 << 20),
                ],
            }
        }
    }
}

/// A server process of ours, killed when dropped.
struct Peer {
    child: Child,
    addr: SocketAddr,
    /// Its web edge, if it has one (`mux-web`).
    http: Option<SocketAddr>,
}

impl Peer {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_peer(kind: &str, spin: Spin) -> Peer {
    spawn_peer_with(kind, spin, &[])
}

fn spawn_peer_with(kind: &str, spin: Spin, extra: &[&std::ffi::OsStr]) -> Peer {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["serve", kind, "--spin", &spin.name()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn server process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("server address");
    let mut addrs = line.split_whitespace().map(|a| {
        a.parse()
            .unwrap_or_else(|_| panic!("{kind} server printed {line:?}"))
    });
    let addr = addrs
        .next()
        .unwrap_or_else(|| panic!("{kind} server printed {line:?}"));
    Peer {
        child,
        addr,
        http: addrs.next(),
    }
}

/// One system in a workload: its name, its server's process, whether it
/// is mux, and one run.
struct System<'a> {
    name: String,
    server: u32,
    ours: bool,
    run: Box<dyn FnMut() -> Outcome + 'a>,
}

fn system<'a>(name: &str, server: u32, run: impl FnMut() -> Outcome + 'a) -> System<'a> {
    System {
        name: name.to_owned(),
        server,
        ours: false,
        run: Box::new(run),
    }
}

fn ours<'a>(name: &str, server: u32, run: impl FnMut() -> Outcome + 'a) -> System<'a> {
    System {
        ours: true,
        ..system(name, server, run)
    }
}

/// Runs every system `rounds` times, round by round, and files the results.
fn compare(
    name: String,
    unit: &'static str,
    per: &'static str,
    rounds: usize,
    mut systems: Vec<System<'_>>,
) -> Workload {
    eprintln!("{name}");
    let mut series: Vec<Series> = systems
        .iter()
        .map(|s| Series {
            system: s.name.clone(),
            runs: Vec::new(),
        })
        .collect();
    for round in 0..rounds {
        for (system, series) in systems.iter_mut().zip(&mut series) {
            eprintln!("  round {}: {}", round + 1, system.name);
            series.runs.push(measure(system.server, &mut system.run));
        }
    }
    let (ours, peers): (Vec<_>, Vec<_>) = systems
        .iter()
        .zip(series)
        .partition(|(system, _)| system.ours);
    Workload {
        name,
        unit,
        per,
        ours: ours.into_iter().map(|(_, s)| s).collect(),
        peers: peers.into_iter().map(|(_, s)| s).collect(),
        cpu: true,
    }
}

fn header(args: &Args) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "Machine: {cores} cores ({cpu}), Linux {}; {} round(s) per workload, interleaved; mux spin policy: {}.\n",
        kernel.trim(),
        args.rounds,
        args.spin.name()
    )
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(Sub::Serve {
        kind,
        spin,
        cert,
        key,
        backplane,
    }) = &args.command
    {
        let identity = cert.as_deref().zip(key.as_deref());
        return match servers::serve(kind, spin.policy(), identity, backplane.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("mux-bench serve {kind}: {err}");
                ExitCode::FAILURE
            }
        };
    }
    // The driver holds every system's client sockets (10,000 idle
    // connections at most, 1,000 subscribers a system): its descriptor
    // table sized now, while it has one thread, so that no round waits on
    // the table growing (`mux_testkit::reserve_file_descriptors` says why).
    mux_testkit::reserve_file_descriptors(16 * 1024);
    if args.quick {
        args.rounds = 1;
    }
    let sizes = Sizes::new(args.quick);
    let rounds = args.rounds.max(1);
    let spin = args.spin.policy();
    let mut report = Report::default();

    eprintln!("starting peers (each its own process)");
    let raw = spawn_peer("raw", args.spin);
    let mux = spawn_peer("mux", args.spin);
    let h2_peer = spawn_peer("h2", args.spin);
    let client = Arc::new(ours::client(mux.addr, spin));
    let h2 = http2::H2::connect(h2_peer.addr);
    let (raw_pid, mux_pid, h2_pid) = (raw.pid(), mux.pid(), h2_peer.pid());

    let wants = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let mib = |bytes: usize| bytes >> 20;
    if wants("bulk") {
        report.workloads.push(compare(
            format!("Bulk upload, 1 stream, {} MiB", mib(sizes.bulk)),
            "GB/s",
            "GB",
            rounds,
            vec![
                ours("mux", mux_pid, || ours::bulk(&client, sizes.bulk)),
                ours("mux, direct (caller's thread)", mux_pid, || {
                    ours::bulk_direct(mux.addr, sizes.bulk)
                }),
                system("raw TCP, 1 MiB writes", raw_pid, || {
                    raw::bulk(raw.addr, sizes.bulk, 1 << 20)
                }),
                system("raw TCP, 64 KiB writes", raw_pid, || {
                    raw::bulk(raw.addr, sizes.bulk, 64 << 10)
                }),
                system("h2", h2_pid, || h2.bulk(1, sizes.bulk)),
            ],
        ));
        report.workloads.push(compare(
            format!("Bulk download, 1 stream, {} MiB", mib(sizes.bulk)),
            "GB/s",
            "GB",
            rounds,
            vec![
                ours("mux (the demo's source route)", mux_pid, || {
                    ours::download(&client, sizes.bulk)
                }),
                ours("mux, direct (caller's thread)", mux_pid, || {
                    ours::download_direct(mux.addr, sizes.bulk)
                }),
                system("raw TCP, 1 MiB writes", raw_pid, || {
                    raw::download(raw.addr, sizes.bulk, 1 << 20)
                }),
                system("raw TCP, 64 KiB writes", raw_pid, || {
                    raw::download(raw.addr, sizes.bulk, 64 << 10)
                }),
                system("h2", h2_pid, || h2.download(sizes.bulk)),
            ],
        ));
        report.workloads.push(compare(
            format!(
                "Bulk upload, {} streams × {} MiB",
                sizes.streams,
                mib(sizes.per_stream)
            ),
            "GB/s",
            "GB",
            rounds,
            vec![
                ours("mux, one connection", mux_pid, || {
                    ours::bulk_streams(&client, sizes.streams, sizes.per_stream)
                }),
                system("raw TCP, 1 connection, 1 MiB writes", raw_pid, || {
                    raw::bulk(raw.addr, sizes.streams * sizes.per_stream, 1 << 20)
                }),
                system("h2, one connection", h2_pid, || {
                    h2.bulk(sizes.streams, sizes.per_stream)
                }),
            ],
        ));
    }
    if wants("longlink") {
        long_links(&mut report, &sizes, rounds, (&mux, &raw), spin);
    }
    if wants("rpc") {
        for outstanding in [1, 64] {
            let calls = if outstanding == 1 {
                sizes.calls
            } else {
                sizes.pipelined_calls
            };
            let mut systems = vec![
                ours("mux, blocking calls", mux_pid, || {
                    ours::rpc(&client, calls, outstanding)
                }),
                ours("mux, callbacks on the loop", mux_pid, || {
                    ours::rpc_callbacks(&client, calls, outstanding)
                }),
            ];
            if outstanding == 1 {
                systems.push(ours("mux, direct (caller's thread)", mux_pid, || {
                    ours::rpc_direct(mux.addr, calls)
                }));
            }
            systems.extend([system("raw TCP, blocking", raw_pid, || {
                raw::rpc(raw.addr, calls, outstanding, raw::Style::Plain)
            })]);
            systems.push(if outstanding == 1 {
                system("raw TCP, reads spin 200 µs", raw_pid, || {
                    raw::rpc(raw.addr, calls, outstanding, raw::Style::Spinning)
                })
            } else {
                system("raw TCP, batched writes", raw_pid, || {
                    raw::rpc(raw.addr, calls, outstanding, raw::Style::Batched)
                })
            });
            systems.push(system("h2", h2_pid, || h2.rpc(calls, outstanding)));
            report.workloads.push(compare(
                format!("64 B request/response, {outstanding} outstanding"),
                "calls/s",
                "1,000 calls",
                rounds,
                systems,
            ));
        }
    }
    if wants("busy") {
        let busy = spawn_peer("busy", args.spin);
        let calls = sizes.busy_calls;
        let mut workload = compare(
            "64 B request/response, 1 outstanding, beside a busy process".to_owned(),
            "calls/s",
            "1,000 calls",
            rounds,
            vec![
                ours("mux, blocking calls", mux_pid, || {
                    ours::rpc(&client, calls, 1)
                }),
                ours("mux, direct (caller's thread)", mux_pid, || {
                    ours::rpc_direct(mux.addr, calls)
                }),
                system("raw TCP, blocking", raw_pid, || {
                    raw::rpc(raw.addr, calls, 1, raw::Style::Plain)
                }),
                system("h2", h2_pid, || h2.rpc(calls, 1)),
            ],
        );
        workload.cpu = false;
        report.workloads.push(workload);
        drop(busy);
    }
    if wants("paced") {
        let (calls, rate) = (sizes.paced_calls, 1000.0);
        report.workloads.push(compare(
            "64 B calls at one per millisecond".to_owned(),
            "calls/s",
            "1,000 calls",
            rounds,
            vec![
                ours("mux", mux_pid, || ours::paced(&client, calls, rate)),
                ours("mux, direct (caller's thread)", mux_pid, || {
                    ours::paced_direct(mux.addr, calls, rate)
                }),
                system("raw TCP, blocking", raw_pid, || {
                    raw::paced(raw.addr, calls, rate)
                }),
                system("h2", h2_pid, || h2.paced(calls, rate)),
            ],
        ));
    }
    if wants("idle") {
        eprintln!("idle");
        report
            .notes
            .push(idle::measure(&client, mux.addr, mux_pid, sizes.idle_span));
    }
    if wants("mixed") {
        let calls = sizes.mixed_calls;
        report.workloads.push(compare(
            "64 B calls beside a bulk upload on the same connection".to_owned(),
            "calls/s",
            "1,000 calls",
            rounds,
            vec![
                ours("mux", mux_pid, || ours::beside_upload(&client, calls)),
                system("h2", h2_pid, || h2.beside_upload(calls)),
            ],
        ));
    }
    if wants("tls") {
        tls_workloads(
            &mut report,
            &sizes,
            rounds,
            args.spin,
            (&mux, &h2_peer),
            &client,
            &h2,
        );
    }
    if wants("fanout") {
        fan_out(&mut report, &sizes, rounds, &mux, &args.fanout_rates);
    }
    if wants("backplane") {
        backplane(
            &mut report,
            &sizes,
            rounds,
            &mux,
            args.spin,
            &args.fanout_rates,
        );
    }
    if wants("web") {
        web_edge(&mut report, &sizes, rounds, args.spin, &args.out);
    }
    if wants("setup") {
        let count = sizes.setups;
        report.workloads.push(compare(
            "Connection set-up and first 64 B call".to_owned(),
            "set-ups/s",
            "1,000 set-ups",
            rounds,
            vec![
                ours(
                    "mux (mux-client: connect, call, shut down)",
                    mux_pid,
                    || ours::setup(mux.addr, count, spin),
                ),
                system("raw TCP (connect, echo, close)", raw_pid, || {
                    raw::setup(raw.addr, count)
                }),
            ],
        ));
    }
    if wants("memory") {
        eprintln!("memory");
        report.notes.push(memory::measure(
            &spawn_peer("mux", args.spin),
            sizes.idle_connections,
            sizes.idle_streams_per_connection,
        ));
    }
    drop(client);
    let markdown = report.markdown(args.quick, &header(&args));
    println!("{markdown}");
    if let Err(err) = report.write(&args.out, &markdown) {
        eprintln!("mux-bench: cannot write {}: {err}", args.out.display());
        return ExitCode::FAILURE;
    }
    eprintln!("wrote {}/bench.md and bench.svg", args.out.display());
    ExitCode::SUCCESS
}

/// One download over a simulated long link (the test kit's delaying proxy
/// at 1 Gbit/s, on loopback) at several round-trip times, mux beside plain
/// TCP through the same link, each on a fresh connection per run and timed
/// over the second half of its bytes: the steady rate after the ramp-up.
fn long_links(
    report: &mut Report,
    sizes: &Sizes,
    rounds: usize,
    (mux, raw): (&Peer, &Peer),
    spin: SpinPolicy,
) {
    const GIGABIT: u64 = 125_000_000;
    for &(rtt_ms, total) in &sizes.long_links {
        let link = |target| {
            mux_testkit::SlowLink::new(std::time::Duration::from_millis(rtt_ms), GIGABIT)
                .proxy_to(target)
                .expect("long-link proxy")
        };
        let (mux_link, raw_link) = (link(mux.addr), link(raw.addr));
        report.workloads.push(compare(
            format!(
                "Download over a {rtt_ms} ms, 1 Gbit/s link, {} MiB, second half",
                total >> 20
            ),
            "MB/s",
            "GB",
            rounds,
            vec![
                ours("mux, one stream", mux.pid(), || {
                    in_megabytes(ours::download_steady(mux_link.addr(), total, spin))
                }),
                system("plain TCP", raw.pid(), || {
                    in_megabytes(raw::download_steady(raw_link.addr(), total))
                }),
            ],
        ));
    }
}

/// A bytes outcome in MB/s instead of GB/s (a link's rates read better).
fn in_megabytes(mut outcome: Outcome) -> Outcome {
    outcome.value *= 1e3;
    outcome
}

/// Fan-out at peak, then at half the slowest system's peak rate.
/// Bulk and 64 B calls at c=1 and c=64 with mux and h2 over TLS, beside
/// the same over plaintext: a test CA and a server certificate for
/// 127.0.0.1 are made for the run.
fn tls_workloads(
    report: &mut Report,
    sizes: &Sizes,
    rounds: usize,
    spin: Spin,
    (mux, h2_peer): (&Peer, &Peer),
    client: &mux_client::Client,
    h2: &http2::H2,
) {
    let pki = mux_testkit::pki::TestPki::new("mux-bench CA");
    let server = pki.issue("server", &["127.0.0.1"]);
    let identity = [
        std::ffi::OsStr::new("--cert"),
        server.cert.as_os_str(),
        std::ffi::OsStr::new("--key"),
        server.key.as_os_str(),
    ];
    let mux_tls = spawn_peer_with("mux-tls", spin, &identity);
    let h2_tls_peer = spawn_peer_with("h2-tls", spin, &identity);
    let tls_client = Arc::new(ours::client_tls(
        mux_tls.addr,
        spin.policy(),
        &pki.ca_file(),
    ));
    let h2_tls = http2::H2::connect_tls(h2_tls_peer.addr, &pki.ca_file());
    let (mux_pid, mux_tls_pid, h2_pid, h2_tls_pid) =
        (mux.pid(), mux_tls.pid(), h2_peer.pid(), h2_tls_peer.pid());
    report.workloads.push(compare(
        format!("TLS: bulk upload, 1 stream, {} MiB", sizes.bulk >> 20),
        "GB/s",
        "GB",
        rounds,
        vec![
            ours("mux over TLS", mux_tls_pid, || {
                ours::bulk(&tls_client, sizes.bulk)
            }),
            system("h2 over TLS", h2_tls_pid, || h2_tls.bulk(1, sizes.bulk)),
            system("mux, plaintext", mux_pid, || ours::bulk(client, sizes.bulk)),
            system("h2, plaintext", h2_pid, || h2.bulk(1, sizes.bulk)),
        ],
    ));
    for outstanding in [1, 64] {
        let calls = if outstanding == 1 {
            sizes.calls
        } else {
            sizes.pipelined_calls
        };
        report.workloads.push(compare(
            format!("TLS: 64 B request/response, {outstanding} outstanding"),
            "calls/s",
            "1,000 calls",
            rounds,
            vec![
                ours("mux over TLS, blocking calls", mux_tls_pid, || {
                    ours::rpc(&tls_client, calls, outstanding)
                }),
                ours("mux over TLS, callbacks on the loop", mux_tls_pid, || {
                    ours::rpc_callbacks(&tls_client, calls, outstanding)
                }),
                system("h2 over TLS", h2_tls_pid, || h2_tls.rpc(calls, outstanding)),
                system("mux, plaintext, blocking calls", mux_pid, || {
                    ours::rpc(client, calls, outstanding)
                }),
                system("h2, plaintext", h2_pid, || h2.rpc(calls, outstanding)),
            ],
        ));
    }
}

fn fan_out(report: &mut Report, sizes: &Sizes, rounds: usize, mux: &Peer, rates: &[f64]) {
    let redis = Program::redis_server()
        .map_err(|err| report.notes.push(format!("{err}: Redis not measured.")))
        .ok();
    let nats_args = |port: u16| {
        ["-a", "127.0.0.1", "-p", &port.to_string()]
            .map(str::to_owned)
            .to_vec()
    };
    let nats = Program::on_free_port("nats-server", nats_args)
        .map_err(|err| report.notes.push(format!("{err}: NATS not measured.")))
        .ok();
    let (subscribers, messages) = (sizes.subscribers, sizes.messages);
    let tally = pubsub::Tally::default();
    let counted = |run| tally.count(run);
    let systems = |pace: Pace, messages: usize| {
        let mut systems = vec![
            ours("mux", mux.pid(), move || {
                counted(pubsub::mux(mux.addr, subscribers, messages, pace))
            }),
            ours("mux, direct subscribers", mux.pid(), move || {
                counted(pubsub::mux_direct(mux.addr, subscribers, messages, pace))
            }),
        ];
        if let Some(redis) = &redis {
            systems.push(system("Redis", redis.id(), move || {
                counted(pubsub::redis(
                    redis.addr.port(),
                    subscribers,
                    messages,
                    pace,
                ))
            }));
        }
        if let Some(nats) = &nats {
            systems.push(system("NATS", nats.id(), move || {
                counted(pubsub::nats(nats.addr.port(), subscribers, messages, pace))
            }));
        }
        systems
    };
    fan_out_workloads(
        report,
        (
            "Pub/sub fan-out",
            subscribers,
            messages,
            sizes.paced_messages,
        ),
        rounds,
        rates,
        systems,
    );
    tally.report(report, "Fan-out");
}

/// The web edge beside mux on one server process (`serve mux-web`): a
/// fan-out to many server-sent-events clients against the same fan-out to
/// mux subscribers, and `POST /call/echo` under wrk against mux calls.
fn web_edge(report: &mut Report, sizes: &Sizes, rounds: usize, spin: Spin, out: &std::path::Path) {
    let peer = spawn_peer("mux-web", spin);
    let Some(http) = peer.http else {
        report
            .notes
            .push("The web edge did not start: not measured.".into());
        return;
    };
    let (addr, pid) = (peer.addr, peer.pid());
    let (subscribers, messages) = (sizes.web_subscribers, sizes.web_messages);
    let tally = pubsub::Tally::default();
    let counted = |run| tally.count(run);
    report.workloads.push(compare(
        format!(
            "Fan-out to {subscribers} subscribers on one server: mux beside server-sent events"
        ),
        "deliveries/s",
        "1,000 deliveries",
        rounds,
        vec![
            ours("mux subscriptions, a connection each", pid, || {
                counted(pubsub::mux(addr, subscribers, messages, Pace::Peak))
            }),
            system("web edge: GET /topics/…, a connection each", pid, || {
                counted(pubsub::sse(addr, http, subscribers, messages, Pace::Peak))
            }),
        ],
    ));
    let client = ours::client(addr, spin.policy());
    let calls = sizes.pipelined_calls;
    let mut wrk_missing = false;
    report.workloads.push(compare(
        "64 B calls on one server: mux beside POST /call/echo (wrk)".to_owned(),
        "calls/s",
        "1,000 calls",
        rounds,
        vec![
            ours("mux, 64 outstanding on one connection", pid, || {
                ours::rpc(&client, calls, web::CONNECTIONS)
            }),
            system("web edge, wrk: 64 connections", pid, || {
                web::wrk_calls(http, sizes.wrk_seconds, out).unwrap_or_else(|| {
                    wrk_missing = true;
                    Outcome::default()
                })
            }),
        ],
    ));
    if wrk_missing {
        report
            .notes
            .push("wrk is not installed or failed: the web edge's calls were not measured.".into());
    }
    tally.report(report, "Web fan-out");
}

/// Fan-out across servers (`spec/patterns.md` §3.6): 1 → N subscribers
/// spread over three `mux` nodes sharing a Redis backplane, the publisher on
/// the first, beside the same fan-out on one node in memory and Redis
/// pub/sub used directly; at peak and at half the slowest peak (the
/// latency the backplane's hop adds when nobody is saturated).
fn backplane(
    report: &mut Report,
    sizes: &Sizes,
    rounds: usize,
    mux: &Peer,
    spin: Spin,
    rates: &[f64],
) {
    let redis = match Program::redis_server() {
        Ok(redis) => redis,
        Err(err) => {
            report
                .notes
                .push(format!("{err}: the backplane not measured."));
            return;
        }
    };
    let url = format!("redis://{}", redis.addr);
    let extra: [&std::ffi::OsStr; 2] = ["--backplane".as_ref(), url.as_ref()];
    let nodes: Vec<Peer> = (0..3)
        .map(|_| spawn_peer_with("mux", spin, &extra))
        .collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|node| node.addr).collect();
    let (addrs, redis) = (&addrs, &redis);
    let (subscribers, messages) = (sizes.subscribers, sizes.messages);
    let tally = pubsub::Tally::default();
    let counted = |run| tally.count(run);
    let systems = |pace: Pace, messages: usize| {
        vec![
            ours("mux, one node, in memory", mux.pid(), move || {
                counted(pubsub::mux(mux.addr, subscribers, messages, pace))
            }),
            ours("mux, 3 nodes through Redis", nodes[0].pid(), move || {
                counted(pubsub::mux_nodes(addrs, subscribers, messages, pace))
            }),
            system("Redis pub/sub, directly", redis.id(), move || {
                counted(pubsub::redis(
                    redis.addr.port(),
                    subscribers,
                    messages,
                    pace,
                ))
            }),
        ]
    };
    fan_out_workloads(
        report,
        (
            "Fan-out across servers",
            subscribers,
            messages,
            sizes.paced_messages,
        ),
        rounds,
        rates,
        systems,
    );
    report.notes.push(
        "Fan-out across servers: the 3-node row's server CPU is the publishing node's alone; \
         the other nodes and Redis also work for it."
            .into(),
    );
    tally.report(report, "Fan-out across servers");
}

/// How long a fan-out at a fixed rate publishes, each system and round
/// (less when that would exceed `Sizes::paced_messages`).
const PACED_SECONDS: f64 = 2.0;

/// A fan-out's workloads: at peak, then at half the slowest system's peak
/// (publications per second) and at each of `rates`, `systems(pace,
/// messages)` making the systems of each.
fn fan_out_workloads<'a>(
    report: &mut Report,
    (title, subscribers, messages, paced_messages): (&str, usize, usize, usize),
    rounds: usize,
    rates: &[f64],
    systems: impl Fn(Pace, usize) -> Vec<System<'a>>,
) {
    let peak = compare(
        format!("{title} at peak, 1 → {subscribers} subscribers, 64 B"),
        "deliveries/s",
        "1,000 deliveries",
        rounds,
        systems(Pace::Peak, messages),
    );
    let slowest = peak
        .ours
        .iter()
        .chain(&peak.peers)
        .map(|s| s.value().median)
        .fold(f64::INFINITY, f64::min);
    report.workloads.push(peak);
    let half_slowest = (slowest.is_finite() && slowest > 0.0).then(|| {
        (
            slowest / 2.0 / subscribers as f64,
            " (half the slowest peak)",
        )
    });
    let asked = rates.iter().map(|&rate| (rate, ""));
    for (rate, why) in half_slowest.into_iter().chain(asked) {
        let paced = ((rate * PACED_SECONDS) as usize).clamp(100, paced_messages.max(100));
        report.workloads.push(compare(
            format!("{title} at {rate:.0} publications/s{why}, 1 → {subscribers}"),
            "deliveries/s",
            "1,000 deliveries",
            rounds,
            systems(Pace::Rate(rate), paced),
        ));
    }
}
