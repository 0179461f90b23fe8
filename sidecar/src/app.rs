//! The sidecar's logic on its event loop, for both sides:
//!
//! - the **local** side listens on plain TCP ports; each accepted connection
//!   becomes a stream, opened over one mux connection to the remote side
//!   with its upstream's name in the metadata;
//! - the **remote** side accepts mux connections; each stream names an
//!   upstream, which it connects to over plain TCP.
//!
//! Bytes then flow through a [`Pipe`] both ways. A log line records every
//! tunnelled connection (open, close, bytes each way, duration) and the
//! counters are logged periodically.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mux_core::frame::Metadata;
use mux_core::{ErrorCode, Event, StreamId};
use mux_runtime::{Address, Addresses, App, ConnKey, Ctx, LoopError, LoopHandle, PlainKey};
use mux_server::auth::{Authenticator, Credentials};
use mux_server::authz::{Action, Authorizer};

use crate::pipe::{Ending, Pipe};
use crate::stats::Stats;
use crate::upstreams::{Target, Upstreams};
use crate::warnings::Warnings;

/// Metadata of a tunnel stream: which upstream to connect to.
pub const UPSTREAM: &[u8] = b"upstream";
/// The route of tunnel streams.
pub const TUNNEL_ROUTE: &[u8] = b"$tunnel";
/// The route of a stats request to the remote side: answered 200 with the
/// counters as text (`Stats::text`), e.g. `mux-client call '$stats'`.
pub const STATS_ROUTE: &[u8] = b"$stats";

/// Commands from other threads.
#[derive(Debug)]
pub(crate) enum Command {
    Shutdown,
    /// A host name resolved off the loop: an upstream's (remote side), or
    /// the remote sidecar's for link `n` (local side).
    Resolved {
        target: Resolving,
        outcome: std::io::Result<Vec<SocketAddr>>,
    },
}

/// What a name was resolved for.
#[derive(Debug)]
pub(crate) enum Resolving {
    /// The remote sidecar, for this link of the local side.
    Remote(usize),
    /// This upstream of the remote side.
    Upstream(String),
}

/// Timer tokens; a link's reconnect timer carries the link's number.
const STATS_TIMER: u64 = 1;
const RESOLVE_TIMER: u64 = 3;
const RECONNECT_TIMER: u64 = 1 << 32;

/// One mux connection of the local side to the remote one.
#[derive(Debug, Default)]
pub(crate) struct Link {
    conn: Option<ConnKey>,
    ready: bool,
    /// Failed attempts in a row (drives the backoff).
    failures: u32,
    /// The entry of the remote address list in use (the next is tried when
    /// an attempt fails); link `n` starts at entry `n`.
    entry: usize,
    /// Tunnels open on it (new ones go to the least loaded ready link).
    tunnels: usize,
}

impl Link {
    /// Link number `n`.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            entry: n,
            ..Self::default()
        }
    }
}

/// What this side does.
#[derive(Debug)]
pub(crate) enum Role {
    Local {
        /// The remote sidecar's addresses.
        remote: Addresses,
        /// The mux connections to it (tunnels spread over them).
        links: Vec<Link>,
        /// Listener number → (address to bind, upstream name); bound at start.
        tunnels: Vec<(SocketAddr, String)>,
        listeners: HashMap<usize, String>,
        backoff: mux_runtime::Backoff,
    },
    Remote {
        upstreams: Upstreams,
        /// Who may tunnel where; `None`: every local, every upstream.
        access: Option<Access>,
    },
}

/// The remote side's gate: each local's identity (from its client
/// certificate, or `anonymous` without mutual TLS) and the upstreams it
/// may reach (`spec/patterns.md` §8.4, action "tunnel").
#[derive(Clone)]
pub(crate) struct Access {
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Access")
    }
}

impl Access {
    /// Why `action` is refused to the peer of `key`, if it is.
    fn refusal(&self, ctx: &Ctx<'_>, key: ConnKey, action: &Action<'_>) -> Option<String> {
        let names = ctx.peer_certificate_names(key);
        let credentials = Credentials {
            peer: ctx.peer_addr(key),
            certificate_names: &names,
            token: None,
        };
        match self.authenticator.authenticate(&credentials) {
            Err(err) => Some(err.to_string()),
            Ok(identity) if !self.authorizer.allows(&identity, action) => {
                Some(format!("{identity} may not {action}"))
            }
            Ok(_) => None,
        }
    }
}

