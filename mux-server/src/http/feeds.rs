//! The edge's event streams, subscriptions and long polls
//! (`spec/patterns.md` §9.3-§9.5): the same logs and topics as the reserved
//! routes (§3-§5), written as `text/event-stream`. This module owns the
//! loop's index of them and serves the hub's fan-out to it.
//!
//! A client that does not keep up (more than the feed bound unsent, or bytes
//! unsent for longer than its time): an event stream is closed (its browser
//! reconnects with `Last-Event-ID` and the log replays what it missed, so
//! nothing is lost while the log keeps it); a subscription follows the
//! server's slow-subscriber policy, announcing what it dropped as a `lost`
//! event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mux_core::patterns;
use mux_runtime::{Ctx, PlainKey};

use super::conn::Phase;
use super::parse::{Head, HttpError};
use super::write::{self, Framing};
use super::{
    sse, HttpEdge, DEFAULT_POLL_WAIT, HTTP_TIMER, MAX_POLL_BATCH, MAX_POLL_WAIT, RETRY_MS,
};
use crate::broker::SlowSubscriber;
use crate::event_log::Entry;
use crate::event_store::StoreError;
use crate::subscriptions::Subscriptions;

/// Who watches what, on one loop.
#[derive(Debug)]
pub(super) struct FeedIndex {
    events: HashMap<String, Vec<PlainKey>>,
    topics: Subscriptions<PlainKey>,
    polls: HashMap<String, Vec<PlainKey>>,
    poll_timers: HashMap<u64, PlainKey>,
    next_timer: u64,
}

impl FeedIndex {
    pub(super) fn new(broker: Arc<dyn crate::broker::Broker>) -> Self {
        Self {
            events: HashMap::new(),
            topics: Subscriptions::with_broker(broker),
            polls: HashMap::new(),
            poll_timers: HashMap::new(),
            next_timer: 0,
        }
    }

    /// Forgets every feed and poll of `key`.
    pub(super) fn forget(&mut self, key: PlainKey) {
        for keys in self.events.values_mut().chain(self.polls.values_mut()) {
            keys.retain(|k| *k != key);
        }
        self.events.retain(|_, keys| !keys.is_empty());
        self.polls.retain(|_, keys| !keys.is_empty());
        self.topics.remove(key);
        self.poll_timers.retain(|_, k| *k != key);
    }
}

const EVENT_STREAM: &str = "text/event-stream; charset=utf-8";

impl HttpEdge {
    /// `GET /events/{log}` (§9.3): replays from `Last-Event-ID` (or the
    /// `lastEventId` parameter), then follows the log.
    pub(super) fn serve_events(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: PlainKey,
        head: &Head,
        log: &str,
    ) {
        if let Err(err) = patterns::check_stream_name(log) {
            return self.answer_error(ctx, key, &HttpError::Invalid(err.to_string()));
        }
        let resume = head
            .last_event_id
            .as_deref()
            .or_else(|| head.param("lastEventId"))
            .filter(|id| !id.trim().is_empty());
        let resume = match resume.map(sse::parse_event_id) {
            None => None,
            Some(Some(resume)) => Some(resume),
            Some(None) => {
                let err = HttpError::Malformed("Last-Event-ID is not EPOCH-ID");
                return self.answer_error(ctx, key, &err);
            }
        };
        let (newest, epoch) = match self.hub.position(log) {
            Ok(position) => position,
            Err(err) => return self.unavailable(ctx, key, &err),
        };
        // Another epoch, or an id beyond the newest: the log restarted
        // since, so the client gets it from its start (§5.3).
        let restarted = resume.is_some_and(|(their_epoch, id)| {
            their_epoch.is_some_and(|e| e != epoch) || id > newest
        });
        let after = if restarted {
            Some(0)
        } else {
            resume.map(|(_, id)| id)
        };
        let replayed = match after {
            _ if restarted => self.hub.replay_kept(log).map(Ok),
            Some(after) => self.hub.replay(log, after, usize::MAX),
            None => Ok(Ok((Vec::new(), newest))),
        };
        let (entries, last) = match replayed {
            Ok(Ok(replay)) => replay,
            Ok(Err(gap)) => return self.gone(ctx, key, "events", gap.oldest),
            Err(err) => return self.unavailable(ctx, key, &err),
        };
        self.metrics.http_answered(200);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        conn.queue(write::head(200, EVENT_STREAM, Framing::Chunked, true, &[]));
        conn.queue(write::chunk(&sse::retry(RETRY_MS)));
        let mut last_id = after.unwrap_or(last);
        for entry in &entries {
            conn.queue(write::chunk(&entry_event(entry)));
            last_id = last_id.max(entry.id);
        }
        conn.phase = Phase::Events { last_id, epoch };
        self.feeds
            .events
            .entry(log.to_owned())
            .or_default()
            .push(key);
        self.flush(ctx, key);
    }

