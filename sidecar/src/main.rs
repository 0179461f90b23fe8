//! The `mux-sidecar` program: either side of the tunnel, from flags or a TOML file.

use std::net::SocketAddr;

use mux_runtime::{Address, Addresses};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mux_sidecar::config::parse_pair;
use mux_sidecar::{FileConfig, LocalConfig, RemoteConfig, Tunnel};

/// Carries plain TCP connections as streams over one mux connection.
#[derive(Debug, Parser)]
#[command(name = "mux-sidecar", version, about)]
struct Args {
    /// A TOML file with a [local] and/or [remote] section (flags of the chosen side override it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Seconds between counter log lines.
    #[arg(long, global = true, default_value_t = 10)]
    stats_seconds: u64,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info")]
    log_level: log::LevelFilter,
    #[command(flatten)]
    timeouts: mux_cli::Timeouts,
    #[command(subcommand)]
    side: Side,
}

#[derive(Debug, Subcommand)]
enum Side {
    /// Listens on local ports and tunnels each connection to the remote side.
    Local {
        /// The remote sidecar: host:port, or several comma-separated to fail
        /// over between [default: 127.0.0.1:7900].
        #[arg(long)]
        remote: Option<Addresses>,
        /// A tunnel, `LISTEN_ADDR=UPSTREAM_NAME` (repeatable).
        #[arg(long = "tunnel", value_name = "ADDR=NAME")]
        tunnels: Vec<String>,
        /// Mux connections to the remote side; tunnels go to the least loaded [default: 1].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
        connections: Option<u64>,
        #[command(flatten)]
        tls: mux_cli::ClientTls,
        /// Milliseconds before the first retry after the remote side fails [default: 100].
        #[arg(long, value_name = "MS")]
        reconnect_initial_ms: Option<u64>,
        /// The longest wait between retries, in milliseconds [default: 5000].
        #[arg(long, value_name = "MS")]
        reconnect_max_ms: Option<u64>,
    },
    /// Accepts tunnels and connects each to its upstream.
    Remote {
        /// Where the local side connects [default: 127.0.0.1:7900].
        #[arg(long)]
        listen: Option<Address>,
        /// An upstream, `NAME=HOST:PORT` (repeatable; a host name is resolved
        /// at start, every 30 s and after a failed connect).
        #[arg(long = "upstream", value_name = "NAME=ADDR")]
        upstreams: Vec<String>,
        #[command(flatten)]
        tls: mux_cli::ServerTls,
        /// Who may tunnel to which upstream (TOML rules, `mux_server::authz`).
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
    },
}

/// A tunnel should notice a dead peer long before its clients give up: a
/// keepalive PING after 5 s of silence, the peer declared dead 5 s later, so
/// within 10 s its tunnels are reset and new ones refused (flags and the
/// `[timeouts]` table override both).
const KEEPALIVE: Duration = Duration::from_secs(5);

fn sidecar_keepalive(connection: &mut mux_core::Config) {
    connection.keepalive_interval = Some(KEEPALIVE);
    connection.keepalive_timeout = KEEPALIVE;
}

fn main() -> ExitCode {
    let args = Args::parse();
    mux_cli::run("mux-sidecar", args.log_level, || run(args))
}

fn run(args: Args) -> Result<(), String> {
    let file = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            FileConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let every = Duration::from_secs(args.stats_seconds.max(1));
    let timeouts = args.timeouts.or(file.timeouts);
    let sidecar = match args.side {
        Side::Local {
            remote,
            tunnels,
            connections,
            tls,
            reconnect_initial_ms,
            reconnect_max_ms,
        } => {
            let mut config = file.local.unwrap_or(LocalConfig {
                remote: SocketAddr::from(([127, 0, 0, 1], 7900)).into(),
                tunnels: Vec::new(),
                connections: 1,
                tls: Default::default(),
                reconnect: Default::default(),
                connection: Default::default(),
            });
            if let Some(n) = connections {
                config.connections = usize::try_from(n).unwrap_or(1);
            }
            if let Some(ms) = reconnect_initial_ms {
                config.reconnect.initial_ms = ms;
            }
            if let Some(ms) = reconnect_max_ms {
                config.reconnect.max_ms = ms;
            }
            sidecar_keepalive(&mut config.connection);
            timeouts.apply(&mut config.connection);
            config.tls = tls.or(config.tls);
            if let Some(remote) = remote {
                config.remote = remote;
            }
            for tunnel in tunnels {
                let (listen, upstream) = parse_pair(&tunnel)?;
                let listen = listen.parse::<Address>().map_err(|e| e.to_string())?;
                config.tunnels.push(Tunnel { listen, upstream });
            }
            if config.tunnels.is_empty() {
                return Err("no tunnel: give --tunnel ADDR=NAME or a [local] section".into());
            }
            mux_sidecar::start_local(&config, every).map_err(|e| e.to_string())?
        }
        Side::Remote {
            listen,
            upstreams,
            tls,
            rules,
        } => {
            let mut config = file.remote.unwrap_or(RemoteConfig {
                listen: Address::Socket(SocketAddr::from(([127, 0, 0, 1], 7900))),
                upstreams: Default::default(),
                tls: Default::default(),
                rules: None,
                connection: Default::default(),
            });
            sidecar_keepalive(&mut config.connection);
            timeouts.apply(&mut config.connection);
            config.tls = tls.or(config.tls);
            config.rules = rules.or(config.rules);
            if let Some(listen) = listen {
                config.listen = listen;
            }
            for upstream in upstreams {
                let (name, addr) = parse_pair(&upstream)?;
                let addr = addr.parse::<Address>().map_err(|e| e.to_string())?;
                config.upstreams.insert(name, addr);
            }
            mux_sidecar::start_remote(&config, every).map_err(|e| e.to_string())?
        }
    };
    for addr in sidecar.local_addrs() {
        println!("mux-sidecar listening on {addr}");
    }
    mux_cli::wait_for_stop_signal()?;
    // The loop logs the final counters as it shuts down.
    sidecar.shutdown();
    Ok(())
}
