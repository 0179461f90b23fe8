//! Streamed responses read on the caller's thread (`spec/patterns.md`
//! §1.2, §2): [`Incoming`], the part a [`DirectStream`] and a
//! [`DirectSubscription`](super::DirectSubscription) share, reads the
//! answer's head, then splits the body into messages. Messages that
//! arrive together are taken together and handed out one by one;
//! flow-control credit goes back only when the reader comes for more, so a
//! slow reader pushes back on the server.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_core::frame::Metadata;
use mux_core::rpc::{BodyCheck, ResponseHead};
use mux_core::{ErrorCode, Event, StreamId};
use mux_runtime::MessageReader;

use super::link::{lost, Link, Wait};
use super::DirectClient;
use crate::error::CallError;

/// The longest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// The longest refusal reason read after a failure head.
const MAX_REASON: usize = 4096;

/// How long opening a stream waits for the server's answer when the
/// client sets no default timeout.
pub(super) const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// What [`Incoming::next`] found.
#[derive(Debug)]
pub(super) enum Next {
    Message(Bytes),
    /// The server ended the stream after its last message.
    End,
    Failed(CallError),
    /// The deadline passed first.
    Nothing,
}

/// A stream whose answer is read on the caller's thread.
#[derive(Debug)]
pub(super) struct Incoming {
    pub(super) link: Link,
    id: StreamId,
    /// The request body's rest, sent as flow control allows.
    unsent: Bytes,
    /// Assembles the answer's head; `None` once it has arrived.
    head_reader: Option<MessageReader>,
    head: Option<ResponseHead>,
    messages: MessageReader,
    /// The body against the head's declared length (`spec/patterns.md` §1.8).
    check: BodyCheck,
    max_message: usize,
    /// Taken from the stream, not yet handed out.
    ready: VecDeque<Bytes>,
    /// How the stream ended, once it has: `None` inside for its end.
    ended: Option<Option<CallError>>,
}

impl Incoming {
    /// Opens a stream with `metadata` and `body` (one message that ends
    /// our side) on `link` and waits, until `deadline`, for the server's
    /// answer: a failure status is [`CallError::Rejected`]. On failure the
    /// link comes back with the error, its stream reset.
    pub(super) fn open(
        mut link: Link,
        metadata: Metadata,
        body: Bytes,
        max_message: usize,
        deadline: Instant,
    ) -> Result<Self, (CallError, Box<Link>)> {
        let id = match link.open(metadata, body.is_empty()) {
            Ok(id) => id,
            Err(failure) => return Err((failure.into(), Box::new(link))),
        };
        let mut unsent = body;
        link.send_message(id, &mut unsent, true, true);
        let mut incoming = Self {
            link,
            id,
            unsent,
            head_reader: Some(MessageReader::default()),
            head: None,
            messages: MessageReader::default(),
            check: BodyCheck::default(),
            max_message,
            ready: VecDeque::new(),
            ended: None,
        };
        while incoming.head.is_none() {
            let failed = match &incoming.ended {
                Some(Some(err)) => Some(err.clone()),
                _ => (!incoming.pump(deadline)).then_some(CallError::DeadlineExceeded),
            };
            if let Some(err) = failed {
                incoming.cancel();
                return Err((err, Box::new(incoming.link)));
            }
        }
        Ok(incoming)
    }

    pub(super) fn head(&self) -> Option<&ResponseHead> {
        self.head.as_ref()
    }

