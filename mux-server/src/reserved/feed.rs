//! Outgoing message feeds on a client-opened stream: subscriptions, event
//! streams and session feeds (`spec/patterns.md` §3-§6). A feed writes
//! messages into the stream while its send buffer has room, then queues a
//! bounded number, and applies the slow-subscriber policy beyond that.
//! [`Feeds`] holds every feed of a loop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use mux_core::patterns::FeedMessage;
use mux_core::{Connection, ErrorCode, StreamId};
use mux_runtime::{ConnKey, Ctx, StreamMap};

use crate::broker::SlowSubscriber;
use crate::event_log::Entry;
use crate::hub::FeedCounters;

/// What the feed carries; says which index it is registered in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FeedKind {
    Subscription { pattern: String },
    Events { stream: String },
    Session { token: String },
}

/// What a feed may hold for a subscriber that does not keep up: the
/// slow-subscriber policy's message count, and a byte cap (the newest
/// message is always kept, however large).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeedLimits {
    pub(crate) policy: SlowSubscriber,
    pub(crate) max_bytes: usize,
}

/// One feed.
#[derive(Debug)]
pub(crate) struct Feed {
    pub(crate) kind: FeedKind,
    /// Messages (or the rest of one) not yet taken by the stream.
    queue: VecDeque<Bytes>,
    /// The front of `queue` is the rest of a message already partly sent.
    partial_front: bool,
    /// Bytes in `queue`.
    queued_bytes: usize,
    /// Messages dropped since the last delivery, to announce.
    lost: u64,
    limits: FeedLimits,
    /// The highest event id delivered, to skip duplicates between a replay
    /// and the live entries that raced it.
    pub(crate) last_id: u64,
    /// The epoch of the log it follows (0 until known).
    pub(crate) epoch: u64,
}

/// The feed's subscriber is too slow and its policy says to end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooSlow;

impl Feed {
    pub(crate) fn new(kind: FeedKind, limits: FeedLimits) -> Self {
        Self {
            kind,
            queue: VecDeque::new(),
            partial_front: false,
            queued_bytes: 0,
            lost: 0,
            limits,
            last_id: 0,
            epoch: 0,
        }
    }

    /// Counts messages this subscriber may have missed elsewhere (a full
    /// cross-loop queue); announced before its next message.
    pub(crate) fn add_lost(&mut self, count: u64) {
        self.lost = self.lost.saturating_add(count);
    }

    /// Delivers `message`, or queues it, or applies the policy; `Ok` with
    /// how many queued messages the policy dropped.
    pub(crate) fn deliver(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        message: Bytes,
    ) -> Result<u64, TooSlow> {
        let limit = match self.limits.policy {
            SlowSubscriber::DropOldest { queue } | SlowSubscriber::Disconnect { queue } => {
                queue.max(1)
            }
        };
        self.queued_bytes += message.len();
        self.queue.push_back(message);
        self.flush(conn, id);
        let mut dropped = 0;
        loop {
            let waiting = self.queue.len() - usize::from(self.partial_front);
            let over =
                waiting > limit || (waiting > 1 && self.queued_bytes > self.limits.max_bytes);
            if !over {
                return Ok(dropped);
            }
            match self.limits.policy {
                SlowSubscriber::Disconnect { .. } => return Err(TooSlow),
                SlowSubscriber::DropOldest { .. } => {
                    let index = usize::from(self.partial_front);
                    if let Some(dropped) = self.queue.remove(index) {
                        self.queued_bytes -= dropped.len();
                    }
                    self.lost += 1;
                    dropped += 1;
                }
            }
        }
    }

