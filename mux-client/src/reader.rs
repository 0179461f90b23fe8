//! The one reader of every incoming stream: a call's response, a message
//! stream, a push. A response starts with its head message (`spec/patterns.md`
//! §1.2; a push has none); the body after it is collected whole up to the
//! response limit, or split into messages for the stream's inbox, within the
//! room the inbox has, so that a slow reader pushes back on the server. A
//! body whose head declared its length is held to it (`spec/patterns.md`
//! §1.8): a response cut short fails, never passes as a shorter one.

use std::sync::Arc;

use bytes::Bytes;
use mux_core::frame::Metadata;
use mux_core::rpc::{BodyCheck, ResponseHead, Status};
use mux_core::{Chunk, Connection, StreamId};
use mux_runtime::{BodyBuffer, MessageReader};

use crate::error::CallError;
use crate::inbox::Inbox;
use crate::reply::Reply;

/// The longest response head a client accepts (status and metadata).
const MAX_HEAD: usize = 64 * 1024;

/// The longest refusal reason read after a stream's failure head.
const MAX_REASON: usize = 4096;

/// What a stream's body becomes.
#[derive(Debug)]
enum Body {
    /// A call or a push: one body.
    Whole(BodyBuffer),
    /// A message stream: each message to the reader's inbox.
    Messages {
        reader: MessageReader,
        inbox: Arc<Inbox>,
    },
}

/// Reads one incoming stream.
#[derive(Debug)]
pub(crate) struct StreamReader {
    /// Assembles the head; `None` when the stream has none (a push).
    head_reader: Option<MessageReader>,
    head: Option<ResponseHead>,
    body: Body,
    /// The body against the head's declared length (`spec/patterns.md` §1.8).
    check: BodyCheck,
}

impl StreamReader {
    /// The reader of a call's response.
    pub(crate) fn call() -> Self {
        Self::with(Body::Whole(BodyBuffer::default()), true)
    }

    /// The reader of a streaming response, whose messages go to `inbox`.
    pub(crate) fn messages(inbox: Arc<Inbox>) -> Self {
        let reader = MessageReader::default();
        Self::with(Body::Messages { reader, inbox }, true)
    }

    /// The reader of a push's body (no head).
    pub(crate) fn push() -> Self {
        Self::with(Body::Whole(BodyBuffer::default()), false)
    }

    fn with(body: Body, has_head: bool) -> Self {
        Self {
            head_reader: has_head.then(MessageReader::default),
            head: None,
            body,
            check: BodyCheck::default(),
        }
    }

    /// Reads what the stream has (within the inbox's room); an inbox that
    /// got messages goes into `wakes`. `None` while the stream goes on; at its end the reply (a message stream's has an empty
    /// body), or why it failed.
    pub(crate) fn read(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        limit: usize,
        wakes: &mut Vec<Arc<Inbox>>,
    ) -> Option<Result<Reply, CallError>> {
        let mut room = match &self.body {
            Body::Messages { inbox, .. } => inbox.room(),
            Body::Whole(_) => usize::MAX,
        };
        let mut batch = Vec::new();
        let mut outcome = None;
        while room > 0 {
            let Ok(Some(chunk)) = conn.read(id, usize::MAX) else {
                break;
            };
            let fin = chunk.fin;
            let step = if self.expects_head() {
                self.take_head(chunk, conn, id)
            } else {
                self.take_body(chunk, limit, &mut batch)
            };
            match step {
                Ok(taken) => room = room.saturating_sub(taken),
                Err(err) => {
                    outcome = Some(Err(err));
                    break;
                }
            }
            if fin {
                outcome = Some(self.finish());
                break;
            }
        }
        if let Body::Messages { inbox, .. } = &self.body {
            if inbox.push_all(batch) {
                wakes.push(Arc::clone(inbox));
            }
        }
        outcome
    }

    fn expects_head(&self) -> bool {
        self.head_reader.is_some() && self.head.is_none()
    }

    /// Feeds a chunk to the head; a message stream learns its head at once,
    /// and a refusal ends it with its reason.
    fn take_head(
        &mut self,
        chunk: Chunk,
        conn: &mut Connection,
        id: StreamId,
    ) -> Result<usize, CallError> {
        let Some(reader) = self.head_reader.as_mut() else {
            return Ok(0);
        };
        let message = match reader.push(chunk, MAX_HEAD) {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(0),
            Err(_) => return Err(CallError::Malformed("response head too large".into())),
        };
        let head =
            ResponseHead::decode(message).map_err(|err| CallError::Malformed(err.to_string()))?;
        if let Body::Messages { inbox, .. } = &self.body {
            if !head.status.is_success() {
                // A refusal: its body (the reason) follows the head.
                let reason = conn
                    .read(id, MAX_REASON)
                    .ok()
                    .flatten()
                    .map(|c| c.bytes)
                    .unwrap_or_default();
                return Err(CallError::Rejected {
                    status: head.status,
                    message: String::from_utf8_lossy(&reason).into_owned(),
                });
            }
            inbox.set_head(Ok(head.clone()));
        }
        self.check = BodyCheck::new(head.length);
        self.head = Some(head);
        Ok(0)
    }

    /// Adds a chunk to the body; returns how many messages it completed.
    fn take_body(
        &mut self,
        chunk: Chunk,
        limit: usize,
        batch: &mut Vec<Bytes>,
    ) -> Result<usize, CallError> {
        self.check.add(chunk.bytes.len())?;
        match &mut self.body {
            Body::Whole(body) => body
                .push(&chunk.bytes, limit)
                .map(|()| 0)
                .map_err(|_| CallError::TooLarge(limit)),
            Body::Messages { reader, .. } => match reader.push(chunk, limit) {
                Ok(Some(message)) => {
                    batch.push(message);
                    Ok(1)
                }
                Ok(None) => Ok(0),
                Err(_) => Err(CallError::TooLarge(limit)),
            },
        }
    }

    fn finish(&mut self) -> Result<Reply, CallError> {
        // A body cut short is an error, never a shorter success.
        self.check.finish()?;
        let body = match &mut self.body {
            Body::Whole(body) => body.take(),
            Body::Messages { .. } => Bytes::new(),
        };
        if self.head_reader.is_none() {
            return Ok(Reply {
                status: Status::OK,
                metadata: Metadata::default(),
                body,
            });
        }
        match self.head.take() {
            Some(head) => Ok(Reply {
                status: head.status,
                metadata: head.metadata,
                body,
            }),
            None => Err(CallError::Malformed(
                "the response ended before its head".into(),
            )),
        }
    }
}
