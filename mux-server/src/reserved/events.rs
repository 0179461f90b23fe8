//! Event streams (`spec/patterns.md` §5): `$events` replays a log from the
//! client's last seen id and then follows it live. This module also starts
//! the session feeds of §6.3, which are the same thing over a session's
//! replay buffer; the loop's event watchers are its index.

use std::sync::Arc;

use mux_core::frame::Metadata;
use mux_core::patterns;
use mux_core::rpc::{ResponseHead, Status};
use mux_core::StreamId;
use mux_runtime::{ConnKey, Ctx};

use super::feed::{Feed, FeedKind};
use super::{bad_request, gone, param_u64, required, unavailable, Reserved, ReservedCall, Served};
use crate::event_log::Entry;
use crate::replies::Replies;

/// The reconnection delay advertised to event-stream clients (`:retry-ms`).
const RETRY_MS: &[u8] = b"1000";

impl Reserved {
    /// `spec/patterns.md` §5.
    pub(super) fn serve_events(&mut self, call: &mut ReservedCall<'_, '_>) -> Served {
        let stream = required(call.head, patterns::STREAM)?;
        patterns::check_stream_name(stream).map_err(bad_request)?;
        // Without :after, the stream starts with the next event.
        let mut after = param_u64(call.head, patterns::AFTER);
        let (newest, epoch) = self.hub.position(stream).map_err(unavailable)?;
        let other_epoch = param_u64(call.head, patterns::EPOCH).is_some_and(|e| e != epoch);
        let (entries, last) = if after.is_some_and(|requested| other_epoch || requested > newest) {
            // The client's ids come from another instance of this log (it
            // restarted with the server): start it over from the oldest kept.
            after = Some(0);
            self.hub.replay_kept(stream).map_err(unavailable)?
        } else {
            match after {
                Some(after) => match self.hub.replay(stream, after, usize::MAX) {
                    Ok(Ok(replay)) => replay,
                    Ok(Err(gap)) => return Err(gone("events", gap.oldest)),
                    Err(err) => return Err(unavailable(err)),
                },
                None => (Vec::new(), newest),
            }
        };
        let epoch_number = epoch;
        let epoch = epoch.to_string();
        let pairs = [
            (patterns::RETRY_MS, RETRY_MS),
            (patterns::EPOCH, epoch.as_bytes()),
        ];
        let head = ResponseHead {
            status: Status::OK,
            length: None,
            metadata: Metadata::from_pairs(pairs).unwrap_or_default(),
        };
        call.open_feed(head);
        let kind = FeedKind::Events {
            stream: stream.to_owned(),
        };
        let (key, id) = (call.key, call.id);
        let position = (after.unwrap_or(last), epoch_number);
        self.start_entry_feed(call.ctx, key, id, kind, position, entries);
        Ok(())
    }

    /// Starts a feed of log entries, its head already written, after id
    /// `last_id` of the log's `epoch` (0: not known yet): registers it where
    /// new entries will find it, then replays `entries` (spec patterns
    /// §5.1, §6.3).
    pub(super) fn start_entry_feed(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: ConnKey,
        id: StreamId,
        kind: FeedKind,
        (last_id, epoch): (u64, u64),
        entries: Vec<Entry>,
    ) {
        match &kind {
            FeedKind::Events { stream } => self.event_watchers.add(stream, key, id),
            FeedKind::Session { token } => self.session_watchers.add(token, key, id),
            FeedKind::Subscription { .. } => {}
        }
        let mut feed = Feed::new(kind, self.feed_limits);
        feed.last_id = last_id;
        feed.epoch = epoch;
        self.feeds.insert(key, id, feed);
        for entry in entries {
            self.deliver_entry(ctx, key, id, &entry);
        }
    }

    /// A new entry of the log `stream`: to its watchers and parked polls.
    pub(crate) fn on_event(
        &mut self,
        ctx: &mut Ctx<'_>,
        replies: &mut Replies,
        stream: Arc<str>,
        entry: Entry,
    ) {
        for (key, id) in self.event_watchers.of(&stream) {
            self.deliver_entry(ctx, key, id, &entry);
        }
        self.wake_polls(ctx, replies, &stream, entry.id);
    }
}
