//! The `mux-server` program: serves mux on loopback with demo routes.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use clap::Parser;
use mux_server::auth::{AllowAll, Authenticator, CertificateNames, FirstOf, StaticTokens};
use mux_server::authz::Rules;

/// A mux server with the demo routes of every pattern (see `mux_server::demo`).
#[derive(Debug, Parser)]
#[command(name = "mux-server", version, about)]
struct Args {
    /// Address to listen on: IP:port, or host:port (the first address the
    /// name resolves to, e.g. `localhost:7878`).
    #[arg(long, default_value = mux_server::DEFAULT_ADDR)]
    addr: mux_runtime::Address,
    /// Event-loop threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: Option<u64>,
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
    /// Admit clients presenting a bearer token from this file (`NAME TOKEN` lines).
    #[arg(long, value_name = "FILE")]
    tokens: Option<std::path::PathBuf>,
    /// Admit everyone (as `anonymous`); without this, --tokens or
    /// --tls-client-ca, only loopback peers are admitted.
    #[arg(long)]
    allow_anonymous: bool,
    /// Authorization rules (TOML: see `mux_server::authz`); without it,
    /// every admitted identity may do everything.
    #[arg(long, value_name = "FILE")]
    rules: Option<std::path::PathBuf>,
    /// Also serve the web edge on this address: HTTP/1.1 for browsers (event
    /// streams, topics, long polls, calls, /metrics, the demo page at /).
    #[arg(long, value_name = "ADDR")]
    http: Option<mux_runtime::Address>,
    /// Share publish/subscribe, event logs and sessions with other servers
    /// through this Redis (`redis://host:port`): a subscriber on any server
    /// receives what is published on any other, an event stream resumes on
    /// any, a session opened on one is attached on another.
    #[arg(long, value_name = "URL")]
    backplane: Option<String>,
    /// This server's name in logs (default: its address).
    #[arg(long, value_name = "NAME")]
    node_id: Option<String>,
}

/// The authenticator the flags ask for: client certificates (with
/// --tls-client-ca), tokens, anonymous, in that order; `None`: the default.
fn authenticator(args: &Args) -> Result<Option<FirstOf>, String> {
    let mut accepted: Vec<Arc<dyn Authenticator>> = Vec::new();
    if args.tls.tls_client_ca.is_some() {
        accepted.push(Arc::new(CertificateNames));
    }
    if let Some(path) = &args.tokens {
        accepted.push(Arc::new(StaticTokens::from_file(path)?));
    }
    if args.allow_anonymous {
        accepted.push(Arc::new(AllowAll));
    }
    Ok((!accepted.is_empty()).then(|| FirstOf(accepted)))
}

/// Entries each event log, and each session's feed, keeps (in memory, or
/// on the backplane).
const EVENT_LOG_CAPACITY: usize = 1024;

/// How long a session lives after its last use (as in memory).
const SESSION_TTL_SECS: u64 = 300;

/// The first address `address` resolves to (to listen on).
fn first_address(address: &mux_runtime::Address) -> Result<SocketAddr, String> {
    match address.resolve() {
        Ok(found) => found
            .first()
            .copied()
            .ok_or_else(|| format!("{address} has no address")),
        Err(err) => Err(format!("cannot resolve {address}: {err}")),
    }
}

/// `builder` with publish/subscribe, event logs and sessions on the Redis at
/// `url`, for the node `node`.
fn backplane(
    builder: mux_server::ServerBuilder,
    url: &str,
    node: &str,
) -> Result<mux_server::ServerBuilder, String> {
    use mux_server::backplane::{RedisBroker, RedisEvents, RedisSessions, DEFAULT_PREFIX};
    let broker = RedisBroker::start(url, node).map_err(|e| e.to_string())?;
    if !broker.wait_connected(Duration::from_secs(2)) {
        // Not fatal: the links come up when Redis does; until then
        // publications are answered 503.
        log::warn!("node {node}: no link to {url} yet; retrying in the background");
    }
    let ttl = Duration::from_secs(SESSION_TTL_SECS);
    let sessions = RedisSessions::start(url, node, DEFAULT_PREFIX, ttl, EVENT_LOG_CAPACITY)?;
    let events = RedisEvents::start(url, node, DEFAULT_PREFIX, EVENT_LOG_CAPACITY)
        .map_err(|e| e.to_string())?;
    log::info!("node {node}: publish/subscribe, event logs and sessions on {url}");
    Ok(builder
        .broker(Arc::new(broker))
        .session_store(Arc::new(sessions))
        .event_store(Arc::new(events)))
}

/// Descriptors the server may need: every connection its loops may hold,
/// the web edge's, and a few for listeners, logs and the backplane.
fn open_files_wanted(args: &Args) -> u64 {
    let loops = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |cores| cores.get() as u64)
    });
    let per_loop = mux_runtime::LoopConfig::default().max_connections as u64;
    let http = if args.http.is_some() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        mux_server::HttpConfig::new(any).max_connections as u64
    } else {
        0
    };
    loops * per_loop + http + SPARE_DESCRIPTORS
}

/// Descriptors beside the connections: listeners, logs, the backplane's.
const SPARE_DESCRIPTORS: u64 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    mux_cli::init_logging(args.log_level);
    // While the program has one thread (`mux_cli::descriptors` says why).
    let files = mux_cli::descriptors::prepare(open_files_wanted(&args));
    if !files.is_enough() {
        log::info!(
            "open-file limit {} (the hard limit): room for about {} connections of the {} \
             it may hold; more needs a higher hard limit (`ulimit -Hn`, systemd's LimitNOFILE)",
            files.limit,
            files.limit.saturating_sub(SPARE_DESCRIPTORS),
            files.wanted - SPARE_DESCRIPTORS
        );
    } else if files.limit > files.before {
        log::info!(
            "open-file limit raised from {} to {}",
            files.before,
            files.limit
        );
    }
    let mut connection = mux_core::Config::default();
    args.timeouts.apply(&mut connection);
    let bind = match first_address(&args.addr) {
        Ok(bind) => bind,
        Err(err) => {
            eprintln!("mux-server: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = mux_server::Server::builder()
        .bind(bind)
        .connection_config(connection);
    if let Some(threads) = args.threads {
        builder = builder.threads(threads as usize);
    }
    match authenticator(&args) {
        Ok(Some(authenticator)) => builder = builder.authenticator(authenticator),
        Ok(None) => {}
        Err(err) => {
            eprintln!("mux-server: {err}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &args.rules {
        match Rules::from_file(path) {
            Ok(rules) => builder = builder.authorizer(rules),
            Err(err) => {
                eprintln!("mux-server: rules: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    match args.tls.load() {
        Ok(Some(tls)) => builder = builder.tls(tls),
        Ok(None) => {}
        Err(err) => {
            eprintln!("mux-server: TLS: {err}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(url) = &args.backplane {
        let node = args.node_id.clone().unwrap_or_else(|| bind.to_string());
        builder = match backplane(builder, url, &node) {
            Ok(builder) => builder,
            Err(err) => {
                eprintln!("mux-server: --backplane: {err}");
                return ExitCode::FAILURE;
            }
        };
    }
    if let Some(http) = &args.http {
        match first_address(http) {
            Ok(addr) => builder = builder.http(addr),
            Err(err) => {
                eprintln!("mux-server: --http: {err}");
                return ExitCode::FAILURE;
            }
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
    if let Some(http) = server.http_addr() {
        println!("web edge on http://{http}/");
    }
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
