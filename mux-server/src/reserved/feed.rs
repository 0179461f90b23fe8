//! Outgoing message feeds on a client-opened stream: subscriptions, event
//! streams and session feeds (`spec/patterns.md` §3-§6). A feed writes
//! messages into the stream while its send buffer has room, then queues
//! them, bounded in count, bytes and time, and applies the slow-subscriber
//! policy beyond that (§3.5). [`Feeds`] holds every feed of a loop.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mux_core::patterns::{FeedMessage, PublicationsBuilder};
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
/// slow-subscriber policy's message count, a byte cap (the newest message is
/// always kept, however large), and how long a message may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeedLimits {
    pub(crate) policy: SlowSubscriber,
    pub(crate) max_bytes: usize,
    pub(crate) max_wait: Duration,
}

/// A message waiting for the stream to take it.
#[derive(Debug)]
struct Queued {
    message: Bytes,
    since: Instant,
}

/// One feed.
#[derive(Debug)]
pub(crate) struct Feed {
    pub(crate) kind: FeedKind,
    /// Messages (or the rest of one) not yet taken by the stream.
    queue: VecDeque<Queued>,
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
    /// The largest Publications message the subscriber reads
    /// (`spec/patterns.md` §3.3); 0 if it reads none.
    pub(crate) batch_limit: usize,
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
            batch_limit: 0,
        }
    }

    /// Counts messages this subscriber may have missed elsewhere (a full
    /// cross-loop queue); announced before its next message.
    pub(crate) fn add_lost(&mut self, count: u64) {
        self.lost = self.lost.saturating_add(count);
    }

    /// Delivers `message`, or queues it, or applies the policy; `Ok` with
    /// how many queued messages the policy dropped.
    ///
    /// With nothing waiting, the stream is given a copy and the feed keeps
    /// no handle of its own (only what the stream does not take waits):
    /// the message is shared by every subscriber of the loop, and a handle
    /// per subscriber is a reference-count update on it at each delivery
    /// and another when the handle is dropped, long after, on memory gone
    /// cold (see [`Connection::send_copy`]).
    pub(crate) fn deliver(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        message: &Bytes,
        now: Instant,
    ) -> Result<u64, TooSlow> {
        if self.queue.is_empty() && self.lost == 0 {
            if let Ok(accepted) = conn.send_copy(id, message, true, false) {
                if accepted < message.len() {
                    self.keep_rest(message.slice(accepted..), accepted > 0, now);
                }
                return Ok(0);
            }
        }
        let limit = match self.limits.policy {
            SlowSubscriber::DropOldest { queue } | SlowSubscriber::Disconnect { queue } => {
                queue.max(1)
            }
        };
        self.queued_bytes += message.len();
        self.queue.push_back(Queued {
            message: message.clone(),
            since: now,
        });
        let mut dropped = self.flush(conn, id, now)?;
        loop {
            let waiting = self.queue.len() - usize::from(self.partial_front);
            let over =
                waiting > limit || (waiting > 1 && self.queued_bytes > self.limits.max_bytes);
            if !over {
                return Ok(dropped);
            }
            self.drop_oldest_waiting()?;
            dropped += 1;
        }
    }

    /// Gives the stream `batch`, a Publications message, if the subscriber
    /// reads one that large, nothing waits before it and the stream has
    /// room for all of it; `false`, and nothing sent, otherwise (the caller
    /// then delivers its publications one by one, under the policy).
    fn deliver_batch(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        batch: &Bytes,
        now: Instant,
    ) -> bool {
        let clear = self.queue.is_empty() && self.lost == 0 && !batch.is_empty();
        if batch.len() > self.batch_limit || !clear || conn.send_capacity(id) < batch.len() {
            return false;
        }
        match conn.send_copy(id, batch, true, false) {
            Ok(accepted) if accepted == batch.len() => true,
            Ok(0) | Err(_) => false,
            // Less than the room it had: what it took cannot be taken
            // back, so the rest waits as a begun message, as in `deliver`.
            Ok(accepted) => {
                self.keep_rest(batch.slice(accepted..), true, now);
                true
            }
        }
    }

    /// Queues what the stream did not take of a message given to it with
    /// nothing waiting; `begun` if it took some (the rest is then never
    /// dropped).
    fn keep_rest(&mut self, rest: Bytes, begun: bool, now: Instant) {
        self.queued_bytes += rest.len();
        self.queue.push_back(Queued {
            message: rest,
            since: now,
        });
        self.partial_front = begun;
    }

    /// Writes queued messages while the stream takes them (after `Writable`,
    /// or a delivery), first applying the policy to those that waited longer
    /// than the limit; `Ok` with how many it dropped.
    pub(crate) fn flush(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        now: Instant,
    ) -> Result<u64, TooSlow> {
        let mut dropped = 0;
        while let Some(oldest) = self.queue.get(usize::from(self.partial_front)) {
            if now.saturating_duration_since(oldest.since) <= self.limits.max_wait {
                break;
            }
            self.drop_oldest_waiting()?;
            dropped += 1;
        }
        self.write(conn, id);
        Ok(dropped)
    }

    /// Applies the policy to the oldest message not yet begun: drops it
    /// (counted for the next Lost notice) or gives up on the subscriber.
    fn drop_oldest_waiting(&mut self) -> Result<(), TooSlow> {
        match self.limits.policy {
            SlowSubscriber::Disconnect { .. } => Err(TooSlow),
            SlowSubscriber::DropOldest { .. } => {
                if let Some(gone) = self.queue.remove(usize::from(self.partial_front)) {
                    self.queued_bytes -= gone.message.len();
                }
                self.lost += 1;
                Ok(())
            }
        }
    }

    /// Writes queued messages while the stream takes them, a Lost notice
    /// first if some were dropped.
    fn write(&mut self, conn: &mut Connection, id: StreamId) {
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
            let len = front.message.len();
            match conn.send_copy(id, &front.message, true, false) {
                Ok(accepted) if accepted == len => {
                    self.queue.pop_front();
                    self.queued_bytes -= len;
                    self.partial_front = false;
                }
                Ok(accepted) => {
                    let _ = front.message.split_to(accepted);
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

/// Bytes of payloads a Publications message carries at most: one frame's
/// quantum (`mux-v1.md` §12.2), so that a batch delays another stream's
/// message no more than a frame would.
pub(crate) const MAX_BATCH: usize = 16 * 1024;

/// A run of publications on one topic, ready for every subscriber of a
/// loop: in parts as Publications messages (`spec/patterns.md` §3.3), and
/// each as a Publication message, made only when a subscriber needs them.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    pub(crate) parts: Vec<Part>,
    pub(crate) singles: Singles<'a>,
}

/// A run's publications as Publication messages, made when first asked for.
#[derive(Debug)]
pub(crate) struct Singles<'a> {
    topic: &'a str,
    payloads: &'a [Bytes],
    /// Empty until first needed.
    made: Vec<Bytes>,
}

/// Consecutive publications of a [`Run`] in one Publications message.
#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) message: Bytes,
    /// Their positions in the run.
    pub(crate) covers: Range<usize>,
}

