//! mux-sidecar: a proxy pair that carries plain TCP connections as streams
//! over one multiplexed mux connection.
//!
//! ```text
//!  TCP clients ──► local sidecar ══ one mux connection ══► remote sidecar ──► upstreams
//!   (many)         (listens on            (streams)          (connects per
//!                   local ports)                               stream)
//! ```
//!
//! Each accepted TCP connection becomes one stream; half-closes and resets
//! travel both ways; flow control holds end to end, so a slow upstream slows
//! the local client and memory stays bounded. Both sides run on the mio
//! event loop of `mux-runtime`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod app;
pub mod config;
mod pipe;
pub mod stats;
mod upstreams;
mod warnings;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mux_runtime::{Address, EventLoop, LoopConfig, LoopHandle, TlsClient, TlsServer};
use mux_server::auth::{AllowAll, Authenticator, CertificateNames};
use mux_server::authz::Rules;

pub use app::{STATS_ROUTE, TUNNEL_ROUTE, UPSTREAM};
pub use config::{FileConfig, LocalConfig, Reconnect, RemoteConfig, Tunnel};
pub use mux_cli::{ClientTls, ServerTls};
pub use stats::Stats;

use app::{Access, Command, Link, Role, SidecarApp};
use upstreams::Upstreams;

/// A running sidecar side.
#[derive(Debug)]
pub struct Sidecar {
    handle: LoopHandle<Command>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
    addrs: Vec<SocketAddr>,
}

impl Sidecar {
    /// The addresses it listens on (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Its counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Local side: waits until the mux connection to the remote side is up.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self
            .stats
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Closes every tunnel and stops.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.handle.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(
    role: Role,
    connection: &mux_core::Config,
    listener: Option<mio::net::TcpListener>,
    extra: Vec<SocketAddr>,
    stats_every: Duration,
    tls: (Option<TlsServer>, Option<TlsClient>),
) -> io::Result<Sidecar> {
    let stats = Arc::new(Stats::default());
    let app = SidecarApp::new(role, Arc::clone(&stats), stats_every);
    let bound = Arc::clone(&app.bound);
    let config = LoopConfig {
        conn: connection.clone(),
        tls_server: tls.0,
        tls_client: tls.1,
        ..LoopConfig::default()
    };
    let (mut event_loop, handle) = EventLoop::new(app, config, listener, 1024)?;
    event_loop.app_mut().set_handle(handle.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("mux-sidecar".into())
        .spawn(move || {
            let _ = ready_tx.send(());
            if let Err(err) = event_loop.run() {
                log::error!("sidecar loop failed: {err}");
            }
        })?;
    let _ = ready_rx.recv();
    let mut sidecar = Sidecar {
        handle,
        thread: Some(thread),
        stats,
        addrs: extra,
    };
    // The local side binds its ports when its loop starts: wait for them.
    for _ in 0..200 {
        if let Ok(addrs) = bound.lock() {
            if !addrs.is_empty() {
                sidecar.addrs = addrs.clone();
                break;
            }
        }
        if !sidecar.addrs.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(sidecar)
}

fn invalid_tls(err: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("TLS: {err}"))
}

/// The first socket address `address` stands for (a name is resolved now:
/// this is for addresses bound at start).
fn first_address(address: &Address) -> io::Result<SocketAddr> {
    address
        .resolve()?
        .first()
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{address} has no address")))
}

/// Starts the remote side: listens for local sidecars on `config.listen`.
pub fn start_remote(config: &RemoteConfig, stats_every: Duration) -> io::Result<Sidecar> {
    let tls = config.tls.load().map_err(invalid_tls)?;
    let listener = mux_runtime::socket::listen(
        first_address(&config.listen)?,
        false,
        &LoopConfig::default().socket,
    )?;
    let local = listener.local_addr()?;
    let access = match &config.rules {
        None => None,
        Some(path) => {
            let rules = Rules::from_file(path)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
            let authenticator: Arc<dyn Authenticator> = if config.tls.tls_client_ca.is_some() {
                Arc::new(CertificateNames)
            } else {
                Arc::new(AllowAll)
            };
            Some(Access {
                authenticator,
                authorizer: Arc::new(rules),
            })
        }
    };
    let role = Role::Remote {
        upstreams: Upstreams::new(config.upstreams.clone()),
        access,
    };
    spawn(
        role,
        &config.connection,
        Some(listener),
        vec![local],
        stats_every,
        (tls, None),
    )
}

/// Starts the local side: listens on each tunnel's port, connects to the remote side.
pub fn start_local(config: &LocalConfig, stats_every: Duration) -> io::Result<Sidecar> {
    let tunnels = config
        .tunnels
        .iter()
        .map(|t| Ok((first_address(&t.listen)?, t.upstream.clone())))
        .collect::<io::Result<Vec<_>>>()?;
    let role = Role::Local {
        remote: config.remote.clone(),
        links: (0..config.connections.clamp(1, 64))
            .map(Link::new)
            .collect(),
        tunnels,
        listeners: HashMap::new(),
        backoff: config.reconnect.backoff(),
    };
    let tls = config.tls.load().map_err(invalid_tls)?;
    let sidecar = spawn(
        role,
        &config.connection,
        None,
        Vec::new(),
        stats_every,
        (None, tls),
    )?;
    if sidecar.addrs.len() != config.tunnels.len() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "cannot listen on every tunnel port (see the log)",
        ));
    }
    Ok(sidecar)
}
