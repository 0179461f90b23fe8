//! [`DirectClient`]: blocking calls made on the caller's own thread, over
//! one connection that no other thread touches.
//!
//! [`Client`](crate::Client) hands every call to its loop thread, which
//! writes it, reads the answer and wakes the caller: two thread wake-ups
//! per call beside the server's. A `DirectClient` drives the `mux-core`
//! state machine itself, on the thread that calls: it writes the request,
//! then blocks in `read` on the socket until the response has arrived, as a
//! raw TCP client or an HTTP/2 client driving its own runtime would. On a
//! machine whose cores are busy, the thread hops it saves are most of a
//! small call's latency.
//!
//! What it gives up for that: one call at a time (`&mut self`), one
//! connection, no pushes (it refuses them with `MAX_CONCURRENT_STREAMS` 0,
//! spec §10.4), no TLS, and no work between calls: a PING or GOAWAY that
//! arrives while it is idle is read at the next call. A connection left
//! idle for a while is checked before use, and one the server closed
//! meanwhile (its idle or keepalive timeout, a restart) is replaced before
//! the request is sent. A request the server did not process (a GOAWAY
//! naming a lower stream, `REFUSED_STREAM`, spec §8.1, §11.3) is retried on
//! a new connection; one that may have run fails with
//! [`CallError::ConnectionLost`], never retried.

mod incoming;
mod link;
mod subscription;
mod upload;

use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_core::rpc::Status;
use mux_runtime::{deadline_after, deadline_within, AddressError, Addresses, IntoAddresses};

use crate::call::CallRequest;
use crate::error::CallError;
use crate::reply::Reply;
use link::{Failure, Link};

pub use incoming::DirectStream;
pub use subscription::DirectSubscription;
pub use upload::{DirectPublisher, DirectUpload};

/// Configures a [`DirectClient`].
#[derive(Clone)]
pub struct DirectBuilder {
    addresses: Result<Addresses, AddressError>,
    connect_timeout: Duration,
    default_timeout: Option<Duration>,
    max_response: usize,
    max_attempts: u32,
    token: Option<String>,
    config: mux_core::Config,
}

impl std::fmt::Debug for DirectBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectBuilder")
            .field("addresses", &self.addresses)
            .field("connect_timeout", &self.connect_timeout)
            .field("default_timeout", &self.default_timeout)
            .field("max_response", &self.max_response)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl DirectBuilder {
    /// A client of the server at `addr` (the forms
    /// [`ClientBuilder::new`](crate::ClientBuilder::new) takes; a list is
    /// tried in order at each connection).
    pub fn new(addr: impl IntoAddresses) -> Self {
        Self {
            addresses: addr.into_addresses(),
            connect_timeout: Duration::from_secs(5),
            default_timeout: None,
            max_response: 64 << 20,
            max_attempts: 3,
            token: None,
            config: mux_core::Config::default(),
        }
    }

    /// The connection's settings and timeouts (spec §5.4, §11), except
    /// three that a client with no thread of its own fixes: no pushes
    /// (`max_concurrent_streams` 0), no keepalive and no idle timeout.
    pub fn connection_config(mut self, config: mux_core::Config) -> Self {
        self.config = config;
        self
    }

    /// How long one connection attempt may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The deadline of calls that set none (default: none).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// The largest response body accepted (default 64 MiB); a larger one
    /// fails with [`CallError::TooLarge`].
    pub fn max_response(mut self, bytes: usize) -> Self {
        self.max_response = bytes;
        self
    }

    /// How many times a request is sent when the server did not process
    /// it (default 3; at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// A bearer token presented with `$auth` on each new connection
    /// (`spec/patterns.md` §8.1).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Connects (and authenticates, with a token) before returning; a
    /// refused token is `PermissionDenied`.
    pub fn connect(self) -> io::Result<DirectClient> {
        let addresses = self
            .addresses
            .clone()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        let mut client = DirectClient {
            options: self,
            addresses,
            link: None,
        };
        match client.ready_link(None) {
            Ok(()) => Ok(client),
            Err(CallError::Rejected { status, message }) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("authentication refused ({}): {message}", status.0),
            )),
            Err(err) => Err(err.into()),
        }
    }
}