impl<'a> Run<'a> {
    /// `payloads`, published on `topic`: in parts of at most [`MAX_BATCH`]
    /// bytes of payloads and lengths (a larger payload alone) if
    /// `batched`, else in one part that is never sent as such.
    pub(crate) fn new(topic: &'a str, payloads: &'a [Bytes], batched: bool) -> Self {
        let mut parts = Vec::new();
        if !batched {
            parts.push(Part {
                message: Bytes::new(),
                covers: 0..payloads.len(),
            });
        }
        let mut start = 0;
        while batched && start < payloads.len() {
            let rest = payloads.get(start..).unwrap_or_default();
            let wanted = rest.iter().map(|p| PublicationsBuilder::entry_len(p.len()));
            let mut builder = PublicationsBuilder::new(topic, wanted.sum::<usize>().min(MAX_BATCH));
            let header = builder.len();
            let mut end = start;
            while let Some(payload) = payloads.get(end) {
                let entries =
                    builder.len() - header + PublicationsBuilder::entry_len(payload.len());
                if (entries > MAX_BATCH && !builder.is_empty()) || !builder.push(payload) {
                    break;
                }
                end += 1;
            }
            // A payload too long for a length goes alone, as a Publication.
            let end = end.max(start + 1);
            parts.push(Part {
                message: builder.finish(),
                covers: start..end,
            });
            start = end;
        }
        Self {
            parts,
            singles: Singles {
                topic,
                payloads,
                made: Vec::new(),
            },
        }
    }
}

