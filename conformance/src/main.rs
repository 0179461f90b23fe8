//! The `mux-conformance` program: `server ADDR` checks a server, `client
//! --listen ADDR` checks the clients that connect there.

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mux_conformance::case::say;
use mux_conformance::client_cases::{self, Clients};
use mux_conformance::server_cases::{self, Server};
use mux_conformance::vectors::{Vectors, BUILT_IN};
use mux_conformance::{Filter, Report};

/// Checks a mux endpoint against spec/mux-v1.md, rule by rule. Exit status
/// 1 if any MUST failed.
#[derive(Debug, Parser)]
#[command(name = "mux-conformance", version)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// One JSON document on stdout instead of lines.
    #[arg(long, global = true)]
    json: bool,
    /// Run only these sections (and their subsections), e.g. `--only 5.4,6.3`.
    #[arg(long, global = true, value_delimiter = ',')]
    only: Vec<String>,
    /// Leave out these sections (and their subsections).
    #[arg(long, global = true, value_delimiter = ',')]
    skip: Vec<String>,
    /// The longest wait for any answer, in seconds.
    #[arg(long, global = true, default_value_t = 3.0)]
    timeout: f64,
    /// How long to wait for the endpoint's handshake and SETTINGS timers
    /// (§11.4, §5.4.2.4), in seconds.
    #[arg(long, global = true, default_value_t = 12.0)]
    timers: f64,
    /// Also check the keepalive and idle timeout (§11.2), waiting this many
    /// seconds for each.
    #[arg(long, global = true)]
    idle_wait: Option<f64>,
    /// Print the cases (section, MUST or SHOULD, sentence) instead of running them.
    #[arg(long, global = true)]
    list: bool,
    /// Another vectors file than the spec's own (spec/vectors/frames.json).
    #[arg(long, global = true)]
    vectors: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Act as a client against the server at ADDR.
    Server { addr: SocketAddr },
    /// Act as a server at --listen; the client under test must connect
    /// there repeatedly (one connection per case) and make calls.
    Client {
        #[arg(long)]
        listen: SocketAddr,
    },
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::from_secs(3))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let text = match &args.vectors {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => {
                eprintln!("mux-conformance: {}: {err}", path.display());
                return ExitCode::from(2);
            }
        },
        None => BUILT_IN.to_owned(),
    };
    let vectors = match Vectors::parse(&text) {
        Ok(vectors) => vectors,
        Err(err) => {
            eprintln!("mux-conformance: the vectors: {err}");
            return ExitCode::from(2);
        }
    };
    let filter = Filter {
        only: args.only.clone(),
        skip: args.skip.clone(),
    };
    let (timeout, timers) = (seconds(args.timeout), seconds(args.timers));
    let idle = args.idle_wait.map(seconds);
    let live = !args.json;
    if args.list {
        let listing = match args.mode {
            Mode::Server { .. } => Report::list(&server_cases::cases(&vectors), &filter),
            Mode::Client { .. } => Report::list(&client_cases::cases(&vectors), &filter),
        };
        say(&listing);
        return ExitCode::SUCCESS;
    }
    let report = match args.mode {
        Mode::Server { addr } => {
            let server = Server {
                addr,
                timeout,
                timers,
                idle,
            };
            Report::run(&server_cases::cases(&vectors), &server, &filter, live)
        }
        Mode::Client { listen } => {
            let listener = match TcpListener::bind(listen) {
                Ok(listener) => listener,
                Err(err) => {
                    eprintln!("mux-conformance: cannot listen on {listen}: {err}");
                    return ExitCode::from(2);
                }
            };
            eprintln!("waiting for the client under test on {listen}");
            let clients = Clients::new(listener, timeout);
            Report::run(&client_cases::cases(&vectors), &clients, &filter, live)
        }
    };
    if args.json {
        say(&format!("{}\n", report.json()));
    } else {
        say(&format!("\n{}", report.summary()));
    }
    ExitCode::from(report.exit_status() as u8)
}
