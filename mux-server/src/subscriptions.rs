//! A loop's subscriptions by pattern (`spec/patterns.md` §3.1), whoever
//! holds them: mux streams ([`crate::reserved`]) or web-edge connections
//! ([`crate::http`]). Every new topic is matched against every pattern once;
//! the subscribers of recently published topics are remembered, so that a
//! busy topic costs a lookup per publication, not a match per subscription.

use std::sync::Arc;

use foldhash::HashMap;
use mux_core::patterns;

use crate::broker::Broker;

/// Topics whose subscribers a loop remembers at most.
const MATCH_CACHE_TOPICS: usize = 4096;

/// Subscribers `T` by pattern.
pub(crate) struct Subscriptions<T> {
    all: Vec<(String, T)>,
    /// Told of each pattern that comes and goes (a broker that spans
    /// servers subscribes its backplane to them).
    broker: Option<Arc<dyn Broker>>,
    /// Cleared whenever a subscription comes or goes, and when it grows past
    /// `MATCH_CACHE_TOPICS`.
    matches: HashMap<Arc<str>, Arc<[T]>>,
}

impl<T> std::fmt::Debug for Subscriptions<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions")
            .field("count", &self.all.len())
            .finish()
    }
}

impl<T> Default for Subscriptions<T> {
    fn default() -> Self {
        Self {
            all: Vec::new(),
            broker: None,
            matches: HashMap::default(),
        }
    }
}

impl<T: Copy + PartialEq> Subscriptions<T> {
    /// Subscriptions whose patterns `broker` hears of.
    pub(crate) fn with_broker(broker: Arc<dyn Broker>) -> Self {
        Self {
            broker: Some(broker),
            ..Self::default()
        }
    }

    pub(crate) fn add(&mut self, pattern: String, subscriber: T) {
        if let Some(broker) = &self.broker {
            broker.interest(&pattern, true);
        }
        self.all.push((pattern, subscriber));
        self.matches.clear();
    }

    pub(crate) fn remove(&mut self, subscriber: T) {
        let broker = self.broker.as_ref();
        let before = self.all.len();
        self.all.retain(|(pattern, s)| {
            let keep = *s != subscriber;
            if let (false, Some(broker)) = (keep, broker) {
                broker.interest(pattern, false);
            }
            keep
        });
        if self.all.len() != before {
            self.matches.clear();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The subscribers whose pattern matches `topic` (shared with the
    /// cache: a publication costs a reference, not a copy of the list).
    pub(crate) fn matching(&mut self, topic: &Arc<str>) -> Arc<[T]> {
        if self.matches.len() >= MATCH_CACHE_TOPICS && !self.matches.contains_key(topic) {
            self.matches.clear();
        }
        let all = &self.all;
        self.matches
            .entry(Arc::clone(topic))
            .or_insert_with(|| {
                all.iter()
                    .filter(|(pattern, _)| patterns::matches(pattern, topic))
                    .map(|(_, subscriber)| *subscriber)
                    .collect()
            })
            .clone()
    }

    /// Every subscriber.
    pub(crate) fn all(&self) -> Vec<T> {
        self.all.iter().map(|(_, subscriber)| *subscriber).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_are_cached_until_the_subscriptions_change() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.add("chat.*".to_owned(), 1);
        subscriptions.add("chat.>".to_owned(), 2);
        let topic: Arc<str> = Arc::from("chat.lobby.x");
        assert_eq!(*subscriptions.matching(&topic), [2]);
        subscriptions.add("chat.lobby.*".to_owned(), 3);
        assert_eq!(
            *subscriptions.matching(&topic),
            [2, 3],
            "a new pattern is seen"
        );
        subscriptions.remove(2);
        assert_eq!(*subscriptions.matching(&topic), [3]);
        assert_eq!(subscriptions.all(), vec![1, 3]);
    }
}
