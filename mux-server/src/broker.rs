//! Publish/subscribe fan-out between server loops, and between servers.
//!
//! A [`Broker`] carries publications to every place that has subscribers.
//! The embedded [`MemoryBroker`] fans out to the loops of one process; a
//! broker over Redis pub/sub ([`crate::backplane::RedisBroker`]) implements
//! the same methods to span servers behind a load balancer
//! (`spec/patterns.md` §3.6).

use std::sync::{Arc, RwLock};

use bytes::Bytes;

/// What a broker hands each attached loop.
#[derive(Debug, Clone, Copy)]
pub enum Arrival<'a> {
    /// A publication.
    Publication {
        /// Its topic (no wildcards).
        topic: &'a str,
        /// Its payload.
        payload: &'a Bytes,
    },
    /// Publications may have been lost, how many is unknown (the broker's
    /// link to its backplane broke and came back): subscribers are told.
    Gap,
}

/// Where publications go: one per loop, registered with [`Broker::attach`].
pub type Delivery = Arc<dyn Fn(Arrival<'_>) + Send + Sync>;

/// Why a broker did not take a publication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The backplane cannot be reached now.
    #[error("the backplane is unavailable: {0}")]
    Unavailable(String),
    /// More publications wait for the backplane than the broker queues.
    #[error("the backplane's queue is full")]
    Overloaded,
}

/// How a broker took a publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Handed to every attached delivery already.
    Delivered,
    /// Queued for the backplane: the acknowledgement, if one was given,
    /// will be told once whether it got there.
    Queued,
}

/// Told once whether a queued publication reached the backplane.
pub type Acknowledge = Box<dyn FnOnce(Result<(), BrokerError>) + Send>;

/// Carries publications to every attached delivery, in publication order
/// per publisher.
pub trait Broker: Send + Sync {
    /// Publishes `payload` on `topic` (already validated, no wildcards).
    /// `Err` refuses it now (`ack` is not called); `Ok(Queued)` calls `ack`
    /// later with the outcome.
    fn publish(
        &self,
        topic: &str,
        payload: &Bytes,
        ack: Option<Acknowledge>,
    ) -> Result<Accepted, BrokerError>;

    /// Registers a local delivery; every publication reaches it (a broker
    /// may skip topics no [`Broker::interest`] covers).
    fn attach(&self, delivery: Delivery);

    /// A local subscription with `pattern` (`spec/patterns.md` §3.1) came
    /// (`subscribed`) or went. Called once each way per subscription; a
    /// broker that spans servers subscribes its backplane to what is asked.
    fn interest(&self, _pattern: &str, _subscribed: bool) {}
}

/// The in-process broker: calls every attached delivery in turn.
#[derive(Default)]
pub struct MemoryBroker {
    deliveries: RwLock<Vec<Delivery>>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.deliveries.read().map_or(0, |d| d.len());
        f.debug_struct("MemoryBroker")
            .field("deliveries", &count)
            .finish()
    }
}

impl Broker for MemoryBroker {
    fn publish(
        &self,
        topic: &str,
        payload: &Bytes,
        _ack: Option<Acknowledge>,
    ) -> Result<Accepted, BrokerError> {
        let deliveries = self
            .deliveries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for delivery in deliveries.iter() {
            delivery(Arrival::Publication { topic, payload });
        }
        Ok(Accepted::Delivered)
    }

    fn attach(&self, delivery: Delivery) {
        self.deliveries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(delivery);
    }
}

/// What a loop does with a subscriber that cannot keep up (`spec/patterns.md`
/// §3.5): one whose feed would hold more than `queue` messages, more than
/// `ServerBuilder::feed_queue_bytes`, or a message that has waited longer
/// than `ServerBuilder::feed_max_wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowSubscriber {
    /// Keep at most `queue` undelivered messages; drop the oldest beyond (and
    /// any that waited too long), and tell the subscriber how many it lost
    /// before its next message.
    DropOldest {
        /// Messages kept per subscriber.
        queue: usize,
    },
    /// Keep at most `queue` undelivered messages; beyond (or once one waited
    /// too long), end the subscription with `ENHANCE_YOUR_CALM`.
    Disconnect {
        /// Messages kept per subscriber.
        queue: usize,
    },
}

impl Default for SlowSubscriber {
    /// Drop the oldest beyond 1,024 messages.
    fn default() -> Self {
        Self::DropOldest { queue: 1024 }
    }
}
