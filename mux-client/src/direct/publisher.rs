//! [`DirectPublisher`]: a publishing stream (`spec/patterns.md` §3.4)
//! written on the caller's thread. Each publication is written to the
//! socket at once, with no thread between the caller and the kernel; the
//! caller blocks only when flow control has no credit left, reading the
//! server's WINDOW_UPDATEs itself. The server answers once, at the end,
//! with how many publications it accepted.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_core::patterns::{self, FeedMessage};
use mux_core::{ErrorCode, StreamId};

use super::link::{Link, Until};
use crate::call::CallRequest;
use crate::error::CallError;
use crate::reader::StreamReader;
use crate::reopen::reply_ok;
use crate::reply::Reply;

/// The longest answer accepted at the end of the stream.
const MAX_ANSWER: usize = 64 * 1024;

/// A publishing stream that owns its connection and writes on the caller's
/// thread (see [`DirectClient::publisher`](super::DirectClient::publisher)).
/// Dropping it without [`finish`](Self::finish) cancels the stream.
#[derive(Debug)]
pub struct DirectPublisher {
    link: Link,
    id: StreamId,
    reader: StreamReader,
    /// Bounds every wait for credit or for the answer.
    timeout: Option<Duration>,
    /// Set once the stream is over (finished, failed or answered early).
    over: bool,
    scratch: Box<[u8]>,
}

impl DirectPublisher {
    /// Opens the publishing stream on `link`.
    pub(super) fn open(
        mut link: Link,
        timeout: Option<Duration>,
        scratch: Box<[u8]>,
    ) -> Result<Self, CallError> {
        let metadata = CallRequest::new(patterns::PUBLISH_STREAM, "")
            .head(None, true)
            .and_then(|head| head.encode())
            .map_err(|err| CallError::Malformed(err.to_string()))?;
        let id = link.open(metadata, false).map_err(CallError::from)?;
        Ok(Self {
            link,
            id,
            reader: StreamReader::call(),
            timeout,
            over: false,
            scratch,
        })
    }

    /// Publishes `payload` on `topic`: written to the socket before this
    /// returns, blocking only while flow control has no credit (up to the
    /// client's default timeout, if it set one).
    pub fn publish(&mut self, topic: &str, payload: impl Into<Bytes>) -> Result<(), CallError> {
        patterns::check_topic(topic).map_err(|e| CallError::Malformed(e.to_string()))?;
        if self.over {
            return Err(CallError::Closed);
        }
        let mut message = FeedMessage::Publication {
            topic: topic.to_owned(),
            payload: payload.into(),
        }
        .encode();
        let until = Until::Sent { limit: MAX_ANSWER };
        match self.drive(&mut message, until)? {
            None => Ok(()),
            // The server answered before the stream ended: a refusal.
            Some(reply) => {
                self.over = true;
                reply_ok(reply)?;
                Err(CallError::AnsweredEarly)
            }
        }
    }

    /// Ends the stream and waits for the server's count of accepted (and
    /// refused) publications.
    pub fn finish(mut self) -> Result<String, CallError> {
        if self.over {
            return Err(CallError::Closed);
        }
        self.over = true;
        self.link
            .conn
            .finish(self.id)
            .map_err(|err| CallError::ConnectionLost(err.to_string()))?;
        let until = Until::Reply { limit: MAX_ANSWER };
        let reply = self.drive(&mut Bytes::new(), until)?;
        let reply = reply_ok(reply.ok_or(CallError::Closed)?)?;
        Ok(String::from_utf8_lossy(&reply.body).into_owned())
    }

    fn drive(&mut self, message: &mut Bytes, until: Until) -> Result<Option<Reply>, CallError> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let result = self.link.drive(
            self.id,
            message,
            &mut self.reader,
            until,
            deadline,
            &mut self.scratch,
        );
        result.map_err(|failure| {
            self.over = true;
            CallError::from(failure)
        })
    }
}

impl Drop for DirectPublisher {
    fn drop(&mut self) {
        if !self.over {
            let _ = self.link.conn.reset(self.id, ErrorCode::CANCEL);
            let deadline = Instant::now() + Duration::from_millis(100);
            let _ = self.link.flush(Some(deadline));
        }
    }
}
