//! Publish and subscribe (`spec/patterns.md` §3): `$publish` hands a
//! publication to the broker; `$subscribe` turns the request's stream into a
//! feed of every publication whose topic matches its pattern. This module
//! owns the loop's subscriptions and a cache of which of them match a topic.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use mux_core::patterns::{self, FeedMessage};
use mux_core::rpc::{ResponseHead, Status};
use mux_core::StreamId;
use mux_runtime::{ConnKey, Ctx};

use super::feed::{Feed, FeedKind};
use super::{bad_request, param, Reserved, ReservedCall, Served};
use crate::request::Response;

/// Topics whose subscribers a loop remembers at most.
const MATCH_CACHE_TOPICS: usize = 4096;

/// The subscriptions of one loop.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    /// Every subscription, matched against every new topic.
    all: Vec<(String, ConnKey, StreamId)>,
    /// The subscribers of recently published topics, so that a busy topic is
    /// matched against every pattern once, not once per publication. Cleared
    /// whenever a subscription comes or goes, and when it grows past
    /// `MATCH_CACHE_TOPICS`.
    matches: HashMap<Arc<str>, Vec<(ConnKey, StreamId)>>,
}

impl Subscriptions {
    fn add(&mut self, pattern: String, key: ConnKey, id: StreamId) {
        self.all.push((pattern, key, id));
        self.matches.clear();
    }

    pub(super) fn remove(&mut self, key: ConnKey, id: StreamId) {
        self.all.retain(|(_, k, i)| (*k, *i) != (key, id));
        self.matches.clear();
    }

    /// The subscriptions whose pattern matches `topic`.
    fn matching(&mut self, topic: &Arc<str>) -> Vec<(ConnKey, StreamId)> {
        if self.matches.len() >= MATCH_CACHE_TOPICS && !self.matches.contains_key(topic) {
            self.matches.clear();
        }
        let all = &self.all;
        self.matches
            .entry(Arc::clone(topic))
            .or_insert_with(|| {
                all.iter()
                    .filter(|(pattern, _, _)| patterns::matches(pattern, topic))
                    .map(|(_, key, id)| (*key, *id))
                    .collect()
            })
            .clone()
    }
}

impl Reserved {
    /// `spec/patterns.md` §3.4.
    pub(super) fn serve_publish(&mut self, call: &mut ReservedCall<'_, '_>) -> Served {
        let topic = param(call.head, patterns::TOPIC).unwrap_or_default();
        patterns::check_topic(topic).map_err(bad_request)?;
        self.hub.broker.publish(topic, &call.body);
        call.respond(Response::ok(Bytes::new()));
        Ok(())
    }

    /// `spec/patterns.md` §3.2.
    pub(super) fn serve_subscribe(&mut self, call: &mut ReservedCall<'_, '_>) -> Served {
        let pattern = param(call.head, patterns::TOPIC).unwrap_or_default();
        patterns::check_pattern(pattern).map_err(bad_request)?;
        let (key, id) = (call.key, call.id);
        call.open_feed(ResponseHead::new(Status::OK));
        self.subscriptions.add(pattern.to_owned(), key, id);
        let kind = FeedKind::Subscription {
            pattern: pattern.to_owned(),
        };
        self.feeds
            .insert(key, id, Feed::new(kind, self.feed_limits));
        Ok(())
    }

    /// A publication from the broker: to every matching subscription of this
    /// loop, after announcing what this loop's full queue made it miss.
    pub(crate) fn on_publication(
        &mut self,
        ctx: &mut Ctx<'_>,
        topic: Arc<str>,
        payload: Bytes,
        missed: u64,
    ) {
        if missed > 0 {
            // Any subscription may have missed up to `missed` messages; say
            // so (spec patterns §3.5).
            self.feeds.add_lost_to_subscriptions(missed);
        }
        let targets = self.subscriptions.matching(&topic);
        if targets.is_empty() {
            return;
        }
        let message = FeedMessage::Publication {
            topic: topic.to_string(),
            payload,
        }
        .encode();
        for (key, id) in targets {
            self.deliver(ctx, key, id, message.clone());
        }
    }
}
