//! [`Reply`]: a server's answer to a call (`spec/patterns.md` §1.2).

use bytes::Bytes;
use mux_core::frame::Metadata;
use mux_core::rpc::Status;

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status.
    pub status: Status,
    /// The server's metadata.
    pub metadata: Metadata,
    /// The body.
    pub body: Bytes,
}