pub(crate) struct SidecarApp {
    pub(crate) role: Role,
    pipes: HashMap<PlainKey, Pipe>,
    by_stream: HashMap<(ConnKey, StreamId), PlainKey>,
    stats: Arc<Stats>,
    stats_every: Duration,
    buf: Vec<u8>,
    closing: bool,
    /// Addresses actually bound by the local side (port 0 resolved), for the caller.
    pub(crate) bound: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
    /// The last counters line logged (a line is logged only when it changes).
    last_stats: Option<String>,
    /// This loop's own handle, for name resolutions to report back.
    handle: Option<LoopHandle<Command>>,
    /// Warnings of this stats period, repeats summed up.
    warnings: Warnings,
}

impl std::fmt::Debug for SidecarApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarApp")
            .field("role", &self.role)
            .field("pipes", &self.pipes.len())
            .finish()
    }
}

impl SidecarApp {
    pub(crate) fn new(role: Role, stats: Arc<Stats>, stats_every: Duration) -> Self {
        Self {
            role,
            pipes: HashMap::new(),
            by_stream: HashMap::new(),
            stats,
            stats_every,
            buf: vec![0; 64 * 1024],
            closing: false,
            bound: Arc::default(),
            last_stats: None,
            warnings: Warnings::default(),
            handle: None,
        }
    }

    /// Where name resolutions report back: this loop's queue.
    pub(crate) fn set_handle(&mut self, handle: LoopHandle<Command>) {
        self.handle = Some(handle);
    }

    /// Remote side: a connect to the upstream `name` failed.
    fn upstream_failed(&mut self, name: &str) {
        if let Role::Remote { upstreams, .. } = &mut self.role {
            upstreams.failed(name, self.handle.as_ref());
        }
    }

    fn insert(&mut self, pipe: Pipe) {
        self.stats.opened.fetch_add(1, Ordering::Relaxed);
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        log::debug!("tunnel open: {} (stream {})", pipe.name, pipe.stream);
        self.by_stream.insert((pipe.conn, pipe.stream), pipe.plain);
        self.pipes.insert(pipe.plain, pipe);
    }