/// Blocking calls on the caller's thread, one at a time, over one
/// connection (see the module documentation for what it trades).
#[derive(Debug)]
pub struct DirectClient {
    options: DirectBuilder,
    addresses: Addresses,
    link: Option<Link>,
}

impl DirectClient {
    /// Connects to `addr` with the default settings.
    pub fn connect(addr: impl IntoAddresses) -> io::Result<Self> {
        DirectBuilder::new(addr).connect()
    }

    /// A builder, for settings other than the defaults.
    pub fn builder(addr: impl IntoAddresses) -> DirectBuilder {
        DirectBuilder::new(addr)
    }

    /// Calls `route` with `body` and waits for the reply.
    pub fn call(&mut self, route: &str, body: impl Into<Bytes>) -> Result<Reply, CallError> {
        self.call_with(CallRequest::new(route, body))
    }

    /// Makes `request` and waits for the reply, up to its deadline.
    pub fn call_with(&mut self, request: CallRequest) -> Result<Reply, CallError> {
        let timeout = self.timeout_of(&request);
        let deadline = timeout.and_then(deadline_after);
        let metadata = encode_head(&request, timeout, false)?;
        let limit = self.options.max_response;
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.ready_link(deadline)?;
            let Some(link) = self.link.as_mut() else {
                return Err(CallError::Closed);
            };
            let outcome = link.exchange(metadata.clone(), request.body.clone(), deadline, limit);
            if !link.usable() {
                self.link = None;
            }
            match outcome {
                Ok(reply) => return Ok(reply),
                // Refused (REFUSED_STREAM) on a connection that goes on, or
                // not processed by one going away (dropped above): again.
                Err(Failure::Unprocessed(_)) if attempts < self.options.max_attempts => {}
                Err(Failure::Unprocessed(err) | Failure::Final(err)) => return Err(err),
            }
        }
    }

    /// Subscribes to `pattern` (`spec/patterns.md` §3.2) on this client's
    /// connection, which the subscription then owns and reads on the
    /// caller's thread; waits for the server's answer (up to the default
    /// timeout, or 10 s). A refusal is [`CallError::Rejected`].
    pub fn subscribe(mut self, pattern: &str) -> Result<DirectSubscription, CallError> {
        self.ready_link(None)?;
        let link = self.link.take().ok_or(CallError::Closed)?;
        let wait = self
            .options
            .default_timeout
            .unwrap_or(incoming::ANSWER_WAIT);
        DirectSubscription::open(
            link,
            pattern,
            self.options.max_response,
            deadline_within(wait),
        )
    }

    /// Starts a call whose body is written piece by piece on the caller's
    /// thread (`spec/patterns.md` §1.7); the connection is lent to the
    /// upload until it ends. `request`'s body, if any, is not sent: write
    /// the body through the upload.
    pub fn upload(&mut self, request: CallRequest) -> Result<DirectUpload<'_>, CallError> {
        let timeout = self.timeout_of(&request);
        self.ready_link(timeout.and_then(deadline_after))?;
        let link = self.link.take().ok_or(CallError::Closed)?;
        DirectUpload::open(self, link, &request)
    }

    /// Makes `request` and reads the answer as a stream of messages on the
    /// caller's thread (`spec/patterns.md` §2): a download, an event feed.
    /// Waits for the answer's head (up to the request's deadline, or the
    /// default timeout, or 10 s); a refusal is [`CallError::Rejected`]. The
    /// connection is lent to the stream until it ends.
    pub fn open_stream(&mut self, request: CallRequest) -> Result<DirectStream<'_>, CallError> {
        let timeout = self.timeout_of(&request);
        let metadata = encode_head(&request, timeout, false)?;
        let deadline = deadline_within(timeout.unwrap_or(incoming::ANSWER_WAIT));
        self.ready_link(Some(deadline))?;
        let link = self.link.take().ok_or(CallError::Closed)?;
        let limit = self.options.max_response;
        match incoming::Incoming::open(link, metadata, request.body, limit, deadline) {
            Ok(incoming) => Ok(DirectStream::new(self, incoming)),
            Err((err, link)) => {
                self.take_back(*link);
                Err(err)
            }
        }
    }

    /// Opens a publishing stream (`spec/patterns.md` §3.4) on this
    /// client's connection, which the publisher then owns: each
    /// publication is written at once on the caller's thread.
    pub fn publisher(mut self) -> Result<DirectPublisher, CallError> {
        self.ready_link(None)?;
        let link = self.link.take().ok_or(CallError::Closed)?;
        let timeout = self.options.default_timeout;
        DirectPublisher::open(link, timeout)
    }

    fn max_response(&self) -> usize {
        self.options.max_response
    }

    /// The deadline `request` asks for, or the client's default.
    fn timeout_of(&self, request: &CallRequest) -> Option<Duration> {
        request.timeout.or(self.options.default_timeout)
    }

    /// Takes back the connection an upload borrowed, unless it broke.
    fn take_back(&mut self, link: Link) {
        if link.usable() {
            self.link = Some(link);
        }
    }

    /// Makes sure there is a connection: made (and authenticated) if there
    /// is none or the one there is ended while idle.
    fn ready_link(&mut self, deadline: Option<Instant>) -> Result<(), CallError> {
        if let Some(link) = self.link.as_mut() {
            link.check_if_idle();
            if !link.usable() {
                self.link = None;
            }
        }
        if self.link.is_none() {
            let mut link = self.open_link(deadline)?;
            if let Some(token) = self.options.token.clone() {
                authenticate(&mut link, &token, deadline)?;
            }
            self.link = Some(link);
        }
        Ok(())
    }

    /// Connects to the first address that answers and completes the
    /// handshake (spec §3): a peer that does not speak mux fails here.
    fn open_link(&mut self, deadline: Option<Instant>) -> Result<Link, CallError> {
        let mut last_error = None;
        let addresses = self.addresses.clone();
        for address in addresses.entries() {
            let resolved = match address.resolve() {
                Ok(resolved) => resolved,
                Err(err) => {
                    last_error = Some(format!("{address}: {err}"));
                    continue;
                }
            };
            for addr in resolved {
                let mut timeout = self.options.connect_timeout;
                if let Some(deadline) = deadline {
                    timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
                }
                if timeout.is_zero() {
                    return Err(CallError::DeadlineExceeded);
                }
                let mut link = match Link::connect(addr, timeout, self.options.config.clone()) {
                    Ok(link) => link,
                    Err(err) => {
                        last_error = Some(format!("{addr}: {err}"));
                        continue;
                    }
                };
                let handshake_deadline = deadline_within(timeout);
                match link.handshake(handshake_deadline) {
                    Ok(()) => return Ok(link),
                    Err(err) => last_error = Some(format!("{addr}: {err}")),
                }
            }
        }
        Err(CallError::Connect(
            last_error.unwrap_or_else(|| "no address to connect to".into()),
        ))
    }
}

/// Presents `token` with `$auth` on a new connection.
fn authenticate(link: &mut Link, token: &str, deadline: Option<Instant>) -> Result<(), CallError> {
    let metadata = encode_head(&CallRequest::auth(token), None, false)?;
    let reply = link
        .exchange(metadata, Bytes::new(), deadline, 4096)
        .map_err(CallError::from)?;
    if reply.status == Status::OK {
        return Ok(());
    }
    Err(CallError::Rejected {
        status: reply.status,
        message: String::from_utf8_lossy(&reply.body).into_owned(),
    })
}

/// A request's head as the metadata of its OPEN frame; `upload` when the
/// body is streamed (its length is then the one the caller declared).
fn encode_head(
    request: &CallRequest,
    timeout: Option<Duration>,
    upload: bool,
) -> Result<mux_core::frame::Metadata, CallError> {
    request
        .head(timeout, upload)
        .and_then(|head| head.encode())
        .map_err(|err| CallError::Malformed(err.to_string()))
}
