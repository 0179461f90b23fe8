//! [`DirectSubscription`]: a subscription (`spec/patterns.md` §3) read on
//! the caller's thread from a connection of its own, as a Redis or NATS
//! subscriber reads its socket: the kernel wakes the reader itself, with no
//! loop thread in between. Deliveries that arrive together are decoded
//! together and handed out one by one; flow-control credit goes back only
//! when the reader comes for more, so a slow reader pushes back on the
//! server, whose slow-subscriber policy then applies (§3.5).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_core::patterns;
use mux_core::rpc::ResponseHead;
use mux_core::{ErrorCode, Event, StreamId};
use mux_runtime::MessageReader;

use super::link::{lost, Link, Wait};
use crate::call::CallRequest;
use crate::error::CallError;
use crate::pubsub::{decode_delivery, Delivery};

/// The longest subscription answer head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// The longest refusal reason read after a failure head.
const MAX_REASON: usize = 4096;

/// How long [`DirectClient::subscribe`](super::DirectClient::subscribe)
/// waits for the server's answer when the client sets no default timeout.
pub(super) const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// A subscription that owns its connection and is read on the caller's
/// thread. It does not resubscribe: after an error (the connection lost,
/// the server ending the stream) every read returns that error, and what
/// is published until the caller subscribes again is not delivered.
/// Dropping it unsubscribes (the stream is reset with `CANCEL`) and closes
/// the connection.
#[derive(Debug)]
pub struct DirectSubscription {
    link: Link,
    id: StreamId,
    pattern: String,
    /// Assembles the answer's head; `None` once it has arrived.
    head: Option<MessageReader>,
    messages: MessageReader,
    max_message: usize,
    /// Decoded, not yet handed out.
    ready: VecDeque<Delivery>,
    /// Why the subscription ended, once it has.
    failed: Option<CallError>,
}

impl DirectSubscription {
    /// Sends the subscription on `link` and waits (until `deadline`) for
    /// the server's answer.
    pub(super) fn open(
        mut link: Link,
        pattern: &str,
        max_message: usize,
        deadline: Instant,
    ) -> Result<Self, CallError> {
        patterns::check_pattern(pattern).map_err(|e| CallError::Malformed(e.to_string()))?;
        let metadata = CallRequest::new(patterns::SUBSCRIBE, "")
            .header(Bytes::from_static(patterns::TOPIC), pattern.to_owned())
            .head(None, false)
            .and_then(|head| head.encode())
            .map_err(|err| CallError::Malformed(err.to_string()))?;
        let id = link
            .conn
            .open(metadata, true)
            .map_err(|err| CallError::ConnectionLost(err.to_string()))?;
        let mut subscription = Self {
            link,
            id,
            pattern: pattern.to_owned(),
            head: Some(MessageReader::default()),
            messages: MessageReader::default(),
            max_message,
            ready: VecDeque::new(),
            failed: None,
        };
        while subscription.head.is_some() {
            if let Some(err) = &subscription.failed {
                return Err(err.clone());
            }
            if !subscription.pump(deadline) {
                return Err(CallError::DeadlineExceeded);
            }
        }
        Ok(subscription)
    }

    /// The pattern subscribed to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The next delivery, waiting at most `timeout` (`None` if nothing came).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Delivery, CallError>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(delivery) = self.ready.pop_front() {
                return Some(Ok(delivery));
            }
            if let Some(err) = &self.failed {
                return Some(Err(err.clone()));
            }
            if !self.pump(deadline) {
                return None;
            }
        }
    }

    /// The next delivery, blocking.
    pub fn next_delivery(&mut self) -> Result<Delivery, CallError> {
        loop {
            if let Some(result) = self.next_timeout(Duration::from_secs(3600)) {
                return result;
            }
        }
    }

    /// One round: write what is due (credit, PING answers), take what the
    /// state machine has, and if that gave nothing, wait for bytes. `false`
    /// once `deadline` passed with nothing new.
    fn pump(&mut self, deadline: Instant) -> bool {
        if let Err(err) = self.link.flush(Some(deadline)) {
            return self.fail_on(err);
        }
        let (before, head_before) = (self.ready.len(), self.head.is_some());
        while let Some(event) = self.link.conn.poll_event() {
            match event {
                Event::Readable { id } if id == self.id => self.read_stream(),
                Event::StreamReset { id, code } if id == self.id => {
                    self.end(CallError::Reset(code));
                }
                Event::PushReceived { id, .. } => {
                    let _ = self.link.conn.reset(id, ErrorCode::CANCEL);
                }
                Event::Closed { error } => self.end(lost(error)),
                _ => {}
            }
        }
        let answered = head_before && self.head.is_none();
        if self.ready.len() > before || self.failed.is_some() || answered {
            return true;
        }
        match self.link.read_some(Some(deadline)) {
            Ok(()) => true,
            Err(err) => self.fail_on(err),
        }
    }

    /// `false` for a passed deadline; a failed transport ends the subscription.
    fn fail_on(&mut self, err: Wait) -> bool {
        match err {
            Wait::Deadline => false,
            Wait::Transport(err) => {
                self.end(CallError::ConnectionLost(err.to_string()));
                true
            }
        }
    }

    fn end(&mut self, error: CallError) {
        self.failed.get_or_insert(error);
    }

    /// Decodes what the stream has: the answer's head, then deliveries.
    fn read_stream(&mut self) {
        while self.failed.is_none() {
            let Ok(Some(chunk)) = self.link.conn.read(self.id, usize::MAX) else {
                return;
            };
            let fin = chunk.fin;
            let step = match self.head.as_mut() {
                Some(head) => match head.push(chunk, MAX_HEAD) {
                    Ok(Some(message)) => self.take_head(message),
                    Ok(None) => Ok(()),
                    Err(_) => Err(CallError::Malformed("answer head too large".into())),
                },
                None => match self.messages.push(chunk, self.max_message) {
                    Ok(Some(message)) => decode_delivery(message).map(|d| self.ready.push_back(d)),
                    Ok(None) => Ok(()),
                    Err(_) => Err(CallError::TooLarge(self.max_message)),
                },
            };
            if let Err(err) = step {
                let _ = self.link.conn.reset(self.id, ErrorCode::CANCEL);
                return self.end(err);
            }
            if fin {
                return self.end(CallError::ConnectionLost(
                    "the server ended the subscription".into(),
                ));
            }
        }
    }

    /// The answer: 200 subscribes; anything else is a refusal with its reason.
    fn take_head(&mut self, message: Bytes) -> Result<(), CallError> {
        let head =
            ResponseHead::decode(message).map_err(|err| CallError::Malformed(err.to_string()))?;
        self.head = None;
        if head.status.is_success() {
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

impl Drop for DirectSubscription {
    fn drop(&mut self) {
        let _ = self.link.conn.reset(self.id, ErrorCode::CANCEL);
        let _ = self
            .link
            .flush(Some(Instant::now() + Duration::from_millis(100)));
    }
}