    fn finish(&mut self, ctx: &mut Ctx<'_>, plain: PlainKey, ending: Ending) {
        let Some(pipe) = self.pipes.remove(&plain) else {
            return;
        };
        self.by_stream.remove(&(pipe.conn, pipe.stream));
        self.tunnel_ended(pipe.conn);
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
        let (up, down) = pipe.client_bytes();
        self.stats.bytes_up.fetch_add(up, Ordering::Relaxed);
        self.stats.bytes_down.fetch_add(down, Ordering::Relaxed);
        let took = pipe.opened.elapsed();
        match ending {
            Ending::Clean => {
                ctx.plain_close(plain, false);
                log::debug!(
                    "tunnel close: {} (stream {}): {} bytes up, {} bytes down, {:.3} s",
                    pipe.name,
                    pipe.stream,
                    up,
                    down,
                    took.as_secs_f64()
                );
            }
            Ending::Failed(why) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                pipe.abort(ctx, ErrorCode::CANCEL);
                log::debug!(
                    "tunnel failed: {} (stream {}): {why}; {} bytes up, {} bytes down, {:.3} s",
                    pipe.name,
                    pipe.stream,
                    up,
                    down,
                    took.as_secs_f64()
                );
                self.warnings
                    .warn(format!("tunnel failed: {}: {why}", pipe.name));
            }
        }
    }

    /// Runs both pumps of a pipe and ends it if it is done or failed.
    fn pump(&mut self, ctx: &mut Ctx<'_>, plain: PlainKey, up: bool, down: bool) {
        let Some(pipe) = self.pipes.get_mut(&plain) else {
            return;
        };
        let mut result = Ok(());
        if down {
            result = pipe.pump_down(ctx);
        }
        if up && result.is_ok() {
            result = pipe.pump_up(ctx, &mut self.buf);
        }
        match result {
            Err(ending) => self.finish(ctx, plain, ending),
            Ok(()) if pipe.is_finished() => self.finish(ctx, plain, Ending::Clean),
            Ok(()) => {}
        }
    }

    /// Local side: link `n`'s next attempt to reach the remote sidecar, at
    /// its entry of the address list (a host name is resolved first, off
    /// the loop; the attempt goes on in [`SidecarApp::remote_resolved`]).
    fn connect_remote(&mut self, ctx: &mut Ctx<'_>, n: usize) {
        let Role::Local { remote, links, .. } = &self.role else {
            return;
        };
        let Some(link) = links.get(n) else {
            return;
        };
        match remote.cycle(link.entry).clone() {
            Address::Socket(addr) => self.connect_remote_at(ctx, n, addr, None),
            name => match self.handle.clone() {
                Some(handle) => mux_runtime::resolve_in_background(&name, move |outcome| {
                    let _ = handle.send(Command::Resolved {
                        target: Resolving::Remote(n),
                        outcome,
                    });
                }),
                None => {
                    self.remote_failed(ctx, n, format!("cannot resolve {name}: no loop handle"))
                }
            },
        }
    }

    /// Local side: the remote sidecar's name resolved (or not) for link `n`.
    fn remote_resolved(
        &mut self,
        ctx: &mut Ctx<'_>,
        n: usize,
        outcome: std::io::Result<Vec<SocketAddr>>,
    ) {
        let Role::Local { remote, links, .. } = &self.role else {
            return;
        };
        let Some(link) = links.get(n) else {
            return;
        };
        if link.conn.is_some() || self.closing {
            return;
        }
        let name = remote.cycle(link.entry).clone();
        match outcome.as_deref().map(<[SocketAddr]>::first) {
            Ok(Some(addr)) => {
                self.connect_remote_at(ctx, n, *addr, name.host_name().map(str::to_owned))
            }
            Ok(None) => self.remote_failed(ctx, n, format!("{name} has no address")),
            Err(err) => self.remote_failed(ctx, n, format!("cannot resolve {name}: {err}")),
        }
    }

    fn connect_remote_at(
        &mut self,
        ctx: &mut Ctx<'_>,
        n: usize,
        addr: SocketAddr,
        host: Option<String>,
    ) {
        let Role::Local { links, .. } = &mut self.role else {
            return;
        };
        let Some(link) = links.get_mut(n) else {
            return;
        };
        link.ready = false;
        match ctx.connect_named(addr, host.as_deref()) {
            Ok(key) => link.conn = Some(key),
            Err(err) => self.remote_failed(
                ctx,
                n,
                format!("cannot connect to the remote sidecar {addr}: {err}"),
            ),
        }
    }

    /// Local side: link `n`'s attempt failed; the next entry of the list is
    /// tried after the backoff.
    fn remote_failed(&mut self, ctx: &mut Ctx<'_>, n: usize, message: String) {
        let Role::Local { links, backoff, .. } = &mut self.role else {
            return;
        };
        let Some(link) = links.get_mut(n) else {
            return;
        };
        self.warnings.warn(message);
        link.conn = None;
        link.failures += 1;
        link.entry = link.entry.wrapping_add(1);
        let delay = backoff.delay(link.failures);
        ctx.set_timer(ctx.now + delay, RECONNECT_TIMER | n as u64);
    }

    /// Local side: a tunnel on `conn` ended (for spreading new ones).
    fn tunnel_ended(&mut self, conn: ConnKey) {
        if let Role::Local { links, .. } = &mut self.role {
            if let Some(link) = links.iter_mut().find(|l| l.conn == Some(conn)) {
                link.tunnels = link.tunnels.saturating_sub(1);
            }
        }
    }

    /// Local side: ready links, counted for the stats.
    fn publish_ready_links(&self) {
        if let Role::Local { links, .. } = &self.role {
            let ready = links.iter().filter(|l| l.ready).count();
            self.stats.connected.store(ready as u64, Ordering::Relaxed);
        }
    }

    /// Local side: a TCP client arrived on a tunnel's port.
    fn accepted(&mut self, ctx: &mut Ctx<'_>, listener: usize, plain: PlainKey) {
        let Role::Local {
            listeners, links, ..
        } = &mut self.role
        else {
            ctx.plain_close(plain, true);
            return;
        };
        let Some(upstream) = listeners.get(&listener).cloned() else {
            ctx.plain_close(plain, true);
            return;
        };
        // The least loaded ready link carries the tunnel.
        let link = links
            .iter_mut()
            .filter(|l| l.ready && l.conn.is_some())
            .min_by_key(|l| l.tunnels);
        let Some(key) = link.and_then(|link| {
            link.tunnels += 1;
            link.conn
        }) else {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            self.warnings.warn(format!(
                "tunnel refused: {upstream}: the remote sidecar is not connected"
            ));
            ctx.plain_close(plain, true);
            return;
        };
        let metadata = Metadata::from_pairs([
            (mux_core::rpc::ROUTE, TUNNEL_ROUTE),
            (UPSTREAM, upstream.as_bytes()),
        ])
        .unwrap_or_default();
        let opened = ctx.conn(key).map(|c| c.open(metadata, false));
        match opened {
            Some(Ok(stream)) => {
                self.insert(Pipe::new(plain, key, stream, upstream, false));
                self.pump(ctx, plain, true, false);
            }
            other => {
                self.tunnel_ended(key);
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.warnings.warn(format!(
                    "tunnel refused: {upstream}: cannot open a stream: {other:?}"
                ));
                ctx.plain_close(plain, true);
            }
        }
    }

    /// Remote side: a stream arrived; connect to its upstream.
    fn stream_opened(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        stream: StreamId,
        metadata: &Metadata,
    ) {
        if metadata.get(mux_core::rpc::ROUTE) == Some(STATS_ROUTE) {
            return self.answer_stats(ctx, key, stream);
        }
        let Role::Remote { upstreams, access } = &self.role else {
            return;
        };
        let name = metadata
            .get(UPSTREAM)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let route_ok = metadata.get(mux_core::rpc::ROUTE) == Some(TUNNEL_ROUTE);
        let target = upstreams.target(&name);
        let tunnel = Action::Tunnel(&name);
        if let Some(why) = access.as_ref().and_then(|a| a.refusal(ctx, key, &tunnel)) {
            // Refused by policy: not a retryable refusal, so CANCEL.
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            self.warnings.warn(format!("tunnel refused: {why}"));
            if let Some(conn) = ctx.conn(key) {
                let _ = conn.reset(stream, ErrorCode::CANCEL);
            }
            return;
        }
        let plain = match (route_ok, target) {
            (true, Target::At(addr)) => ctx.connect_plain(addr),
            (true, Target::Unresolved(why)) => {
                Err(std::io::Error::new(std::io::ErrorKind::NotFound, why))
            }
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no upstream named {name:?}"),
            )),
        };
        match plain {
            Ok(plain) => self.insert(Pipe::new(plain, key, stream, name, true)),
            Err(err) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.warnings.warn(format!("tunnel refused: {name}: {err}"));
                if let Some(conn) = ctx.conn(key) {
                    let _ = conn.reset(stream, ErrorCode::REFUSED_STREAM);
                }
            }
        }
    }

    /// Logs the counters, with the bytes of tunnels still open, when they
    /// changed since the last line.
    /// Bytes of the tunnels still open, up and down.
    fn live_bytes(&self) -> (u64, u64) {
        self.pipes
            .values()
            .map(Pipe::client_bytes)
            .fold((0, 0), |(u, d), (up, down)| (u + up, d + down))
    }

    /// Answers a stats request on `stream` with the counters; with rules,
    /// only to identities they allow to call `$stats` (else 403).
    fn answer_stats(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, stream: StreamId) {
        let route = String::from_utf8_lossy(STATS_ROUTE);
        let refusal = match &self.role {
            Role::Remote {
                access: Some(access),
                ..
            } => access.refusal(ctx, key, &Action::Call(&route)),
            _ => None,
        };
        let (status, text) = match refusal {
            Some(why) => (mux_core::rpc::Status::FORBIDDEN, why),
            None => (
                mux_core::rpc::Status::OK,
                self.stats.text(self.live_bytes()),
            ),
        };
        let head = mux_core::rpc::ResponseHead {
            length: Some(text.len() as u64),
            ..mux_core::rpc::ResponseHead::new(status)
        };
        if let Some(conn) = ctx.conn(key) {
            let sent = conn
                .send(stream, head.encode(), true, false)
                .and_then(|_| conn.send(stream, bytes::Bytes::from(text), true, true));
            if sent.is_err() {
                let _ = conn.reset(stream, ErrorCode::INTERNAL_ERROR);
            }
        }
    }

    fn log_stats(&mut self) {
        let (live_up, live_down) = self.live_bytes();
        let line = format!(
            "{} ({live_up} bytes up, {live_down} bytes down in open tunnels)",
            self.stats.line()
        );
        if self.last_stats.as_deref() != Some(line.as_str()) {
            log::info!("{line}");
            self.last_stats = Some(line);
        }
        self.warnings.summarize(self.stats_every);
    }
}

