//! Server-to-client message feeds on a client-opened stream: subscriptions,
//! event streams and session feeds (`spec/patterns.md` §3-§6). A feed writes
//! messages into the stream while its send buffer has room, then queues a
//! bounded number, and applies the slow-subscriber policy beyond that.

use std::collections::VecDeque;

use bytes::Bytes;
use mux_core::patterns::FeedMessage;
use mux_core::{Connection, ErrorCode, StreamId};

use crate::broker::SlowSubscriber;

/// What the feed carries; says which index it is registered in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FeedKind {
    Subscription { pattern: String },
    Events { stream: String },
    Session { token: String },
}

/// One feed.
#[derive(Debug)]
pub(crate) struct Feed {
    pub(crate) kind: FeedKind,
    /// Messages (or the rest of one) not yet taken by the stream.
    queue: VecDeque<Bytes>,
    /// The front of `queue` is the rest of a message already partly sent.
    partial_front: bool,
    /// Messages dropped since the last delivery, to announce.
    lost: u64,
    policy: SlowSubscriber,
    /// The highest event id delivered, to skip duplicates between a replay
    /// and the live entries that raced it.
    pub(crate) last_id: u64,
}

/// The feed's subscriber is too slow and its policy says to end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooSlow;

impl Feed {
    pub(crate) fn new(kind: FeedKind, policy: SlowSubscriber) -> Self {
        Self {
            kind,
            queue: VecDeque::new(),
            partial_front: false,
            lost: 0,
            policy,
            last_id: 0,
        }
    }

    /// Counts messages this subscriber may have missed elsewhere (a full
    /// cross-loop queue); announced before its next message.
    pub(crate) fn add_lost(&mut self, count: u64) {
        self.lost = self.lost.saturating_add(count);
    }

    /// Delivers `message`, or queues it, or applies the policy.
    pub(crate) fn deliver(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        message: Bytes,
    ) -> Result<(), TooSlow> {
        let limit = match self.policy {
            SlowSubscriber::DropOldest { queue } | SlowSubscriber::Disconnect { queue } => {
                queue.max(1)
            }
        };
        self.queue.push_back(message);
        self.flush(conn, id);
        let waiting = self.queue.len() - usize::from(self.partial_front);
        if waiting > limit {
            match self.policy {
                SlowSubscriber::Disconnect { .. } => return Err(TooSlow),
                SlowSubscriber::DropOldest { .. } => {
                    let index = usize::from(self.partial_front);
                    let _ = self.queue.remove(index);
                    self.lost += 1;
                }
            }
        }
        Ok(())
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
                    self.partial_front = false;
                }
                Ok(accepted) => {
                    let _ = front.split_to(accepted);
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
