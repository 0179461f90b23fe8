//! Cases against a server: the runner is the client, one connection per
//! case. Sections are those of `spec/mux-v1.md`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::case::{Case, Step};
use crate::common_cases::{self, Endpoint};
use crate::peer::Peer;
use crate::vectors::Vectors;

mod floods;
mod flow_control;
mod frames;
mod management;
mod preface;
mod streams;

/// The server under test and how long to wait.
#[derive(Debug, Clone)]
pub struct Server {
    pub addr: SocketAddr,
    /// The longest wait for an answer.
    pub timeout: Duration,
    /// How long to wait for the server's own handshake and SETTINGS timers
    /// (§11.4, §5.4.2.4; RECOMMENDED 10 seconds).
    pub timers: Duration,
    /// How long to wait for its idle timeout and keepalive (§11.2); `None`
    /// skips those cases.
    pub idle: Option<Duration>,
}

/// The route the runner's streams ask for: no server has it, every server
/// answers it (with an error status).
const ROUTE: &str = "mux-conformance";

impl Server {
    fn connect(&self) -> Step<Peer> {
        Peer::connect(self.addr, self.timeout)
    }
}

impl Endpoint for Server {
    fn session(&self) -> Step<Peer> {
        let mut peer = self.connect()?;
        peer.handshake(&[])?;
        Ok(peer)
    }
}

/// Concatenates frames.
fn join(frames: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    frames.into_iter().flatten().collect()
}

/// Client stream IDs 1, 3, 5…
fn client_stream(n: u32) -> u32 {
    2 * n + 1
}

pub fn cases(vectors: &Vectors) -> Vec<Case<Server>> {
    let mut cases = preface::cases(vectors);
    cases.extend(frames::header_cases());
    cases.extend(common_cases::cases(vectors));
    cases.extend(frames::type_cases());
    cases.extend(streams::cases());
    cases.extend(flow_control::cases());
    cases.extend(management::cases());
    cases.extend(floods::cases());
    cases
}