impl App for SidecarApp {
    type Command = Command;

    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        ctx.set_timer(ctx.now + self.stats_every, STATS_TIMER);
        if let Role::Remote { .. } = self.role {
            ctx.set_timer(ctx.now + crate::upstreams::REFRESH, RESOLVE_TIMER);
        }
        if let Role::Local {
            tunnels, listeners, ..
        } = &mut self.role
        {
            let mut bound = Vec::new();
            for (addr, upstream) in tunnels.iter() {
                match ctx.listen_plain(*addr) {
                    Ok((listener, local)) => {
                        log::info!("tunnel {local} → upstream {upstream}");
                        listeners.insert(listener, upstream.clone());
                        bound.push(local);
                    }
                    Err(err) => log::error!("cannot listen on {addr}: {err}"),
                }
            }
            if let Ok(mut slot) = self.bound.lock() {
                *slot = bound;
            }
            let count = match &self.role {
                Role::Local { links, .. } => links.len(),
                Role::Remote { .. } => 0,
            };
            for n in 0..count {
                self.connect_remote(ctx, n);
            }
        }
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, event: Event) {
        match event {
            Event::Connected => {
                if let Role::Local { links, .. } = &mut self.role {
                    if let Some(link) = links.iter_mut().find(|l| l.conn == Some(key)) {
                        link.ready = true;
                        link.failures = 0;
                        log::info!("connected to the remote sidecar");
                    }
                }
                self.publish_ready_links();
            }
            Event::StreamOpened { id, metadata, .. } => self.stream_opened(ctx, key, id, &metadata),
            Event::Readable { id } => {
                if let Some(plain) = self.by_stream.get(&(key, id)).copied() {
                    self.pump(ctx, plain, false, true);
                }
            }
            Event::Writable { id } => {
                if let Some(plain) = self.by_stream.get(&(key, id)).copied() {
                    self.pump(ctx, plain, true, false);
                }
            }
            Event::StreamReset { id, code } => {
                if let Some(plain) = self.by_stream.get(&(key, id)).copied() {
                    // The far side failed (an upstream that refused, say): close ours at once.
                    let why = refusal_reason(code);
                    self.finish(ctx, plain, Ending::Failed(why));
                }
            }
            _ => {}
        }
    }

    fn on_closed(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, error: Option<LoopError>) {
        let lost: Vec<PlainKey> = self
            .pipes
            .values()
            .filter(|p| p.conn == key)
            .map(|p| p.plain)
            .collect();
        let why = error.map_or_else(|| "mux connection closed".to_owned(), |e| e.to_string());
        for plain in lost {
            self.finish(ctx, plain, Ending::Failed(why.clone()));
        }
        let Role::Local { links, backoff, .. } = &mut self.role else {
            return;
        };
        let Some(n) = links.iter().position(|l| l.conn == Some(key)) else {
            return;
        };
        let Some(link) = links.get_mut(n) else {
            return;
        };
        link.conn = None;
        link.tunnels = 0;
        let was_ready = std::mem::take(&mut link.ready);
        if self.closing {
            return self.publish_ready_links();
        }
        if was_ready {
            // A working connection ended: the same entry first.
            link.failures += 1;
            let delay = backoff.delay(link.failures);
            log::debug!("remote sidecar connection lost ({why}); reconnecting in {delay:?}");
            self.warnings
                .warn(format!("remote sidecar connection lost: {why}"));
            ctx.set_timer(ctx.now + delay, RECONNECT_TIMER | n as u64);
        } else {
            self.remote_failed(ctx, n, format!("remote sidecar unreachable: {why}"));
        }
        self.publish_ready_links();
    }

    fn on_command(&mut self, ctx: &mut Ctx<'_>, command: Command) {
        match command {
            Command::Shutdown => {
                self.closing = true;
                let plains: Vec<PlainKey> = self.pipes.keys().copied().collect();
                for plain in plains {
                    self.finish(ctx, plain, Ending::Failed("sidecar shutting down".into()));
                }
                ctx.close_all(ErrorCode::NO_ERROR, "sidecar shutting down");
                self.log_stats();
            }
            Command::Resolved {
                target: Resolving::Remote(n),
                outcome,
            } => self.remote_resolved(ctx, n, outcome),
            Command::Resolved {
                target: Resolving::Upstream(name),
                outcome,
            } => {
                if let Role::Remote { upstreams, .. } = &mut self.role {
                    upstreams.resolved(name, outcome);
                }
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, token: u64) {
        match token {
            STATS_TIMER => {
                self.log_stats();
                if !self.closing {
                    ctx.set_timer(ctx.now + self.stats_every, STATS_TIMER);
                }
            }
            _ if token & RECONNECT_TIMER != 0 && !self.closing => {
                self.connect_remote(ctx, (token & !RECONNECT_TIMER) as usize);
            }
            RESOLVE_TIMER if !self.closing => {
                if let (Role::Remote { upstreams, .. }, Some(handle)) = (&self.role, &self.handle) {
                    upstreams.refresh_all(handle);
                }
                ctx.set_timer(ctx.now + crate::upstreams::REFRESH, RESOLVE_TIMER);
            }
            _ => {}
        }
    }

    fn on_plain(&mut self, ctx: &mut Ctx<'_>, plain: PlainKey, readable: bool, writable: bool) {
        let Some(pipe) = self.pipes.get_mut(&plain) else {
            return;
        };
        if pipe.connecting {
            if !writable && !readable {
                return;
            }
            match ctx.plain_connected(plain) {
                Ok(true) => pipe.connecting = false,
                Ok(false) => return,
                Err(err) => {
                    // The upstream refused: tell the local side at once (spec: REFUSED_STREAM).
                    let (conn, stream, name) = (pipe.conn, pipe.stream, pipe.name.clone());
                    self.pipes.remove(&plain);
                    self.by_stream.remove(&(conn, stream));
                    self.stats.active.fetch_sub(1, Ordering::Relaxed);
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    self.warnings
                        .warn(format!("tunnel failed: {name}: upstream connect: {err}"));
                    if let Some(c) = ctx.conn(conn) {
                        let _ = c.reset(stream, ErrorCode::REFUSED_STREAM);
                    }
                    ctx.plain_close(plain, true);
                    // A named upstream may have moved: the next address,
                    // and look it up again.
                    self.upstream_failed(&name);
                    return;
                }
            }
            return self.pump(ctx, plain, true, true);
        }
        self.pump(ctx, plain, readable, writable);
    }

    fn on_plain_accept(&mut self, ctx: &mut Ctx<'_>, listener: usize, plain: PlainKey) {
        self.accepted(ctx, listener, plain);
    }

    fn is_done(&self, ctx: &Ctx<'_>) -> bool {
        self.closing && ctx.connection_count() == 0
    }
}

/// What a RESET from the other side means for a tunnel, in words: the remote
/// refuses a tunnel it could not connect (`REFUSED_STREAM`: no upstream of
/// that name, or the upstream refused the connection) or that its rules do
/// not allow (`CANCEL`); its own log has the details.
fn refusal_reason(code: ErrorCode) -> String {
    let why = match code {
        ErrorCode::REFUSED_STREAM => {
            "the remote side has no such upstream, or the upstream refused the connection"
        }
        ErrorCode::CANCEL => "the remote side's rules do not allow it, or it was cancelled",
        _ => "the other side failed",
    };
    format!("{why} ({code}; the remote's log says more)")
}
