//! Request bodies written on the caller's thread: [`DirectUpload`] (a
//! streamed body, `spec/patterns.md` §1.7) and [`DirectPublisher`] (a
//! publishing stream, §3.4). Each write goes to the socket at once, with
//! no thread between the caller and the kernel; the caller blocks only when
//! flow control has no credit left, reading the server's WINDOW_UPDATEs
//! itself. The server answers once, at the end (or early, to refuse).

use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_core::frame::Metadata;
use mux_core::patterns::{self, FeedMessage};
use mux_core::{ErrorCode, StreamId};
use mux_runtime::deadline_after;

use super::link::{Link, Until};
use super::{encode_head, DirectClient};
use crate::call::CallRequest;
use crate::error::CallError;
use crate::reader::StreamReader;
use crate::reopen::reply_ok;
use crate::reply::Reply;

/// How long a body writer's waits may last.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// Until the call's deadline, whatever the number of waits (an upload).
    Call(Option<Instant>),
    /// Each wait for credit or for the answer (a long-lived publisher).
    EachWait(Option<Duration>),
}

/// An open request stream on a link: what an upload and a publisher share.
#[derive(Debug)]
struct BodyWriter {
    link: Link,
    id: StreamId,
    reader: StreamReader,
    /// The largest answer accepted.
    limit: usize,
    bound: Bound,
    /// The server's answer, if it came before the body ended.
    early: Option<Reply>,
    /// Once the stream is over (finished, failed, answered early), what
    /// a write gets.
    ended: Option<CallError>,
}

impl BodyWriter {
    fn open(
        mut link: Link,
        metadata: Metadata,
        limit: usize,
        bound: Bound,
    ) -> Result<Self, CallError> {
        let id = link.open(metadata, false).map_err(CallError::from)?;
        Ok(Self {
            link,
            id,
            reader: StreamReader::call(),
            limit,
            bound,
            early: None,
            ended: None,
        })
    }

    /// Writes `bytes` (a whole message if `end_message`) to the socket.
    fn write(&mut self, bytes: Bytes, end_message: bool) -> Result<(), CallError> {
        if let Some(err) = &self.ended {
            return Err(err.clone());
        }
        let mut unsent = bytes;
        let until = Until::Sent {
            limit: self.limit,
            end_message,
        };
        match self.drive(&mut unsent, until)? {
            None => Ok(()),
            Some(reply) => {
                // The server answered before the body ended: the rest is
                // not wanted (`Link::drive` reset the stream).
                let outcome = match reply_ok(reply.clone()) {
                    Ok(_) => CallError::AnsweredEarly,
                    Err(refusal) => refusal,
                };
                self.early = Some(reply);
                self.ended = Some(outcome.clone());
                Err(outcome)
            }
        }
    }

    /// Ends the body and waits for the answer (or gives the early one).
    fn finish(&mut self) -> Result<Reply, CallError> {
        if let Some(reply) = self.early.take() {
            return Ok(reply);
        }
        if let Some(err) = &self.ended {
            return Err(err.clone());
        }
        self.ended = Some(CallError::Closed);
        self.link
            .conn
            .finish(self.id)
            .map_err(|err| CallError::ConnectionLost(err.to_string()))?;
        let until = Until::Reply { limit: self.limit };
        self.drive(&mut Bytes::new(), until)?
            .ok_or(CallError::Closed)
    }

    fn drive(&mut self, unsent: &mut Bytes, until: Until) -> Result<Option<Reply>, CallError> {
        let deadline = match self.bound {
            Bound::Call(deadline) => deadline,
            Bound::EachWait(timeout) => timeout.and_then(deadline_after),
        };
        let result = self
            .link
            .drive(self.id, unsent, &mut self.reader, until, deadline);
        result.map_err(|failure| {
            let err = CallError::from(failure);
            self.ended = Some(err.clone());
            err
        })
    }