    /// Writes queued messages while the stream takes them (after `Writable`).
    pub(crate) fn flush(&mut self, conn: &mut Connection, id: StreamId) {
        loop {
            if self.lost > 0 && !self.partial_front {
                let notice = FeedMessage::Lost { count: self.lost }.encode();
                if !Self::send_whole(conn, id, &notice) {
                    return;
                }
                self.lost = 0;
            }
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            let len = front.len();
            match conn.send(id, front.clone(), true, false) {
                Ok(accepted) if accepted == len => {
                    self.queue.pop_front();
                    self.queued_bytes -= len;
                    self.partial_front = false;
                }
                Ok(accepted) => {
                    let _ = front.split_to(accepted);
                    self.queued_bytes -= accepted;
                    self.partial_front = self.partial_front || accepted > 0;
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// Sends a small control message only if it fits whole.
    fn send_whole(conn: &mut Connection, id: StreamId, message: &Bytes) -> bool {
        if conn.send_capacity(id) < message.len() {
            return false;
        }
        matches!(conn.send(id, message.clone(), true, false), Ok(n) if n == message.len())
    }

    /// Ends a feed because its subscriber is too slow (`spec/patterns.md` §3.5).
    pub(crate) fn disconnect(conn: &mut Connection, id: StreamId) {
        let _ = conn.reset(id, ErrorCode::ENHANCE_YOUR_CALM);
    }
}

/// An event-log entry as a feed message (`spec/patterns.md` §5.1).
pub(crate) fn event_message(entry: &Entry) -> Bytes {
    FeedMessage::Event {
        id: entry.id,
        kind: entry.kind.as_str().into(),
        data: entry.data.clone(),
    }
    .encode()
}

/// Every feed of one loop, by stream.
#[derive(Debug)]
pub(crate) struct Feeds {
    map: StreamMap<Feed>,
    /// Feeds of every loop of the server (`ServerHandle::feed_count`).
    open: Arc<AtomicUsize>,
    counters: Arc<FeedCounters>,
}

impl Feeds {
    pub(crate) fn new(open: Arc<AtomicUsize>, counters: Arc<FeedCounters>) -> Self {
        Self {
            map: StreamMap::default(),
            open,
            counters,
        }
    }

    pub(crate) fn insert(&mut self, key: ConnKey, id: StreamId, feed: Feed) {
        if self.map.insert(key, id, feed).is_none() {
            self.open.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn contains(&self, key: ConnKey, id: StreamId) -> bool {
        self.map.contains(key, id)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Delivers `message`; a subscriber too slow for its policy is reset
    /// and its feed removed: its kind is returned so that the index holding
    /// it forgets it too.
    pub(crate) fn deliver(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        message: Bytes,
    ) -> Option<FeedKind> {
        let (Some(conn), Some(feed)) = (ctx.conn(key), self.map.get_mut(key, id)) else {
            return None;
        };
        if let Ok(dropped) = feed.deliver(conn, id, message) {
            self.counters.delivered();
            self.counters.lost(dropped);
            return None;
        }
        self.counters.lost(1);
        Feed::disconnect(conn, id);
        self.remove(key, id)
    }

    /// Delivers a log entry unless the feed already had it (a replay raced it).
    pub(crate) fn deliver_entry(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        entry: &Entry,
    ) -> Option<FeedKind> {
        let feed = self.map.get_mut(key, id)?;
        if feed.epoch == 0 {
            feed.epoch = entry.epoch;
        } else if entry.epoch != feed.epoch {
            // The log started over (a shared store lost its data, or a log
            // was evicted and made anew): its ids count from 1 again, so the
            // feed ends and the client resumes in the new epoch (§5.3).
            if let Some(conn) = ctx.conn(key) {
                let _ = conn.finish(id);
            }
            return self.remove(key, id);
        }
        if entry.id <= feed.last_id {
            return None;
        }
        feed.last_id = entry.id;
        self.deliver(ctx, key, id, event_message(entry))
    }

    /// Writes a feed's queue after `Event::Writable`.
    pub(crate) fn flush(&mut self, conn: &mut Connection, key: ConnKey, id: StreamId) {
        if let Some(feed) = self.map.get_mut(key, id) {
            feed.flush(conn, id);
        }
    }

    /// Announces `missed` possibly lost publications to every subscription
    /// (a full cross-loop queue, `spec/patterns.md` §3.5).
    pub(crate) fn add_lost_to_subscriptions(&mut self, missed: u64) {
        for feed in self.map.values_mut() {
            if matches!(feed.kind, FeedKind::Subscription { .. }) {
                feed.add_lost(missed);
            }
        }
    }

    /// Writes what every subscription has queued (a Lost notice, after
    /// [`Feeds::add_lost_to_subscriptions`]).
    pub(crate) fn flush_subscriptions(&mut self, ctx: &mut Ctx<'_>) {
        for (key, id) in self.map.keys().collect::<Vec<_>>() {
            let is_subscription = self
                .map
                .get(key, id)
                .is_some_and(|feed| matches!(feed.kind, FeedKind::Subscription { .. }));
            if let (true, Some(conn)) = (is_subscription, ctx.conn(key)) {
                if let Some(feed) = self.map.get_mut(key, id) {
                    feed.flush(conn, id);
                }
            }
        }
    }

    /// Removes a feed, returning its kind.
    pub(crate) fn remove(&mut self, key: ConnKey, id: StreamId) -> Option<FeedKind> {
        let feed = self.map.remove(key, id)?;
        self.open.fetch_sub(1, Ordering::Relaxed);
        Some(feed.kind)
    }

    /// Removes every feed of a connection.
    pub(crate) fn remove_conn(&mut self, key: ConnKey) -> Vec<(StreamId, FeedKind)> {
        let removed = self.map.remove_conn(key);
        self.open.fetch_sub(removed.len(), Ordering::Relaxed);
        removed
            .into_iter()
            .map(|(id, feed)| (id, feed.kind))
            .collect()
    }

    /// Every stream with a feed.
    pub(crate) fn keys(&self) -> Vec<(ConnKey, StreamId)> {
        self.map.keys().collect()
    }
}
