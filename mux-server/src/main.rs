//! The `mux-server` program: serves mux on loopback with demo routes.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// A mux server with the demo routes of every pattern (see `mux_server::demo`).
#[derive(Debug, Parser)]
#[command(name = "mux-server", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = mux_server::DEFAULT_ADDR)]
    addr: SocketAddr,
    /// Event-loop threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds a graceful shutdown (SIGINT, SIGTERM) may take.
    #[arg(long, default_value_t = 5)]
    drain_seconds: u64,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    log_level: log::LevelFilter,
    #[command(flatten)]
    timeouts: mux_cli::Timeouts,
    #[command(flatten)]
    tls: mux_cli::ServerTls,
}

fn main() -> ExitCode {
    let args = Args::parse();
    mux_cli::init_logging(args.log_level);
    let mut connection = mux_core::Config::default();
    args.timeouts.apply(&mut connection);
    let mut builder = mux_server::Server::builder()
        .bind(args.addr)
        .connection_config(connection);
    if let Some(threads) = args.threads {
        builder = builder.threads(threads);
    }
    match args.tls.load() {
        Ok(Some(tls)) => builder = builder.tls(tls),
        Ok(None) => {}
        Err(err) => {
            eprintln!("mux-server: TLS: {err}");
            return ExitCode::FAILURE;
        }
    }
    let (server, clock) = match mux_server::demo::start_with(builder) {
        Ok(started) => started,
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            eprintln!(
                "mux-server: {} is already in use; pick another with --addr",
                args.addr
            );
            return ExitCode::FAILURE;
        }
        Err(err) => {
            eprintln!("mux-server: cannot listen on {}: {err}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let scheme = if args.tls.tls_cert.is_some() {
        " (TLS)"
    } else {
        ""
    };
    println!("mux-server listening on {}{scheme}", server.local_addr());
    match mux_cli::wait_for_stop_signal() {
        Ok(signal) => log::info!("signal {signal}: shutting down gracefully"),
        Err(err) => {
            eprintln!("mux-server: {err}");
            return ExitCode::FAILURE;
        }
    }
    drop(clock);
    match server.shutdown_gracefully(Duration::from_secs(args.drain_seconds)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mux-server: shutdown: {err}");
            ExitCode::FAILURE
        }
    }
}
