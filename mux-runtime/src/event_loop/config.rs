//! [`LoopConfig`]: the protocol configuration, socket options and
//! connection cap of one loop, and its TLS.

use mux_core::Config;

use super::scheduling::ThreadScheduling;
use super::spin::SpinPolicy;
use crate::socket::SocketOptions;
use crate::tls::{TlsClient, TlsServer};

/// Loop configuration.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Protocol configuration of every connection.
    pub conn: Config,
    /// Socket options.
    pub socket: SocketOptions,
    /// Connections this loop holds at most; the listener stops accepting at
    /// this count and resumes below it.
    pub max_connections: usize,
    /// When the loop polls without sleeping before it blocks.
    pub spin: SpinPolicy,
    /// The scheduling class the loop's thread asks for when the loop starts.
    pub scheduling: ThreadScheduling,
    /// TLS on the connections this loop accepts (`None`: plaintext).
    pub tls_server: Option<TlsServer>,
    /// TLS on the connections this loop makes (`None`: plaintext).
    pub tls_client: Option<TlsClient>,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            conn: Config::default(),
            socket: SocketOptions::default(),
            max_connections: 10_000,
            spin: SpinPolicy::default(),
            scheduling: ThreadScheduling::default(),
            tls_server: None,
            tls_client: None,
        }
    }
}
