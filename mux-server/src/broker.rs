//! Publish/subscribe fan-out between server loops, and between servers.
//!
//! A [`Broker`] carries publications to every place that has subscribers.
//! The embedded [`MemoryBroker`] fans out to the loops of one process; a
//! broker over Redis pub/sub or NATS implements the same two methods to span
//! servers behind a load balancer.

use std::sync::{Arc, RwLock};

use bytes::Bytes;

/// Where publications go: one per loop, registered with [`Broker::attach`].
pub type Delivery = Arc<dyn Fn(&str, &Bytes) + Send + Sync>;

/// Carries publications to every attached delivery, in publication order
/// per publisher.
pub trait Broker: Send + Sync {
    /// Publishes `payload` on `topic` (already validated, no wildcards).
    fn publish(&self, topic: &str, payload: &Bytes);

    /// Registers a local delivery; every publication reaches it.
    fn attach(&self, delivery: Delivery);
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
    fn publish(&self, topic: &str, payload: &Bytes) {
        let deliveries = self
            .deliveries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for delivery in deliveries.iter() {
            delivery(topic, payload);
        }
    }

    fn attach(&self, delivery: Delivery) {
        self.deliveries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(delivery);
    }
}

/// What a loop does with a subscriber that cannot keep up (`spec/patterns.md` §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowSubscriber {
    /// Keep at most `queue` undelivered messages; drop the oldest beyond, and
    /// tell the subscriber how many it lost before its next message.
    DropOldest {
        /// Messages kept per subscriber.
        queue: usize,
    },
    /// Keep at most `queue` undelivered messages; beyond, end the
    /// subscription with `ENHANCE_YOUR_CALM`.
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