    /// `GET /topics/{pattern}` (§9.4): a subscription as an event stream.
    pub(super) fn serve_topic(&mut self, ctx: &mut Ctx<'_>, key: PlainKey, pattern: &str) {
        if let Err(err) = patterns::check_pattern(pattern) {
            return self.answer_error(ctx, key, &HttpError::Invalid(err.to_string()));
        }
        self.metrics.http_answered(200);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        conn.queue(write::head(200, EVENT_STREAM, Framing::Chunked, true, &[]));
        conn.queue(write::chunk(&sse::retry(RETRY_MS)));
        conn.phase = Phase::Topic { lost: 0 };
        self.feeds.topics.add(pattern.to_owned(), key);
        self.flush(ctx, key);
    }

    /// `GET /poll/{log}?cursor=N` (§9.5): the entries after the cursor at
    /// once, or held until one is appended or the wait ends (204).
    pub(super) fn serve_poll(&mut self, ctx: &mut Ctx<'_>, key: PlainKey, head: &Head, log: &str) {
        if let Err(err) = patterns::check_stream_name(log) {
            return self.answer_error(ctx, key, &HttpError::Invalid(err.to_string()));
        }
        let number = |name: &str| head.param(name).map(|v| v.trim().parse::<u64>());
        let mut after = match number("cursor") {
            None => 0,
            Some(Ok(after)) => after,
            Some(Err(_)) => {
                let err = HttpError::Malformed("cursor is not a number");
                return self.answer_error(ctx, key, &err);
            }
        };
        let wait = match number("wait_ms") {
            None => DEFAULT_POLL_WAIT,
            Some(Ok(millis)) => Duration::from_millis(millis).min(MAX_POLL_WAIT),
            Some(Err(_)) => {
                let err = HttpError::Malformed("wait_ms is not a number");
                return self.answer_error(ctx, key, &err);
            }
        };
        let (newest, epoch) = match self.hub.position(log) {
            Ok(position) => position,
            Err(err) => return self.unavailable(ctx, key, &err),
        };
        let their_epoch = number("epoch").and_then(Result::ok);
        if their_epoch.is_some_and(|e| e != epoch) || after > newest {
            // A cursor from another instance of the log (a restarted
            // server): the kept entries from the start (§5.3).
            match self.hub.replay_kept(log) {
                Ok((entries, _)) if !entries.is_empty() => {
                    return self.poll_answer(ctx, key, log, 0, entries);
                }
                Ok(_) => after = 0,
                Err(err) => return self.unavailable(ctx, key, &err),
            }
        }
        let replayed = match self.hub.replay(log, after, MAX_POLL_BATCH) {
            Ok(replayed) => replayed,
            Err(err) => return self.unavailable(ctx, key, &err),
        };
        match replayed {
            Err(gap) => self.gone(ctx, key, "entries", gap.oldest),
            Ok((entries, _)) if !entries.is_empty() || self.shutting_down => {
                self.poll_answer(ctx, key, log, after, entries);
            }
            Ok(_) => {
                self.feeds.next_timer += 1;
                let timer = self.feeds.next_timer;
                ctx.set_timer(ctx.now + wait, HTTP_TIMER | timer);
                self.feeds.poll_timers.insert(timer, key);
                self.feeds
                    .polls
                    .entry(log.to_owned())
                    .or_default()
                    .push(key);
                if let Some(conn) = self.conns.get_mut(&key) {
                    conn.phase = Phase::Poll {
                        log: log.to_owned(),
                        after,
                        timer,
                    };
                }
            }
        }
    }