impl Singles<'_> {
    /// The publications at `covers` as Publication messages.
    pub(crate) fn get(&mut self, covers: Range<usize>) -> &[Bytes] {
        if self.made.is_empty() {
            let topic = self.topic;
            self.made = (self.payloads.iter())
                .map(|payload| {
                    FeedMessage::Publication {
                        topic: topic.into(),
                        payload: payload.clone(),
                    }
                    .encode()
                })
                .collect();
        }
        self.made.get(covers).unwrap_or_default()
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
    /// Deliveries not yet added to `counters`: every loop adding to the
    /// shared counter at each delivery made its cache line cross cores a
    /// million times a second in a fan-out; a batch of publications adds
    /// its count once, before the loop flushes what it delivered.
    delivered: u64,
}

impl Feeds {
    pub(crate) fn new(open: Arc<AtomicUsize>, counters: Arc<FeedCounters>) -> Self {
        Self {
            map: StreamMap::default(),
            open,
            counters,
            delivered: 0,
        }
    }

    /// Adds the deliveries counted since the last call to the server's
    /// counters.
    pub(crate) fn publish_counts(&mut self) {
        if self.delivered > 0 {
            self.counters
                .add_deliveries(std::mem::take(&mut self.delivered));
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
        message: &Bytes,
    ) -> Option<FeedKind> {
        let now = ctx.now;
        let (Some(conn), Some(feed)) = (ctx.conn(key), self.map.get_mut(key, id)) else {
            return None;
        };
        let delivered = feed.deliver(conn, id, message, now);
        if delivered.is_ok() {
            self.delivered += 1;
        }
        self.settle(conn, key, id, delivered)
    }

    /// Delivers a run of publications on one topic: each part of `run` as
    /// one Publications message where the feed takes it whole, its
    /// publications one by one otherwise. As [`Feeds::deliver`], the kind
    /// of a feed removed for being too slow.
    pub(crate) fn deliver_run(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        run: &mut Run<'_>,
    ) -> Option<FeedKind> {
        let now = ctx.now;
        let (Some(conn), Some(feed)) = (ctx.conn(key), self.map.get_mut(key, id)) else {
            return None;
        };
        let mut outcome = Ok(0);
        'parts: for part in &run.parts {
            let covers = part.covers.clone();
            if covers.len() > 1 && feed.deliver_batch(conn, id, &part.message, now) {
                self.delivered += covers.len() as u64;
                continue;
            }
            for message in run.singles.get(covers) {
                match feed.deliver(conn, id, message, now) {
                    Ok(dropped) => {
                        self.delivered += 1;
                        outcome = outcome.map(|lost| lost + dropped);
                    }
                    Err(TooSlow) => {
                        outcome = Err(TooSlow);
                        break 'parts;
                    }
                }
            }
        }
        self.settle(conn, key, id, outcome)
    }

    /// Whether the feed on stream `id` reads Publications messages.
    pub(crate) fn takes_batches(&self, key: ConnKey, id: StreamId) -> bool {
        self.map
            .get(key, id)
            .is_some_and(|feed| feed.batch_limit > 0)
    }

