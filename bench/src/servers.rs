//! The servers under test, each run in a process of its own (`mux-bench
//! serve KIND`): it prints its address on stdout and serves until killed.
//!
//! - `raw`: raw TCP ([`crate::raw`]).
//! - `mux`: mux-server with `echo`, a streaming `sink` and pub/sub; with
//!   `--backplane URL`, publish/subscribe goes through that Redis.
//! - `h2`: HTTP/2 on tokio + h2 ([`crate::http2`]).
//! - `mux-tls`, `h2-tls`: the same over TLS, with the certificate and key
//!   given by `--cert` and `--key`.
//! - `mux-web`: `mux` with its web edge (HTTP/1.1) too; it prints both
//!   addresses, mux's first.
//! - `busy`: no server: a process that spins, for the workloads that need a
//!   third busy thread on the machine.

use std::io::Write;
use std::net::SocketAddr;

use mux_server::{Server, SpinPolicy};

/// A server's certificate and key files.
pub(crate) type Identity<'a> = Option<(&'a std::path::Path, &'a std::path::Path)>;

pub(crate) fn serve(
    kind: &str,
    spin: SpinPolicy,
    identity: Identity<'_>,
    backplane: Option<&str>,
) -> Result<(), String> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_target(false)
        .init();
    let needs_identity = || identity.ok_or_else(|| format!("{kind} needs --cert and --key"));
    match kind {
        "raw" => crate::raw::serve().map_err(|e| e.to_string()),
        "mux" => serve_mux(spin, None, false, backplane),
        "mux-web" => serve_mux(spin, None, true, None),
        "h2" => crate::http2::serve(None),
        "mux-tls" => serve_mux(spin, Some(needs_identity()?), false, None),
        "h2-tls" => crate::http2::serve(Some(needs_identity()?)),
        "busy" => {
            announce(SocketAddr::from(([127, 0, 0, 1], 0)));
            let mut spins = 0u64;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        other => Err(format!("unknown server kind {other:?}")),
    }
}

pub(crate) fn announce(addr: SocketAddr) {
    announce_all(&[addr]);
}

/// Prints a server's addresses on one line, the main one first.
fn announce_all(addrs: &[SocketAddr]) {
    let line: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    println!("{}", line.join(" "));
    let _ = std::io::stdout().flush();
}

fn serve_mux(
    spin: SpinPolicy,
    identity: Identity<'_>,
    web: bool,
    backplane: Option<&str>,
) -> Result<(), String> {
    let config = mux_core::Config {
        max_concurrent_streams: 1000,
        ..mux_core::Config::default()
    };
    let builder = Server::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .connection_config(config)
        .spin(spin)
        .max_connections_per_thread(20_000)
        .slow_subscriber_policy(mux_server::SlowSubscriber::DropOldest { queue: 100_000 })
        // 100,000 messages of 64 bytes: the byte cap must not bind first.
        .feed_queue_bytes(16 << 20);
    let builder = match backplane {
        Some(url) => {
            let node = format!("bench-{}", std::process::id());
            let broker =
                mux_server::backplane::RedisBroker::start(url, &node).map_err(|e| e.to_string())?;
            if !broker.wait_connected(std::time::Duration::from_secs(10)) {
                return Err(format!("no link to {url}"));
            }
            builder.broker(std::sync::Arc::new(broker))
        }
        None => builder,
    };
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let builder = if web { builder.http(loopback) } else { builder };
    let builder = match identity {
        Some((cert, key)) => builder.tls(
            mux_server::TlsServer::from_pem_files(cert, key, None).map_err(|e| e.to_string())?,
        ),
        None => builder,
    };
    // The stock demo routes (`echo`, `sink`, `source`...), as `mux-server` serves them.
    let server = mux_server::demo::routes(builder)
        .start()
        .map_err(|e| e.to_string())?;
    let mut addrs = vec![server.local_addr()];
    addrs.extend(server.http_addr());
    announce_all(&addrs);
    loop {
        std::thread::park();
    }
}
