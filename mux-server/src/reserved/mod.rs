//! The patterns' reserved routes (`spec/patterns.md`), served on the loop
//! without any user handler: publish and subscribe (§3), long polls (§4.2),
//! event streams (§5), sessions (§6) and pushes to every client (§2).
//!
//! One module per pattern; each owns its index (subscriptions, watchers,
//! parked polls) and removes a stream from it when the stream ends. The
//! feeds those indexes point at are shared, in [`feed::Feeds`].

mod events;
pub(crate) mod feed;
mod polls;
mod publish_stream;
mod pubsub;
mod push;
mod sessions;

use std::sync::Arc;
use std::time::Instant;

use foldhash::HashMap;
use mux_core::patterns;
use mux_core::rpc::{RequestHead, ResponseHead, Status};
use mux_core::StreamId;
use mux_runtime::{ConnKey, Ctx};

pub(crate) use self::feed::FeedLimits;
use self::feed::{FeedKind, Feeds};
pub(crate) use self::polls::polls_timer;
use self::polls::LongPolls;
pub(crate) use self::publish_stream::{Permit, PublishStream};
pub(crate) use self::pubsub::PendingPublication;
pub(crate) use self::sessions::unknown_session;
use crate::hub::Hub;
use crate::replies::Replies;
use crate::request::Response;

/// Per-loop state of every reserved pattern.
#[derive(Debug)]
pub(crate) struct Reserved {
    hub: Arc<Hub>,
    feed_limits: FeedLimits,
    feeds: Feeds,
    subscriptions: crate::subscriptions::Subscriptions<(ConnKey, StreamId)>,
    /// Feeds by event stream name (`spec/patterns.md` §5).
    event_watchers: Watchers,
    /// Feeds by session token (`spec/patterns.md` §6).
    session_watchers: Watchers,
    polls: LongPolls,
    /// Sessions each connection opened, bounded (`spec/patterns.md` §6.1).
    sessions_opened: HashMap<ConnKey, u32>,
}

/// What serving a reserved request gives: `Ok` once it is answered, or
/// became a feed or a parked poll; `Err` with the refusal to answer it with
/// (a missing or invalid value, `400`; a gap or an unknown session, `410`).
type Served = Result<(), Response>;

/// A request to a reserved route, complete, with what answering it needs.
#[derive(Debug)]
pub(crate) struct ReservedCall<'a, 'c> {
    pub(crate) ctx: &'a mut Ctx<'c>,
    pub(crate) replies: &'a mut Replies,
    pub(crate) key: ConnKey,
    pub(crate) id: StreamId,
    pub(crate) head: &'a RequestHead,
    pub(crate) body: bytes::Bytes,
    /// Who asked (the gate let the request through as this identity).
    pub(crate) identity: Option<&'a crate::auth::Identity>,
    /// The loop's own handle, for answers that come later (`$publish`
    /// through a backplane).
    pub(crate) handle: Option<&'a mux_runtime::LoopHandle<crate::command::Command>>,
}

impl ReservedCall<'_, '_> {
    /// Answers the request and ends its stream.
    fn respond(&mut self, response: Response) {
        self.replies.respond(self.ctx, self.key, self.id, response);
    }

    /// Writes the head of the feed this request becomes.
    fn open_feed(&mut self, head: ResponseHead) {
        self.replies.open_feed(self.ctx, self.key, self.id, head);
    }
}

impl Reserved {
    pub(crate) fn new(hub: Arc<Hub>, feed_limits: FeedLimits) -> Self {
        let feeds = Feeds::new(Arc::clone(&hub.open_feeds), Arc::clone(&hub.feed_counters));
        let subscriptions =
            crate::subscriptions::Subscriptions::with_broker(Arc::clone(&hub.broker));
        Self {
            hub,
            feed_limits,
            feeds,
            subscriptions,
            event_watchers: Watchers::default(),
            session_watchers: Watchers::default(),
            polls: LongPolls::default(),
            sessions_opened: HashMap::default(),
        }
    }

    /// Whether `route` is served here once its request is complete.
    pub(crate) fn serves(route: &str) -> bool {
        matches!(
            route,
            patterns::PUBLISH
                | patterns::SUBSCRIBE
                | patterns::EVENTS
                | patterns::LONG_POLL
                | patterns::SESSION_OPEN
                | patterns::SESSION_ATTACH
        )
    }

    /// Serves a complete request to a reserved route.
    pub(crate) fn serve(&mut self, mut call: ReservedCall<'_, '_>) {
        let served = match call.head.route.as_str() {
            patterns::PUBLISH => self.serve_publish(&mut call),
            patterns::SUBSCRIBE => self.serve_subscribe(&mut call),
            patterns::EVENTS => self.serve_events(&mut call),
            patterns::LONG_POLL => self.serve_long_poll(&mut call),
            patterns::SESSION_OPEN => self.serve_session_open(&mut call),
            patterns::SESSION_ATTACH => self.serve_session_attach(&mut call),
            _ => return,
        };
        if let Err(refusal) = served {
            call.respond(refusal);
        }
    }

    /// The hub of the server this loop belongs to.
    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Whether the stream carries a feed (its client direction only ends it).
    pub(crate) fn has_feed(&self, key: ConnKey, id: StreamId) -> bool {
        self.feeds.contains(key, id)
    }