    /// Counts what a delivery or flush dropped; resets and removes a feed
    /// whose subscriber was too slow.
    fn settle(
        &mut self,
        conn: &mut Connection,
        key: ConnKey,
        id: StreamId,
        outcome: Result<u64, TooSlow>,
    ) -> Option<FeedKind> {
        match outcome {
            Ok(dropped) => {
                self.counters.lost(dropped);
                None
            }
            Err(TooSlow) => {
                self.counters.lost(1);
                Feed::disconnect(conn, id);
                self.remove(key, id)
            }
        }
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
        self.deliver(ctx, key, id, &event_message(entry))
    }

    /// Writes a feed's queue after `Event::Writable`; like
    /// [`Feeds::deliver`], returns the kind of a feed it ended.
    pub(crate) fn flush(
        &mut self,
        conn: &mut Connection,
        key: ConnKey,
        id: StreamId,
        now: Instant,
    ) -> Option<FeedKind> {
        let flushed = self.map.get_mut(key, id)?.flush(conn, id, now);
        self.settle(conn, key, id, flushed)
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
                    feed.write(conn, id);
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use mux_core::frame::Metadata;
    use mux_core::{Config, Event, Side};

    const WAIT: Duration = Duration::from_millis(100);

    /// A server connection with one stream the client opened, whose send
    /// buffer takes 1,024 bytes: what is delivered past that queues.
    fn server_stream(now: Instant) -> (Connection, StreamId) {
        let mut client = Connection::new(Side::Client, Config::default(), now);
        let config = Config {
            stream_send_buffer: 1024,
            ..Config::default()
        };
        let mut server = Connection::new(Side::Server, config, now);
        client.open(Metadata::new(), false).expect("open");
        for _ in 0..4 {
            let (mut to_server, mut to_client) = (BytesMut::new(), BytesMut::new());
            while client.poll_transmit(now, &mut to_server) {}
            server
                .handle_read(now, &mut to_server)
                .expect("server reads");
            while server.poll_transmit(now, &mut to_client) {}
            client
                .handle_read(now, &mut to_client)
                .expect("client reads");
        }
        while let Some(event) = server.poll_event() {
            if let Event::StreamOpened { id, .. } = event {
                return (server, id);
            }
        }
        panic!("the server saw no stream");
    }

    fn feed(policy: SlowSubscriber) -> Feed {
        let limits = FeedLimits {
            policy,
            max_bytes: usize::MAX,
            max_wait: WAIT,
        };
        Feed::new(
            FeedKind::Subscription {
                pattern: "t".into(),
            },
            limits,
        )
    }

    fn message(byte: u8) -> Bytes {
        Bytes::from(vec![byte; 1000])
    }

    /// A run's parts cover it in order, each a Publications message of at
    /// most `MAX_BATCH` bytes of payloads holding exactly its publications;
    /// a payload larger than that goes alone.
    #[test]
    fn runs_are_cut_into_publications_messages_of_bounded_size() {
        let mut payloads: Vec<Bytes> = (0..3u8).map(|n| Bytes::from(vec![n; 10])).collect();
        payloads.push(Bytes::from(vec![9; MAX_BATCH + 1]));
        payloads.extend((0..600u16).map(|n| Bytes::from(n.to_be_bytes().repeat(32))));
        let mut run = Run::new("t.x", &payloads, true);
        assert_eq!(run.singles.get(0..payloads.len()).len(), payloads.len());
        let mut next = 0;
        for part in &run.parts {
            assert_eq!(part.covers.start, next, "parts are consecutive");
            next = part.covers.end;
            let covered = &payloads[part.covers.clone()];
            if covered.len() == 1 {
                continue;
            }
            let Ok(FeedMessage::Publications { topic, payloads }) =
                FeedMessage::decode(part.message.clone())
            else {
                panic!("a Publications message");
            };
            assert_eq!(&*topic, "t.x");
            assert!(payloads.eq(covered.iter().cloned()));
            let entries = part.message.len() - 2 - topic.len();
            assert!(entries <= MAX_BATCH, "{entries} bytes of payloads");
        }
        assert_eq!(next, payloads.len(), "the parts cover the run");
        assert_eq!(run.parts[1].covers, 3..4, "the large payload goes alone");
        assert!(run.parts.len() > 3, "600 payloads of 68 bytes take several");
        let unbatched = Run::new("t.x", &payloads, false);
        assert_eq!(unbatched.parts.len(), 1);
        assert!(unbatched.parts[0].message.is_empty());
    }

    /// A Publications message goes only to a subscriber that reads them,
    /// only whole, and only when nothing waits before it.
    #[test]
    fn a_batch_goes_whole_to_a_subscriber_that_takes_batches_with_nothing_waiting() {
        let start = Instant::now();
        let (mut conn, id) = server_stream(start);
        let payloads = [Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        let small = Run::new("t", &payloads, true);
        let batch = &small.parts[0].message;
        let mut plain = feed(SlowSubscriber::DropOldest { queue: 1024 });
        assert!(!plain.deliver_batch(&mut conn, id, batch, start));
        let mut batched = feed(SlowSubscriber::DropOldest { queue: 1024 });
        batched.batch_limit = 64;
        batched.add_lost(1);
        assert!(
            !batched.deliver_batch(&mut conn, id, batch, start),
            "a Lost notice first"
        );
        batched.lost = 0;
        assert!(batched.deliver_batch(&mut conn, id, batch, start));
        let too_large = Bytes::from(vec![0; 1024]);
        batched.batch_limit = 4096;
        assert!(
            !batched.deliver_batch(&mut conn, id, &too_large, start),
            "more than the stream takes now"
        );
        batched.batch_limit = batch.len() - 1;
        assert!(
            !batched.deliver_batch(&mut conn, id, batch, start),
            "more than the subscriber reads"
        );
        batched.batch_limit = 64;
        for byte in 1..=2 {
            assert_eq!(batched.deliver(&mut conn, id, &message(byte), start), Ok(0));
        }
        assert!(!batched.queue.is_empty());
        assert!(
            !batched.deliver_batch(&mut conn, id, batch, start),
            "behind what waits"
        );
    }

    #[test]
    fn messages_that_waited_past_the_limit_are_dropped_but_not_one_begun() {
        let start = Instant::now();
        let (mut conn, id) = server_stream(start);
        let mut feed = feed(SlowSubscriber::DropOldest { queue: 1024 });
        // The first fits the send buffer, the second is begun, two wait.
        for byte in 1..=4 {
            assert_eq!(feed.deliver(&mut conn, id, &message(byte), start), Ok(0));
        }
        assert!(feed.partial_front);
        assert_eq!(feed.queue.len(), 3);
        // Exactly the limit is not past it.
        let at_limit = start + WAIT;
        assert_eq!(feed.flush(&mut conn, id, at_limit), Ok(0));
        let later = at_limit + Duration::from_millis(1);
        assert_eq!(feed.deliver(&mut conn, id, &message(5), later), Ok(2));
        assert_eq!(feed.lost, 2, "announced before the next message");
        let kept: Vec<u8> = feed.queue.iter().map(|q| q.message[0]).collect();
        assert_eq!(kept, [2, 5], "the begun message and the fresh one are kept");
        assert_eq!(feed.queued_bytes, 1000 - 24 + 1000);
    }

    #[test]
    fn under_disconnect_a_message_past_the_limit_ends_the_feed() {
        let start = Instant::now();
        let (mut conn, id) = server_stream(start);
        let mut feed = feed(SlowSubscriber::Disconnect { queue: 1024 });
        for byte in 1..=3 {
            assert_eq!(feed.deliver(&mut conn, id, &message(byte), start), Ok(0));
        }
        let later = start + WAIT + Duration::from_millis(1);
        assert_eq!(feed.flush(&mut conn, id, later), Err(TooSlow));
    }
}