    /// The next message, waiting until `deadline`.
    pub(super) fn next(&mut self, deadline: Instant) -> Next {
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Next::Message(message);
            }
            match &self.ended {
                Some(None) => return Next::End,
                Some(Some(err)) => return Next::Failed(err.clone()),
                None => {}
            }
            if !self.pump(deadline) {
                return Next::Nothing;
            }
        }
    }

    /// Resets the stream if it is still going (the reader left early).
    pub(super) fn cancel(&mut self) {
        if self.ended.is_none() {
            self.ended = Some(Some(CallError::Cancelled));
            let _ = self.link.conn.reset(self.id, ErrorCode::CANCEL);
            self.link.flush_briefly();
        }
    }

    /// One round: write what is due (credit, PING answers), take what the
    /// state machine has, and if that gave nothing, wait for bytes. `false`
    /// once `deadline` passed with nothing new.
    fn pump(&mut self, deadline: Instant) -> bool {
        if let Err(err) = self.link.flush(Some(deadline)) {
            return self.fail_on(err);
        }
        let (before, head_before) = (self.ready.len(), self.head.is_none());
        while let Some(event) = self.link.conn.poll_event() {
            match event {
                Event::Readable { id } if id == self.id => self.read_stream(),
                Event::Writable { id } if id == self.id => {
                    self.link.send_message(id, &mut self.unsent, true, true);
                }
                Event::StreamReset { id, code } if id == self.id => {
                    self.end(Some(CallError::Reset(code)));
                }
                Event::PushReceived { id, .. } => {
                    let _ = self.link.conn.reset(id, ErrorCode::CANCEL);
                }
                Event::GoAway { .. } => self.link.retire(),
                Event::Closed { error } => self.end(Some(lost(error))),
                _ => {}
            }
        }
        let answered = head_before && self.head.is_some();
        if self.ready.len() > before || self.ended.is_some() || answered {
            return true;
        }
        match self.link.read_some(Some(deadline)) {
            Ok(()) => true,
            Err(err) => self.fail_on(err),
        }
    }

    /// `false` for a passed deadline; a failed transport ends the stream.
    fn fail_on(&mut self, err: Wait) -> bool {
        match err {
            Wait::Deadline => false,
            Wait::Transport(err) => {
                self.end(Some(CallError::ConnectionLost(err.to_string())));
                true
            }
        }
    }

    fn end(&mut self, error: Option<CallError>) {
        self.ended.get_or_insert(error);
    }

    /// Takes what the stream has: the answer's head, then messages.
    fn read_stream(&mut self) {
        while self.ended.is_none() {
            let Ok(Some(chunk)) = self.link.conn.read(self.id, usize::MAX) else {
                return;
            };
            let fin = chunk.fin;
            let step = match self.head_reader.as_mut() {
                Some(reader) => match reader.push(chunk, MAX_HEAD) {
                    Ok(Some(message)) => self.take_head(message),
                    Ok(None) => Ok(()),
                    Err(_) => Err(CallError::Malformed("answer head too large".into())),
                },
                None => self.take_message(chunk),
            };
            if let Err(err) = step {
                let _ = self.link.conn.reset(self.id, ErrorCode::CANCEL);
                return self.end(Some(err));
            }
            if fin {
                // Cut short, a message or the declared length fails the
                // stream: never a shorter success.
                let outcome = if self.messages.has_partial() {
                    Some(CallError::Malformed(
                        "the stream ended inside a message".into(),
                    ))
                } else {
                    self.check.finish().err().map(CallError::from)
                };
                return self.end(outcome);
            }
        }
    }

    /// Adds a chunk of the body to the message it belongs to, held to the
    /// declared length and the message limit.
    fn take_message(&mut self, chunk: mux_core::Chunk) -> Result<(), CallError> {
        self.check.add(chunk.bytes.len())?;
        let limit = self.max_message;
        if let Some(message) = self
            .messages
            .push(chunk, limit)
            .map_err(|_| CallError::TooLarge(limit))?
        {
            self.ready.push_back(message);
        }
        Ok(())
    }

    /// The answer: a success opens the stream; anything else is a refusal
    /// with its reason.
    fn take_head(&mut self, message: Bytes) -> Result<(), CallError> {
        let head =
            ResponseHead::decode(message).map_err(|err| CallError::Malformed(err.to_string()))?;
        self.head_reader = None;
        if head.status.is_success() {
            self.check = BodyCheck::new(head.length);
            self.head = Some(head);
            return Ok(());
        }
        let reason = self
            .link
            .conn
            .read(self.id, MAX_REASON)
            .ok()
            .flatten()
            .map(|chunk| chunk.bytes)
            .unwrap_or_default();
        Err(CallError::Rejected {
            status: head.status,
            message: String::from_utf8_lossy(&reason).into_owned(),
        })
    }
}

/// A streamed response read message by message on the caller's thread
/// (see [`DirectClient::open_stream`]). The client's connection is lent to
/// it and given back when it ends; dropping it before the end cancels the
/// stream.
#[derive(Debug)]
pub struct DirectStream<'a> {
    client: &'a mut DirectClient,
    /// `None` once the connection went back to the client.
    incoming: Option<Incoming>,
}

impl<'a> DirectStream<'a> {
    pub(super) fn new(client: &'a mut DirectClient, incoming: Incoming) -> Self {
        Self {
            client,
            incoming: Some(incoming),
        }
    }

    /// The answer's head (status 2xx: refusals fail the opening).
    pub fn head(&self) -> Option<&ResponseHead> {
        self.incoming.as_ref().and_then(Incoming::head)
    }

    /// The next message, blocking; `None` at the stream's end.
    pub fn next_message(&mut self) -> Option<Result<Bytes, CallError>> {
        loop {
            match self.next_timeout(Duration::from_secs(3600)) {
                None if self.is_over() => return None,
                None => {}
                some => return some,
            }
        }
    }

    /// The next message, waiting at most `timeout`; `None` if nothing
    /// came, or at the stream's end ([`is_over`](Self::is_over) tells).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Bytes, CallError>> {
        let incoming = self.incoming.as_mut()?;
        match incoming.next(Instant::now() + timeout) {
            Next::Message(message) => Some(Ok(message)),
            Next::End => {
                self.give_back();
                None
            }
            Next::Failed(err) => {
                self.give_back();
                Some(Err(err))
            }
            Next::Nothing => None,
        }
    }

    /// Whether the stream has ended (its last message taken, or failed).
    pub fn is_over(&self) -> bool {
        self.incoming.is_none()
    }

    fn give_back(&mut self) {
        if let Some(mut incoming) = self.incoming.take() {
            incoming.cancel();
            self.client.take_back(incoming.link);
        }
    }
}

impl Drop for DirectStream<'_> {
    fn drop(&mut self) {
        self.give_back();
    }
}
