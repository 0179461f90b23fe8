//! Publish and subscribe (`spec/patterns.md` §3): `$publish` hands a
//! publication to the broker; `$subscribe` turns the request's stream into a
//! feed of every publication whose topic matches its pattern, indexed in
//! the loop's [`Subscriptions`](crate::subscriptions::Subscriptions).

use std::sync::Arc;

use bytes::Bytes;
use mux_core::patterns;
use mux_core::rpc::{ResponseHead, Status};
use mux_runtime::Ctx;

use super::feed::{Feed, FeedKind, Run};
use super::{bad_request, param, param_u64, Reserved, ReservedCall, Served};
use crate::broker::{Accepted, Acknowledge, BrokerError};
use crate::command::{Command, ReplyTo};
use crate::request::Response;

impl Reserved {
    /// `spec/patterns.md` §3.4.
    pub(super) fn serve_publish(&mut self, call: &mut ReservedCall<'_, '_>) -> Served {
        let topic = param(call.head, patterns::TOPIC).unwrap_or_default();
        patterns::check_topic(topic).map_err(bad_request)?;
        // A broker that spans servers answers once its backplane took the
        // publication, or refused it (§3.6): never a 200 for a lost one.
        let ack = call.handle.cloned().map(|handle| {
            let to = ReplyTo::Stream(call.key, call.id);
            Box::new(move |outcome: Result<(), BrokerError>| {
                let response = match outcome {
                    Ok(()) => Response::ok(Bytes::new()),
                    Err(err) => Response::with_status(Status::UNAVAILABLE, err.to_string()),
                };
                let _ = handle.send(Command::Done {
                    to,
                    result: Ok(response),
                });
            }) as Acknowledge
        });
        match self.hub.broker.publish(topic, &call.body, ack) {
            Ok(Accepted::Delivered) => call.respond(Response::ok(Bytes::new())),
            Ok(Accepted::Queued) => {}
            Err(err) => return Err(Response::with_status(Status::UNAVAILABLE, err.to_string())),
        }
        Ok(())
    }

    /// `spec/patterns.md` §3.2.
    pub(super) fn serve_subscribe(&mut self, call: &mut ReservedCall<'_, '_>) -> Served {
        let pattern = param(call.head, patterns::TOPIC).unwrap_or_default();
        patterns::check_pattern(pattern).map_err(bad_request)?;
        let (key, id) = (call.key, call.id);
        call.open_feed(ResponseHead::new(Status::OK));
        self.subscriptions.add(pattern.to_owned(), (key, id));
        let kind = FeedKind::Subscription {
            pattern: pattern.to_owned(),
        };
        let mut feed = Feed::new(kind, self.feed_limits);
        feed.batch_limit = param_u64(call.head, patterns::BATCH)
            .map_or(0, |limit| usize::try_from(limit).unwrap_or(usize::MAX));
        self.feeds.insert(key, id, feed);
        Ok(())
    }

    /// The broker may have lost publications (`missed` of them, perhaps
    /// [`patterns::LOST_UNKNOWN`]): every subscription is told now.
    pub(crate) fn on_gap(&mut self, ctx: &mut Ctx<'_>, missed: u64) {
        if missed > 0 {
            self.feeds.add_lost_to_subscriptions(missed);
            self.feeds.flush_subscriptions(ctx);
        }
    }

    /// Publications from the broker, in their order: each to every matching
    /// subscription of this loop, after announcing what this loop's full
    /// queue made it miss. A run of publications on one topic goes out
    /// subscriber by subscriber, each given the whole run, rather than
    /// publication by publication: each subscriber's connection and stream
    /// are then touched once per run, not once per publication (with a
    /// hundred subscribers, more state than a core's cache holds, so
    /// publication by publication every delivery waited on memory).
    /// Each subscriber still receives its publications in order; one that
    /// reads Publications messages (`:batch`, §3.2) gets the run in as few
    /// of them as [`MAX_BATCH`](super::feed::MAX_BATCH) allows, when
    /// nothing of its own waits before them.
    pub(crate) fn on_publications(
        &mut self,
        ctx: &mut Ctx<'_>,
        batch: &mut Vec<PendingPublication>,
    ) {
        let mut batch = batch.drain(..).peekable();
        let mut payloads = Vec::new();
        while let Some(first) = batch.next() {
            if first.missed > 0 {
                // Any subscription may have missed up to `missed` messages; say
                // so (spec patterns §3.5).
                self.feeds.add_lost_to_subscriptions(first.missed);
            }
            let targets = self.subscriptions.matching(&first.topic);
            payloads.clear();
            payloads.push(first.payload);
            while let Some(next) = batch.next_if(|p| p.missed == 0 && p.topic == first.topic) {
                payloads.push(next.payload);
            }
            if targets.is_empty() {
                continue;
            }
            let batched = payloads.len() > 1
                && targets
                    .iter()
                    .any(|&(key, id)| self.feeds.takes_batches(key, id));
            let mut run = Run::new(&first.topic, &payloads, batched);
            for &(key, id) in targets.iter() {
                if let Some(kind) = self.feeds.deliver_run(ctx, key, id, &mut run) {
                    self.unindex(key, id, kind);
                }
            }
        }
        self.feeds.publish_counts();
    }
}

/// A publication from the broker, waiting for the rest of the commands
/// served with it ([`Reserved::on_publications`]).
#[derive(Debug)]
pub(crate) struct PendingPublication {
    pub(crate) topic: Arc<str>,
    pub(crate) payload: Bytes,
    /// Publications this loop's full queue missed before this one.
    pub(crate) missed: u64,
}