    /// Resets a stream left unfinished.
    fn cancel(&mut self) {
        if self.ended.is_none() {
            self.ended = Some(CallError::Cancelled);
            let _ = self.link.conn.reset(self.id, ErrorCode::CANCEL);
            self.link.flush_briefly();
        }
    }
}

/// A streamed request body written on the caller's thread (see
/// [`DirectClient::upload`]). The client's connection is lent to it and
/// given back when it ends; dropping it without
/// [`finish`](Self::finish) cancels the call.
#[derive(Debug)]
pub struct DirectUpload<'a> {
    client: &'a mut DirectClient,
    /// `None` once the connection went back to the client.
    writer: Option<BodyWriter>,
}

impl<'a> DirectUpload<'a> {
    /// Opens the upload on `link`, lent by `client` until it ends.
    pub(super) fn open(
        client: &'a mut DirectClient,
        link: Link,
        request: &CallRequest,
    ) -> Result<Self, CallError> {
        let timeout = client.timeout_of(request);
        let metadata = encode_head(request, timeout, true)?;
        let bound = Bound::Call(timeout.and_then(deadline_after));
        let writer = BodyWriter::open(link, metadata, client.max_response(), bound)?;
        Ok(Self {
            client,
            writer: Some(writer),
        })
    }

    fn writer(&mut self) -> Result<&mut BodyWriter, CallError> {
        self.writer.as_mut().ok_or(CallError::Closed)
    }

    /// Writes `bytes` of the body: on the wire when this returns. After an
    /// early answer: [`CallError::AnsweredEarly`] (a success, which
    /// [`finish`](Self::finish) gives) or [`CallError::Rejected`].
    pub fn write(&mut self, bytes: impl Into<Bytes>) -> Result<(), CallError> {
        self.writer()?.write(bytes.into(), false)
    }

    /// Writes `bytes` as one message of the body (spec §7).
    pub fn write_message(&mut self, bytes: impl Into<Bytes>) -> Result<(), CallError> {
        self.writer()?.write(bytes.into(), true)
    }

    /// Ends the body and waits for the reply.
    pub fn finish(mut self) -> Result<Reply, CallError> {
        self.writer()?.finish()
    }
}

impl Drop for DirectUpload<'_> {
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            writer.cancel();
            self.client.take_back(writer.link);
        }
    }
}

/// A publishing stream that owns its connection and writes on the caller's
/// thread (see [`DirectClient::publisher`]). Dropping it without
/// [`finish`](Self::finish) cancels the stream.
#[derive(Debug)]
pub struct DirectPublisher {
    writer: BodyWriter,
}

/// The longest answer a publishing stream accepts.
const MAX_ANSWER: usize = 64 * 1024;

impl DirectPublisher {
    pub(super) fn open(link: Link, timeout: Option<Duration>) -> Result<Self, CallError> {
        let metadata = encode_head(&CallRequest::new(patterns::PUBLISH_STREAM, ""), None, true)?;
        let writer = BodyWriter::open(link, metadata, MAX_ANSWER, Bound::EachWait(timeout))?;
        Ok(Self { writer })
    }

    /// Publishes `payload` on `topic`: written to the socket before this
    /// returns, blocking only while flow control has no credit (up to the
    /// client's default timeout, if it set one).
    pub fn publish(&mut self, topic: &str, payload: impl Into<Bytes>) -> Result<(), CallError> {
        patterns::check_topic(topic).map_err(|e| CallError::Malformed(e.to_string()))?;
        let message = FeedMessage::Publication {
            topic: topic.into(),
            payload: payload.into(),
        };
        self.writer.write(message.encode(), true)
    }

    /// Ends the stream and waits for the server's count of accepted (and
    /// refused) publications.
    pub fn finish(mut self) -> Result<String, CallError> {
        let reply = reply_ok(self.writer.finish()?)?;
        Ok(String::from_utf8_lossy(&reply.body).into_owned())
    }
}

impl Drop for DirectPublisher {
    fn drop(&mut self) {
        self.writer.cancel();
    }
}
