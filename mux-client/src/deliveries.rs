//! A subscription's feed messages (`spec/patterns.md` §3.3) as deliveries,
//! one at a time: a Publication is one, a Publications message several,
//! handed out in order from [`Unread`] before the next message is read.

use bytes::Bytes;
use mux_core::patterns::{FeedMessage, FeedMessageRef, Payloads};
use mux_core::Utf8Bytes;

use crate::error::CallError;
use crate::pubsub::{Delivery, DeliveryRef};

/// The publications of a Publications message not yet handed out.
#[derive(Debug, Default)]
pub(crate) struct Unread {
    topic: Utf8Bytes,
    payloads: Payloads,
}

impl Unread {
    /// The next publication, owned, if one is left.
    pub(crate) fn next(&mut self) -> Option<Delivery> {
        let payload = self.payloads.next()?;
        Some(Delivery::Message {
            topic: self.topic.clone(),
            payload,
        })
    }

    /// The next publication lent to `read`, if one is left; `read` back
    /// if not.
    pub(crate) fn lend<R, F>(&mut self, read: F) -> Result<R, F>
    where
        F: FnOnce(DeliveryRef<'_>) -> R,
    {
        match self.payloads.next_ref() {
            Some(payload) => Ok(read(DeliveryRef::Message {
                topic: &self.topic,
                payload,
            })),
            None => Err(read),
        }
    }

    /// Keeps the payloads of the Publications message `message`.
    fn keep(&mut self, message: Bytes) -> Result<(), CallError> {
        match FeedMessage::decode(message) {
            Ok(FeedMessage::Publications { topic, payloads }) => {
                *self = Self { topic, payloads };
                Ok(())
            }
            _ => Err(unexpected_message()),
        }
    }
}

/// A subscription's feed message as a delivery; the rest of a
/// Publications message is kept in `unread`.
pub(crate) fn decode_delivery(message: Bytes, unread: &mut Unread) -> Result<Delivery, CallError> {
    match FeedMessage::decode(message) {
        Ok(FeedMessage::Publication { topic, payload }) => Ok(Delivery::Message { topic, payload }),
        Ok(FeedMessage::Lost { count }) => Ok(Delivery::Lost(count)),
        Ok(FeedMessage::Publications { topic, payloads }) => {
            *unread = Unread { topic, payloads };
            unread.next().ok_or_else(unexpected_message)
        }
        _ => Err(unexpected_message()),
    }
}

/// A subscription's feed message lent to `read`, parsed in place. A
/// Publications message is kept in `unread` (`owned`, when the caller has
/// the message as `Bytes`; a copy otherwise) and its first publication
/// lent from there.
pub(crate) fn lend_delivery<R>(
    message: &[u8],
    owned: Option<&Bytes>,
    unread: &mut Unread,
    read: impl FnOnce(DeliveryRef<'_>) -> R,
) -> Result<R, CallError> {
    match FeedMessageRef::parse(message) {
        Ok(FeedMessageRef::Publication { topic, payload }) => {
            Ok(read(DeliveryRef::Message { topic, payload }))
        }
        Ok(FeedMessageRef::Lost { count }) => Ok(read(DeliveryRef::Lost(count))),
        Ok(FeedMessageRef::Publications { .. }) => {
            let message = owned.map_or_else(|| Bytes::copy_from_slice(message), Bytes::clone);
            unread.keep(message)?;
            unread.lend(read).map_err(|_| unexpected_message())
        }
        _ => Err(unexpected_message()),
    }
}

fn unexpected_message() -> CallError {
    CallError::Malformed("unexpected message on a subscription".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::patterns::PublicationsBuilder;

    fn publications(payloads: &[&[u8]]) -> Bytes {
        let mut builder = PublicationsBuilder::new("news", 64);
        for payload in payloads {
            assert!(builder.push(payload));
        }
        builder.finish()
    }

    fn single(payload: &'static [u8]) -> Bytes {
        FeedMessage::Publication {
            topic: "news".into(),
            payload: Bytes::from_static(payload),
        }
        .encode()
    }

    fn owned(delivery: DeliveryRef<'_>) -> Delivery {
        match delivery {
            DeliveryRef::Message { topic, payload } => Delivery::Message {
                topic: topic.into(),
                payload: Bytes::copy_from_slice(payload),
            },
            DeliveryRef::Lost(count) => Delivery::Lost(count),
        }
    }

    fn message(payload: &'static [u8]) -> Delivery {
        Delivery::Message {
            topic: "news".into(),
            payload: Bytes::from_static(payload),
        }
    }

    /// Decoded, a Publications message is its publications one by one, in
    /// order, then the next message.
    #[test]
    fn publications_are_handed_out_one_by_one_before_the_next_message() {
        let mut unread = Unread::default();
        let batch = publications(&[b"1", b"2", b"3"]);
        assert_eq!(decode_delivery(batch, &mut unread), Ok(message(b"1")));
        assert_eq!(unread.next(), Some(message(b"2")));
        assert_eq!(unread.next(), Some(message(b"3")));
        assert_eq!(unread.next(), None);
        assert_eq!(
            decode_delivery(single(b"4"), &mut unread),
            Ok(message(b"4"))
        );
        assert_eq!(unread.next(), None);
    }

    /// Lent, from a borrowed or an owned message, the same deliveries come
    /// in the same order.
    #[test]
    fn lent_publications_come_in_order_from_borrowed_and_owned_messages() {
        let batch = publications(&[b"a", b"", b"c"]);
        for keep_owned in [false, true] {
            let mut unread = Unread::default();
            let owner = keep_owned.then_some(&batch);
            let first = lend_delivery(&batch, owner, &mut unread, owned);
            assert_eq!(first, Ok(message(b"a")));
            assert_eq!(unread.lend(owned).ok(), Some(message(b"")));
            assert_eq!(unread.lend(owned).ok(), Some(message(b"c")));
            assert!(unread.lend(owned).is_err(), "nothing left");
        }
    }

    #[test]
    fn feed_messages_that_are_not_deliveries_are_malformed() {
        let mut unread = Unread::default();
        let event = FeedMessage::Event {
            id: 1,
            kind: "".into(),
            data: Bytes::new(),
        }
        .encode();
        assert!(decode_delivery(event.clone(), &mut unread).is_err());
        assert!(lend_delivery(&event, None, &mut unread, owned).is_err());
        let empty = PublicationsBuilder::new("news", 0).finish();
        assert!(decode_delivery(empty.clone(), &mut unread).is_err());
        assert!(lend_delivery(&empty, Some(&empty), &mut unread, owned).is_err());
    }
}
