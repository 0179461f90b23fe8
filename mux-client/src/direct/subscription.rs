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
use crate::deliveries::{decode_delivery, lend_delivery, Unread};
use crate::error::CallError;
use crate::pubsub::{subscription_request, Delivery, DeliveryRef};

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
    /// Publications received together and not yet read.
    unread: Unread,
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
        let metadata = encode_head(&subscription_request(pattern, max_message)?, None, false)?;
        Ok(Self {
            incoming: Incoming::open(link, metadata, Bytes::new(), max_message, deadline)
                .map_err(|(err, _link)| err)?,
            pattern: pattern.to_owned(),
            unread: Unread::default(),
        })
    }

    /// The pattern subscribed to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The next delivery, waiting at most `timeout` (`None` if nothing came).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Delivery, CallError>> {
        if let Some(delivery) = self.unread.next() {
            return Some(Ok(delivery));
        }
        let unread = &mut self.unread;
        outcome(self.incoming.next(timeout))
            .map(|message| message.and_then(|message| decode_delivery(message, unread)))
    }

    /// The next delivery, blocking.
    pub fn next_delivery(&mut self) -> Result<Delivery, CallError> {
        loop {
            if let Some(result) = self.next_timeout(Duration::from_secs(3600)) {
                return result;
            }
        }
    }

    /// The next delivery, lent to `read` for the call and waiting at most
    /// `timeout` (`None`, and `read` not called, if nothing came): what
    /// `read` makes of it. A delivery that came whole in one frame is read
    /// where it lies in the connection's buffer, with no allocation, copy
    /// or reference count per delivery, as an allocation-free Redis or
    /// NATS reader parses its socket's bytes; publications the server sent
    /// together in one message (`spec/patterns.md` §3.3) are copied out of
    /// it once, with one allocation for all of them, and lent one by one.
    /// [`next_timeout`](Self::next_timeout) hands out owned [`Delivery`]
    /// values instead.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mux_client::{DeliveryRef, DirectClient};
    /// use std::time::Duration;
    ///
    /// let mut news = DirectClient::connect("localhost:7878")?.subscribe("news.>")?;
    /// let mut total = 0;
    /// while let Some(read) = news.next_with(Duration::from_secs(1), |delivery| match delivery {
    ///     DeliveryRef::Message { payload, .. } => payload.len(),
    ///     DeliveryRef::Lost(_) => 0,
    /// }) {
    ///     total += read?;
    /// }
    /// # let _ = total;
    /// # Ok(())
    /// # }
    /// ```
    pub fn next_with<R>(
        &mut self,
        timeout: Duration,
        read: impl FnOnce(DeliveryRef<'_>) -> R,
    ) -> Option<Result<R, CallError>> {
        let read = match self.unread.lend(read) {
            Ok(made) => return Some(Ok(made)),
            Err(read) => read,
        };
        let unread = &mut self.unread;
        let next = self.incoming.next_with(timeout, |message| {
            lend_delivery(message, None, unread, read)
        });
        outcome(next).map(|read| read.and_then(|made| made))
    }

    /// As [`next_with`](Self::next_with), blocking until a delivery comes.
    pub fn next_delivery_with<R>(
        &mut self,
        mut read: impl FnMut(DeliveryRef<'_>) -> R,
    ) -> Result<R, CallError> {
        loop {
            if let Some(result) = self.next_with(Duration::from_secs(3600), &mut read) {
                return result;
            }
        }
    }
}

/// What a read of the subscription's stream found, as a subscription says it.
fn outcome<M>(next: Next<M>) -> Option<Result<M, CallError>> {
    match next {
        Next::Message(message) => Some(Ok(message)),
        Next::End => Some(Err(CallError::ConnectionLost(
            "the server ended the subscription".into(),
        ))),
        Next::Failed(err) => Some(Err(err)),
        Next::Nothing => None,
    }
}

impl Drop for DirectSubscription {
    fn drop(&mut self) {
        self.incoming.cancel();
    }
}