    /// Feeds of this loop.
    pub(crate) fn feed_count(&self) -> usize {
        self.feeds.len()
    }

    /// A feed's stream has room again.
    pub(crate) fn on_writable(&mut self, ctx: &mut Ctx<'_>, key: ConnKey, id: StreamId) {
        let now = ctx.now;
        let ended = ctx
            .conn(key)
            .and_then(|conn| self.feeds.flush(conn, key, id, now));
        if let Some(kind) = ended {
            self.unindex(key, id, kind);
        }
    }

    /// The loop's pass ends: anything counted and not yet added goes to
    /// the server's counters.
    pub(crate) fn on_pass_end(&mut self) {
        self.feeds.publish_counts();
    }

    /// Delivers a message to a feed; forgets the feed if its subscriber was
    /// too slow. The delivery is counted locally: the caller adds the counts
    /// to the server's once its batch is done, before anything is flushed,
    /// so that the metric never lags a delivery a subscriber has seen.
    fn deliver_entry(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        entry: &crate::event_log::Entry,
    ) {
        if let Some(kind) = self.feeds.deliver_entry(ctx, key, id, entry) {
            self.unindex(key, id, kind);
        }
        self.feeds.publish_counts();
    }

    /// Removes a stream's feed, wherever it is indexed.
    pub(crate) fn remove_feed(&mut self, key: ConnKey, id: StreamId) {
        if let Some(kind) = self.feeds.remove(key, id) {
            self.unindex(key, id, kind);
        }
    }

    fn unindex(&mut self, key: ConnKey, id: StreamId, kind: FeedKind) {
        match kind {
            FeedKind::Subscription { .. } => self.subscriptions.remove((key, id)),
            FeedKind::Events { stream } => self.event_watchers.remove(&stream, key, id),
            FeedKind::Session { token } => self.session_watchers.remove(&token, key, id),
        }
    }

    /// A stream ended (reset): forget its feed or parked poll.
    pub(crate) fn forget_stream(&mut self, key: ConnKey, id: StreamId) {
        self.remove_feed(key, id);
        self.polls.forget_stream(key, id);
    }

    /// A connection closed: forget everything of it.
    pub(crate) fn forget_conn(&mut self, key: ConnKey) {
        for (id, kind) in self.feeds.remove_conn(key) {
            self.unindex(key, id, kind);
        }
        self.polls.forget_conn(key);
        self.sessions_opened.remove(&key);
    }

    /// Ends every feed (END_STREAM: clients resubscribe elsewhere) and
    /// answers every parked long poll, so that a graceful shutdown is not held
    /// up by streams that never end by themselves.
    pub(crate) fn end_all(&mut self, ctx: &mut Ctx<'_>, replies: &mut Replies) {
        for (key, id) in self.feeds.keys() {
            if let Some(conn) = ctx.conn(key) {
                let _ = conn.finish(id);
            }
            self.remove_feed(key, id);
        }
        self.answer_all_polls(ctx, replies);
    }

    /// Drops expired sessions.
    pub(crate) fn sweep_sessions(&self, now: Instant) {
        self.hub.sessions.sweep(now);
    }
}

/// Feeds by the name they watch (an event stream, a session). A name leaves
/// the index with its last watcher.
#[derive(Debug, Default)]
struct Watchers {
    by_name: HashMap<String, Vec<(ConnKey, StreamId)>>,
}

impl Watchers {
    fn add(&mut self, name: &str, key: ConnKey, id: StreamId) {
        self.by_name
            .entry(name.to_owned())
            .or_default()
            .push((key, id));
    }

    fn remove(&mut self, name: &str, key: ConnKey, id: StreamId) {
        if let Some(watchers) = self.by_name.get_mut(name) {
            watchers.retain(|w| *w != (key, id));
            if watchers.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    fn of(&self, name: &str) -> Vec<(ConnKey, StreamId)> {
        self.by_name.get(name).cloned().unwrap_or_default()
    }
}

/// A reserved metadata value as text (`spec/patterns.md` §1.1).
pub(crate) fn param<'a>(head: &'a RequestHead, name: &[u8]) -> Option<&'a str> {
    head.metadata
        .get(name)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// A reserved metadata value as a number.
pub(super) fn param_u64(head: &RequestHead, name: &[u8]) -> Option<u64> {
    param(head, name).and_then(|v| v.trim().parse().ok())
}

/// A reserved metadata value the route cannot do without.
fn required<'a>(head: &'a RequestHead, name: &[u8]) -> Result<&'a str, Response> {
    param(head, name).ok_or_else(|| missing(name))
}

/// The answer to a request without a reserved value the route needs.
fn missing(name: &[u8]) -> Response {
    let name = String::from_utf8_lossy(name);
    Response::with_status(Status::BAD_REQUEST, format!("no {name}"))
}

/// The answer to a request whose reserved value is invalid.
fn bad_request(err: impl std::fmt::Display) -> Response {
    Response::with_status(Status::BAD_REQUEST, err.to_string())
}

/// The `410` of a replay that starts before the oldest entry kept.
fn gone(what: &str, oldest: u64) -> Response {
    Response::with_status(
        Status::GONE,
        format!("{what} before {oldest} are no longer kept"),
    )
}

/// The `503` of a request the event store cannot serve now.
fn unavailable(err: crate::event_store::StoreError) -> Response {
    Response::with_status(Status::UNAVAILABLE, err.to_string())
}