    /// A parked poll's wait ended.
    pub(super) fn poll_timed_out(&mut self, ctx: &mut Ctx<'_>, timer: u64) {
        if let Some(key) = self.feeds.poll_timers.remove(&timer) {
            let current = self
                .conns
                .get(&key)
                .is_some_and(|c| matches!(c.phase, Phase::Poll { timer: t, .. } if t == timer));
            if current {
                self.answer_poll(ctx, key, Vec::new());
            }
        }
    }

    /// Answers a parked poll with `entries` (204 without any).
    pub(super) fn answer_poll(&mut self, ctx: &mut Ctx<'_>, key: PlainKey, entries: Vec<Entry>) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let Phase::Poll { log, after, .. } = &conn.phase else {
            return;
        };
        let (log, after) = (log.clone(), *after);
        self.feeds.forget(key);
        self.poll_answer(ctx, key, &log, after, entries);
    }

    /// A poll's answer: 200 with the entries (ids are the plain cursor
    /// values) and `mux-cursor`, or 204 with the cursor unchanged.
    fn poll_answer(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: PlainKey,
        log: &str,
        after: u64,
        entries: Vec<Entry>,
    ) {
        let cursor = entries.last().map_or(after, |e| e.id);
        let epoch = match entries.last() {
            Some(entry) => entry.epoch,
            None => self.hub.position(log).map_or(0, |(_, epoch)| epoch),
        };
        let fields = [
            ("mux-cursor".to_owned(), cursor.to_string().into_bytes()),
            ("mux-epoch".to_owned(), epoch.to_string().into_bytes()),
        ];
        if entries.is_empty() {
            return self.respond_whole(ctx, key, 204, "", b"", &fields);
        }
        let mut body = Vec::new();
        for entry in &entries {
            body.extend_from_slice(&sse::event(
                Some(&entry.id.to_string()),
                &entry.kind,
                &entry.data,
            ));
        }
        self.respond_whole(ctx, key, 200, EVENT_STREAM, &body, &fields);
    }

    /// The 503 of a request the event store cannot serve now.
    fn unavailable(&mut self, ctx: &mut Ctx<'_>, key: PlainKey, err: &StoreError) {
        let text = format!("{err}\n");
        self.respond_whole(ctx, key, 503, "text/plain", text.as_bytes(), &[]);
    }

    /// The 410 of a resume or poll that reaches back past the oldest entry kept.
    fn gone(&mut self, ctx: &mut Ctx<'_>, key: PlainKey, what: &str, oldest: u64) {
        let text = format!("{what} before {oldest} are no longer kept\n");
        self.respond_whole(ctx, key, 410, "text/plain", text.as_bytes(), &[]);
    }

    /// A new entry of `log`: to its event streams and parked polls.
    pub(crate) fn on_event(&mut self, ctx: &mut Ctx<'_>, log: &Arc<str>, entry: &Entry) {
        if let Some(watchers) = self.feeds.events.get(&**log).cloned() {
            let block = write::chunk(&entry_event(entry));
            for key in watchers {
                self.deliver_entry(ctx, key, (entry.id, entry.epoch), block.clone());
            }
        }
        if let Some(parked) = self.feeds.polls.remove(&**log) {
            for key in parked {
                let after = match self.conns.get(&key).map(|c| &c.phase) {
                    Some(Phase::Poll { after, .. }) => *after,
                    _ => continue,
                };
                if entry.id <= after {
                    self.feeds
                        .polls
                        .entry(log.to_string())
                        .or_default()
                        .push(key);
                    continue;
                }
                // A store that fails now answers the poll empty (204):
                // the client polls again from the same cursor.
                let entries = match self.hub.replay(log, after, MAX_POLL_BATCH) {
                    Ok(Ok((entries, _))) => entries,
                    _ => Vec::new(),
                };
                self.answer_poll(ctx, key, entries);
            }
        }
    }

    fn deliver_entry(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: PlainKey,
        (id, entry_epoch): (u64, u64),
        block: Bytes,
    ) {
        let limits = self.feed_limits;
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let behind = conn.queued() > limits.max_bytes || conn.waited(ctx.now) > limits.max_wait;
        let Phase::Events { last_id, epoch } = &mut conn.phase else {
            return;
        };
        if *epoch == 0 {
            *epoch = entry_epoch;
        } else if entry_epoch != *epoch {
            // The log started over: the browser reconnects with its last
            // id and is replayed the new epoch from its start (§5.3).
            return self.close(ctx, key);
        }
        if id <= *last_id {
            return; // already sent by the replay that raced it
        }
        if behind {
            // Too slow: closed; its client resumes from its last id.
            self.hub.feed_counters.lost(1);
            log::debug!("http: an event stream's client is too slow; closing it");
            return self.close(ctx, key);
        }
        *last_id = id;
        conn.queue(block);
        self.hub.feed_counters.delivered();
        self.flush_soon(ctx, key);
    }

    /// A publication: to every matching subscription of this loop, after
    /// announcing what this loop's full queue made them miss.
    pub(crate) fn on_publication(
        &mut self,
        ctx: &mut Ctx<'_>,
        topic: &Arc<str>,
        payload: &Bytes,
        missed: u64,
    ) {
        if self.feeds.topics.is_empty() {
            return;
        }
        if missed > 0 {
            // Any subscription may have missed them (§3.5).
            for key in self.feeds.topics.all() {
                self.deliver_publication(ctx, key, missed, None);
            }
        }
        let targets = self.feeds.topics.matching(topic);
        if targets.is_empty() {
            return;
        }
        let mut data = Vec::with_capacity(topic.len() + 1 + payload.len());
        data.extend_from_slice(topic.as_bytes());
        data.push(b'\n');
        data.extend_from_slice(payload);
        let block = write::chunk(&sse::event(None, "", &data));
        for &key in targets.iter() {
            self.deliver_publication(ctx, key, 0, Some(block.clone()));
        }
    }

    /// The broker may have lost publications: every subscription is told.
    pub(crate) fn on_gap(&mut self, ctx: &mut Ctx<'_>, missed: u64) {
        if missed == 0 {
            return;
        }
        for key in self.feeds.topics.all() {
            self.deliver_publication(ctx, key, missed, None);
            self.flush(ctx, key);
        }
    }

    fn deliver_publication(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: PlainKey,
        missed: u64,
        block: Option<Bytes>,
    ) {
        let limits = self.feed_limits;
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let behind = conn.queued() > limits.max_bytes || conn.waited(ctx.now) > limits.max_wait;
        let Phase::Topic { lost, .. } = &mut conn.phase else {
            return;
        };
        *lost = lost.saturating_add(missed);
        let Some(block) = block else {
            return;
        };
        if behind {
            self.hub.feed_counters.lost(1);
            match limits.policy {
                SlowSubscriber::Disconnect { .. } => {
                    log::debug!("http: a subscriber is too slow; closing it");
                    return self.close(ctx, key);
                }
                SlowSubscriber::DropOldest { .. } => {
                    *lost = lost.saturating_add(1);
                    return;
                }
            }
        }
        let lost = std::mem::take(lost);
        if lost > 0 {
            let notice = sse::event(None, "lost", lost.to_string().as_bytes());
            conn.queue(write::chunk(&notice));
        }
        conn.queue(block);
        self.hub.feed_counters.delivered();
        self.flush_soon(ctx, key);
    }
}

/// An entry as an event of an event stream, its id `EPOCH-ID`.
fn entry_event(entry: &Entry) -> Bytes {
    sse::event(
        Some(&sse::event_id(entry.epoch, entry.id)),
        &entry.kind,
        &entry.data,
    )
}
