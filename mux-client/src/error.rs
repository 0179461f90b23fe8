//! [`CallError`]: why a call, or a stream pattern, failed.
//!
//! A reset carries the peer's error code (spec §8); statuses are
//! `spec/patterns.md` §1.3's.

use std::io;

use mux_core::rpc::Status;
use mux_core::ErrorCode;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No connection could be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection ended while the call was in flight; it may or may not have run.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The server reset the call's stream.
    #[error("the server reset the call with {0}")]
    Reset(ErrorCode),
    /// The deadline passed first.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The caller cancelled it.
    #[error("cancelled")]
    Cancelled,
    /// The response was larger than the client's limit.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The request or response did not follow the format.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Too many calls are waiting for a connection.
    #[error("too many calls waiting for a connection")]
    Busy,
    /// The client is shut down.
    #[error("the client is shut down")]
    Closed,
    /// The server answered with a failure status (a stream pattern's request
    /// was refused, or an upload's body before it ended).
    #[error("the server refused with status {}: {message}", status.0)]
    Rejected {
        /// The status.
        status: Status,
        /// The server's message.
        message: String,
    },
    /// The server answered with success before the upload's body ended; the
    /// rest is not sent ([`Upload::finish`](crate::Upload::finish) still
    /// gives the call and its reply).
    #[error("the server answered before the upload ended")]
    AnsweredEarly,
    /// A body did not match its declared length (`spec/patterns.md` §1.8):
    /// the response's, when bytes were lost on the way (never returned as a
    /// success), or the upload's, when the caller wrote more or fewer bytes
    /// than it declared with [`CallRequest::length`](crate::CallRequest::length).
    #[error("{0}")]
    BodyLength(#[from] mux_core::rpc::LengthMismatch),
}

impl From<CallError> for io::Error {
    fn from(err: CallError) -> Self {
        let kind = match err {
            CallError::Connect(_) => io::ErrorKind::ConnectionRefused,
            CallError::ConnectionLost(_) | CallError::Reset(_) => io::ErrorKind::ConnectionReset,
            CallError::DeadlineExceeded => io::ErrorKind::TimedOut,
            CallError::Cancelled | CallError::Closed | CallError::AnsweredEarly => {
                io::ErrorKind::Interrupted
            }
            CallError::Busy => io::ErrorKind::WouldBlock,
            CallError::TooLarge(_) | CallError::Malformed(_) => io::ErrorKind::InvalidData,
            CallError::BodyLength(_) => io::ErrorKind::UnexpectedEof,
            CallError::Rejected { .. } => io::ErrorKind::Other,
        };
        Self::new(kind, err)
    }
}
