//! Streamed responses read on the caller's thread (`spec/patterns.md`
//! §1.2, §2): [`Incoming`], the part a [`DirectStream`] and a
//! [`DirectSubscription`](super::DirectSubscription) share, drives the
//! connection while the client's one stream reader takes the answer's head
//! and splits the body into messages. Messages that arrive together are
//! taken together and handed out one by one; flow-control credit goes back
//! only when the reader comes for more, so a slow reader pushes back on
//! the server.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_core::frame::Metadata;
use mux_core::rpc::ResponseHead;
use mux_core::{ErrorCode, Event, StreamId};
use mux_runtime::deadline_after;

use super::link::{lost, Link, Wait};
use super::DirectClient;
use crate::error::CallError;
use crate::reader::StreamReader;
use crate::reply::Reply;

/// How long opening a stream waits for the server's answer when the
/// client sets no default timeout.
pub(super) const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// What [`Incoming::next`] (a message) or [`Incoming::next_with`] (what
/// the reader made of one) found.
#[derive(Debug)]
pub(super) enum Next<M = Bytes> {
    Message(M),
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
    reader: StreamReader,
    max_message: usize,
    /// Taken from the stream, not yet handed out.
    ready: VecDeque<Bytes>,
    /// A lending read left the stream's data in the connection: an owned
    /// read takes it first.
    lent: bool,
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
            reader: StreamReader::local_messages(),
            max_message,
            ready: VecDeque::new(),
            lent: false,
            ended: None,
        };
        while incoming.head().is_none() {
            let failed = match &incoming.ended {
                Some(Some(err)) => Some(err.clone()),
                _ => (!incoming.pump(Some(deadline), true)).then_some(CallError::DeadlineExceeded),
            };
            if let Some(err) = failed {
                incoming.cancel();
                return Err((err, Box::new(incoming.link)));
            }
        }
        Ok(incoming)
    }

    pub(super) fn head(&self) -> Option<&ResponseHead> {
        self.reader.head()
    }

    /// The next message, waiting at most `timeout` (one too long to be a
    /// time waits without a deadline). The clock is read only when the
    /// message must be waited for: messages that arrived together are
    /// handed out without it.
    pub(super) fn next(&mut self, timeout: Duration) -> Next {
        // Messages a lending read left in the connection come first.
        if std::mem::take(&mut self.lent) {
            self.read_stream();
        }
        self.wait_for(timeout, true, |this| this.ready.pop_front())
    }

    /// As [`next`](Self::next), but the message is lent to `visit`: one
    /// that came whole is read where it lies in the connection's buffer,
    /// with no handle on the buffer and no copy (see
    /// [`StreamReader::lend_message`]). `visit` is called at most once, and
    /// only for a message.
    pub(super) fn next_with<R>(
        &mut self,
        timeout: Duration,
        visit: impl FnOnce(&[u8]) -> R,
    ) -> Next<R> {
        let mut visit = Some(visit);
        self.lent = true;
        self.wait_for(timeout, false, |this| {
            // Messages an owned read took first (`next` and `next_with` may
            // be mixed), then the connection's.
            if this.ready.is_empty() {
                return this.lend_message(&mut visit);
            }
            let visit = visit.take()?;
            this.ready.pop_front().map(|message| visit(&message))
        })
    }

    /// Takes a message with `take` until one comes, the stream ends or
    /// `timeout` passes, pumping the connection between tries (`drain`: see
    /// [`pump`](Self::pump)).
    fn wait_for<M>(
        &mut self,
        timeout: Duration,
        drain: bool,
        mut take: impl FnMut(&mut Self) -> Option<M>,
    ) -> Next<M> {
        let mut deadline = None;
        loop {
            if let Some(message) = take(self) {
                return Next::Message(message);
            }
            if let Some(ended) = self.ending() {
                return ended;
            }
            let deadline = *deadline.get_or_insert_with(|| deadline_after(timeout));
            if !self.pump(deadline, drain) {
                return Next::Nothing;
            }
        }
    }

    /// Lends the connection's next message to `visit`, if one is complete.
    fn lend_message<R>(&mut self, visit: &mut Option<impl FnOnce(&[u8]) -> R>) -> Option<R> {
        if self.ended.is_some() {
            return None;
        }
        let (conn, id, limit) = (&mut self.link.conn, self.id, self.max_message);
        let (made, outcome) = self.reader.lend_message(conn, id, limit, visit);
        if let Some(outcome) = outcome {
            self.stream_ended(outcome);
        }
        made
    }

    /// How the stream ended, once it has.
    fn ending<M>(&self) -> Option<Next<M>> {
        match &self.ended {
            Some(None) => Some(Next::End),
            Some(Some(err)) => Some(Next::Failed(err.clone())),
            None => None,
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

    /// One round: take what the state machine has; if that gave nothing,
    /// write what is due (credit, PING answers) and wait for bytes. `false`
    /// once `deadline` passed with nothing new.
    ///
    /// Writing only before a wait, not on every round, returns the credit
    /// for what arrived and what was read in one WINDOW_UPDATE turn: a
    /// message that comes alone is received and read in two rounds.
    ///
    /// With `drain`, the stream's data is taken into `ready` as it comes;
    /// without, it is left in the connection for a lending read, and its
    /// arrival counts as something new.
    fn pump(&mut self, deadline: Option<Instant>, drain: bool) -> bool {
        if self.take_events(drain) {
            return true;
        }
        if let Err(err) = self.link.flush(deadline) {
            return self.fail_on(err);
        }
        // Writing can raise events (room for the request body's rest).
        if self.take_events(drain) {
            return true;
        }
        match self.link.read_some(deadline) {
            Ok(()) => true,
            Err(err) => self.fail_on(err),
        }
    }

    /// Handles the state machine's events; whether they brought anything
    /// (a message, the head, the end).
    fn take_events(&mut self, drain: bool) -> bool {
        let (before, head_before) = (self.ready.len(), self.head().is_none());
        let mut arrived = false;
        while let Some(event) = self.link.conn.poll_event() {
            match event {
                Event::Readable { id } if id == self.id && drain => self.read_stream(),
                Event::Readable { id } if id == self.id => arrived = true,
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
        let answered = head_before && self.head().is_some();
        self.ready.len() > before || self.ended.is_some() || answered || arrived
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

    /// Takes what the stream has: the answer's head, then messages; a
    /// stream that failed on our side (a refusal, a message too large, a
    /// body that breaks its head's word) is reset.
    fn read_stream(&mut self) {
        if self.ended.is_some() {
            return;
        }
        let (conn, id, limit) = (&mut self.link.conn, self.id, self.max_message);
        if let Some(outcome) = self.reader.read_into(conn, id, limit, &mut self.ready) {
            self.stream_ended(outcome);
        }
    }

    /// The stream ended with `outcome`: an error on our side resets it.
    fn stream_ended(&mut self, outcome: Result<Reply, CallError>) {
        match outcome {
            Ok(_) => self.end(None),
            Err(err) => {
                let _ = self.link.conn.reset(self.id, ErrorCode::CANCEL);
                self.end(Some(err));
            }
        }
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
        let next = self.incoming.as_mut()?.next(timeout);
        self.settle(next)
    }

    /// As [`next_timeout`](Self::next_timeout), the message lent to `read`
    /// for the call (`read` is not called when nothing came): one that came
    /// whole in a frame is read where it lies in the connection's buffer,
    /// with no allocation, copy or reference count.
    pub fn next_with<R>(
        &mut self,
        timeout: Duration,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Option<Result<R, CallError>> {
        let next = self.incoming.as_mut()?.next_with(timeout, read);
        self.settle(next)
    }

    /// What a read found, the connection given back once the stream ended.
    fn settle<M>(&mut self, next: Next<M>) -> Option<Result<M, CallError>> {
        match next {
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
