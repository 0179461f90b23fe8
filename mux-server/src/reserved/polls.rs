//! Long polling (`spec/patterns.md` §4.2): `$poll` answers at once when
//! the log has entries after the client's cursor, and otherwise parks the
//! request until one arrives or its wait ends. This module owns the parked
//! polls and their timers.

use std::collections::HashMap;
use std::time::Duration;

use mux_core::frame::Metadata;
use mux_core::patterns;
use mux_core::rpc::{ResponseHead, Status};
use mux_core::StreamId;
use mux_runtime::{ConnKey, Ctx};

use super::feed::event_message;
use super::{bad_request, gone, param_u64, required, unavailable, Reserved, ReservedCall, Served};
use crate::event_log::Entry;
use crate::replies::Replies;

/// Entries a long poll returns at most per response.
const MAX_BATCH: usize = 1024;

/// How long a poll is held when the client names no wait.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// Longest a long poll may be held (`spec/patterns.md` §4.2).
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Timer tokens of long polls have this bit set; the app's other timers do not.
const POLL_TIMER: u64 = 1 << 62;

/// Whether an app timer token is a long poll's.
pub(crate) fn polls_timer(token: u64) -> bool {
    token & POLL_TIMER != 0
}

/// A long poll waiting for an entry.
#[derive(Debug, Clone)]
struct Parked {
    key: ConnKey,
    id: StreamId,
    after: u64,
    timer: u64,
}

/// The parked polls of one loop, by log name. A name leaves with its last poll.
#[derive(Debug, Default)]
pub(super) struct LongPolls {
    by_stream: HashMap<String, Vec<Parked>>,
    next_timer: u64,
}

impl LongPolls {
    pub(super) fn forget_stream(&mut self, key: ConnKey, id: StreamId) {
        self.retain(|p| (p.key, p.id) != (key, id));
    }

    pub(super) fn forget_conn(&mut self, key: ConnKey) {
        self.retain(|p| p.key != key);
    }

    fn retain(&mut self, keep: impl Fn(&Parked) -> bool) {
        self.by_stream.retain(|_, parked| {
            parked.retain(&keep);
            !parked.is_empty()
        });
    }

    fn take_timer(&mut self, timer: u64) -> Option<Parked> {
        let (stream, index) = self.by_stream.iter().find_map(|(stream, parked)| {
            let index = parked.iter().position(|p| p.timer == timer)?;
            Some((stream.clone(), index))
        })?;
        let parked = self.by_stream.get_mut(&stream)?;
        let poll = parked.remove(index);
        if parked.is_empty() {
            self.by_stream.remove(&stream);
        }
        Some(poll)
    }
}

impl Reserved {
    /// `spec/patterns.md` §4.2.
    pub(super) fn serve_long_poll(&mut self, call: &mut ReservedCall<'_, '_>) -> Served {
        let stream = required(call.head, patterns::STREAM)?;
        patterns::check_stream_name(stream).map_err(bad_request)?;
        let after = param_u64(call.head, patterns::AFTER).unwrap_or(0);
        let wait =
            param_u64(call.head, patterns::WAIT_MS).map_or(DEFAULT_WAIT, Duration::from_millis);
        match self
            .hub
            .replay(stream, after, MAX_BATCH)
            .map_err(unavailable)?
        {
            Err(gap) => return Err(gone("entries", gap.oldest)),
            Ok((entries, _)) if !entries.is_empty() => {
                answer_poll(call.ctx, call.replies, call.key, call.id, after, entries);
            }
            Ok(_) => {
                let polls = &mut self.polls;
                polls.next_timer += 1;
                let timer = POLL_TIMER | polls.next_timer;
                call.ctx.set_timer(call.ctx.now + wait.min(MAX_WAIT), timer);
                polls
                    .by_stream
                    .entry(stream.to_owned())
                    .or_default()
                    .push(Parked {
                        key: call.key,
                        id: call.id,
                        after,
                        timer,
                    });
            }
        }
        Ok(())
    }

    /// Answers the polls on `stream` that entry `newest` satisfies.
    pub(super) fn wake_polls(
        &mut self,
        ctx: &mut Ctx<'_>,
        replies: &mut Replies,
        stream: &str,
        newest: u64,
    ) {
        let Some(parked) = self.polls.by_stream.remove(stream) else {
            return;
        };
        let (ready, waiting): (Vec<Parked>, Vec<Parked>) =
            parked.into_iter().partition(|poll| newest > poll.after);
        if !waiting.is_empty() {
            self.polls.by_stream.insert(stream.to_owned(), waiting);
        }
        for poll in ready {
            // A store that fails now answers the poll empty (304): the
            // client polls again from the same cursor.
            let entries = match self.hub.replay(stream, poll.after, MAX_BATCH) {
                Ok(Ok((entries, _))) => entries,
                _ => Vec::new(),
            };
            answer_poll(ctx, replies, poll.key, poll.id, poll.after, entries);
        }
    }

    /// A poll's wait ended: it is answered `304` with its cursor unchanged.
    pub(crate) fn on_poll_timer(&mut self, ctx: &mut Ctx<'_>, replies: &mut Replies, timer: u64) {
        if let Some(poll) = self.polls.take_timer(timer) {
            answer_poll(ctx, replies, poll.key, poll.id, poll.after, Vec::new());
        }
    }

    /// Answers every parked poll with what it has (shutdown).
    pub(super) fn answer_all_polls(&mut self, ctx: &mut Ctx<'_>, replies: &mut Replies) {
        let polls: Vec<Parked> = self
            .polls
            .by_stream
            .drain()
            .flat_map(|(_, parked)| parked)
            .collect();
        for poll in polls {
            answer_poll(ctx, replies, poll.key, poll.id, poll.after, Vec::new());
        }
    }
}

/// A poll's answer: the entries with the new cursor, or `304` without any.
fn answer_poll(
    ctx: &mut Ctx<'_>,
    replies: &mut Replies,
    key: ConnKey,
    id: StreamId,
    after: u64,
    entries: Vec<Entry>,
) {
    let cursor = entries.last().map_or(after, |e| e.id).to_string();
    let status = if entries.is_empty() {
        Status::NOT_MODIFIED
    } else {
        Status::OK
    };
    let head = ResponseHead {
        status,
        length: None, // declared by `write`: the body is whole
        metadata: Metadata::from_pairs([(patterns::CURSOR, cursor.as_bytes())]).unwrap_or_default(),
    };
    let body: Vec<_> = entries.iter().map(event_message).collect();
    replies.write(ctx, key, id, head, body, true);
}
