//! [`DirectSubscription`]: a subscription (`spec/patterns.md` §3) read on
//! the caller's thread from a connection of its own, as a Redis or NATS
//! subscriber reads its socket: the kernel wakes the reader itself, with no
//! loop thread in between. When the reader does not keep up, flow control
//! pushes back and the server's slow-subscriber policy applies (§3.5).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::encode_head;
use super::incoming::{Incoming, Next};
use super::link::Link;
use crate::error::CallError;
use crate::pubsub::{decode_delivery, subscription_request, Delivery};

/// A subscription that owns its connection and is read on the caller's
/// thread. It does not resubscribe: after an error (the connection lost,
/// the server ending the stream) every read returns that error, and what
/// is published until the caller subscribes again is not delivered.
/// Dropping it unsubscribes (the stream is reset with `CANCEL`) and closes
/// the connection.
#[derive(Debug)]
pub struct DirectSubscription {
    incoming: Incoming,
    pattern: String,
}

impl DirectSubscription {
    /// Sends the subscription on `link` and waits (until `deadline`) for
    /// the server's answer.
    pub(super) fn open(
        link: Link,
        pattern: &str,
        max_message: usize,
        deadline: Instant,
    ) -> Result<Self, CallError> {
        let metadata = encode_head(&subscription_request(pattern)?, None, false)?;
        Ok(Self {
            incoming: Incoming::open(link, metadata, Bytes::new(), max_message, deadline)
                .map_err(|(err, _link)| err)?,
            pattern: pattern.to_owned(),
        })
    }

    /// The pattern subscribed to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The next delivery, waiting at most `timeout` (`None` if nothing came).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Delivery, CallError>> {
        match self.incoming.next(timeout) {
            Next::Message(message) => Some(decode_delivery(message)),
            Next::End => Some(Err(CallError::ConnectionLost(
                "the server ended the subscription".into(),
            ))),
            Next::Failed(err) => Some(Err(err)),
            Next::Nothing => None,
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
}

impl Drop for DirectSubscription {
    fn drop(&mut self) {
        self.incoming.cancel();
    }
}
