//! Every stream of one connection: the ID spaces (spec §6.1), the streams in
//! memory, the active counts that MAX_CONCURRENT_STREAMS limits (spec §6.4),
//! and the three work sets the connection drains: streams ready to send DATA
//! (spec §12.2), writers waiting for room, and streams with credit to return
//! (spec §9.4.2).
//!
//! `StreamsState` keeps its own invariants (an ID is scheduled at most once,
//! the active counts match the streams marked active); the connection decides
//! what the protocol does with them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use foldhash::HashMap;

use super::recv_queue::RecvQueue;
use super::send_queue::SendQueue;
use super::stream::Stream;
use crate::error::PeerMisbehaved;
use crate::stream_id::{Side, StreamId};

/// How long a stream counts as sharing its connection after another stream
/// opened (spec §9.6.9): calls one after another leave gaps with no other
/// stream open, and a bulk stream must not regain its full window in them.
const SHARING_MEMORY: Duration = Duration::from_secs(1);

/// What a removed stream leaves its connection to account for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Removed {
    /// Bytes it still had queued to send.
    pub(super) queued: usize,
    /// It counted against a concurrency limit.
    pub(super) active: bool,
}

/// The streams of one connection and the queues over them.
#[derive(Debug)]
pub(super) struct StreamsState {
    side: Side,
    /// The ID our next stream gets, or `None` when IDs ran out (spec §6.1.4).
    next_local_id: Option<StreamId>,
    /// The highest stream ID the peer opened; higher IDs of its parity are idle.
    last_peer_id: u32,
    /// foldhash with a per-process random seed: several lookups per frame
    /// make SipHash show in profiles, and the peer chooses the keys.
    ///
    /// Boxed: a table leaves up to half its slots empty and every slot is
    /// the size of its value, so a stream inline would cost its ~200 bytes
    /// up to twice over, and a connection that ever had one stream would
    /// keep a table of four for good.
    map: HashMap<StreamId, Box<Stream>>,
    /// The last removed stream's box, its queues emptied, for the next
    /// stream: one call after another then allocates no stream.
    spare: Option<Box<Stream>>,
    /// Active streams we opened, and the peer opened (spec §6.4).
    local_active: u32,
    peer_active: u32,
    /// Streams with DATA ready to send, in round-robin order (spec §12.2).
    pub(super) ready: VecDeque<StreamId>,
    /// Streams whose writes were refused, waiting for room (`Event::Writable`).
    pub(super) blocked_writers: Vec<StreamId>,
    /// Streams with consumed bytes to credit.
    pub(super) credit_queue: VecDeque<StreamId>,
    /// The sum of the streams' receive-window targets: what the peer may
    /// make us buffer in all (spec §9.6.8 bounds its growth).
    recv_targets: u64,
    /// Streams opened so far (wrapping), and until when the last one to
    /// open makes the others share the connection (spec §9.6.9).
    openings: u32,
    sharing_until: Option<Instant>,
}

impl StreamsState {
    pub(super) fn new(side: Side) -> Self {
        Self {
            side,
            next_local_id: StreamId::new(match side {
                Side::Client => 1,
                Side::Server => 2,
            }),
            last_peer_id: 0,
            map: HashMap::default(),
            spare: None,
            local_active: 0,
            peer_active: 0,
            ready: VecDeque::new(),
            blocked_writers: Vec::new(),
            credit_queue: VecDeque::new(),
            recv_targets: 0,
            openings: 0,
            sharing_until: None,
        }
    }

    pub(super) fn get(&self, id: StreamId) -> Option<&Stream> {
        self.map.get(&id).map(|stream| &**stream)
    }

    pub(super) fn get_mut(&mut self, id: StreamId) -> Option<&mut Stream> {
        self.map.get_mut(&id).map(|stream| &mut **stream)
    }

    pub(super) fn contains(&self, id: StreamId) -> bool {
        self.map.contains_key(&id)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&StreamId, &Stream)> {
        self.map.iter().map(|(id, stream)| (id, &**stream))
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.map.keys().copied()
    }

    /// Streams in memory.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Active streams opened by this endpoint and by the peer (spec §6.4).
    pub(super) fn active(&self) -> (u32, u32) {
        (self.local_active, self.peer_active)
    }

    pub(super) fn none_active(&self) -> bool {
        self.local_active == 0 && self.peer_active == 0
    }

    /// The highest stream ID the peer opened (0 before any), for GOAWAY.
    pub(super) fn last_peer_id(&self) -> StreamId {
        StreamId::new(self.last_peer_id).unwrap_or_default()
    }

    /// The ID our next stream would get; `None` once they ran out.
    pub(super) fn next_local_id(&self) -> Option<StreamId> {
        self.next_local_id
    }

    /// Uses up local IDs up to `id`, for a stream that never enters memory
    /// (a PUSH with END_STREAM, spec §6.2.2).
    pub(super) fn consume_local_id(&mut self, id: StreamId) {
        self.next_local_id = id.next();
    }

    /// Whether `id` is idle: not yet opened by the side whose parity it has (spec §6.3).
    pub(super) fn is_idle(&self, id: StreamId) -> bool {
        if id.initiator() == Some(self.side) {
            self.next_local_id.is_some_and(|next| id >= next)
        } else {
            id.value() > self.last_peer_id
        }
    }

    /// Checks a new peer stream ID (spec §6.1.2) and records it.
    pub(super) fn accept_peer_id(&mut self, id: StreamId) -> Result<(), PeerMisbehaved> {
        if id.value() <= self.last_peer_id {
            return Err(PeerMisbehaved::StreamIdNotIncreasing);
        }
        self.last_peer_id = id.value();
        Ok(())
    }

    /// Adds an active stream (ours or the peer's, by its ID's parity),
    /// opened at `now`.
    pub(super) fn insert(&mut self, id: StreamId, mut stream: Stream, now: Instant) {
        self.openings = self.openings.wrapping_add(1);
        self.sharing_until = now.checked_add(SHARING_MEMORY);
        stream.opening = self.openings;
        if id.initiator() == Some(self.side) {
            self.next_local_id = id.next();
            self.local_active += 1;
        } else {
            self.peer_active += 1;
        }
        self.recv_targets += u64::from(stream.recv.window.target());
        let boxed = match self.spare.take() {
            Some(mut spare) => {
                *spare = stream;
                spare
            }
            None => Box::new(stream),
        };
        if let Some(replaced) = self.map.insert(id, boxed) {
            self.recv_targets -= u64::from(replaced.recv.window.target());
        }
    }

    /// The opening count of the latest stream, if it opened within the last
    /// [`SHARING_MEMORY`]: a stream whose own count differs shares the
    /// connection (spec §9.6.9).
    pub(super) fn latest_recent_opening(&self, now: Instant) -> Option<u32> {
        self.sharing_until
            .filter(|until| now < *until)
            .map(|_| self.openings)
    }

    /// Whether one stream at most is in memory, and no other opened after
    /// it within the last [`SHARING_MEMORY`] (spec §9.6.9, §12.3).
    pub(super) fn is_alone(&self, now: Instant) -> bool {
        match self.map.len() {
            0 => true,
            1 => self.latest_recent_opening(now).is_none_or(|latest| {
                self.map
                    .values()
                    .next()
                    .is_some_and(|stream| stream.opening == latest)
            }),
            _ => false,
        }
    }

    /// Removes a stream from memory, dropping its queued and unread data.
    /// The caller deactivates it if it was active.
    pub(super) fn remove(&mut self, id: StreamId) -> Option<Removed> {
        let mut stream = self.map.remove(&id)?;
        self.recv_targets -= u64::from(stream.recv.window.target());
        let removed = Removed {
            queued: stream.send.queue.len(),
            active: stream.active,
        };
        stream.send.queue = SendQueue::default();
        stream.recv.queue = RecvQueue::default();
        self.spare = Some(stream);
        Some(removed)
    }

    /// The sum of the streams' receive-window targets.
    pub(super) fn recv_targets(&self) -> u64 {
        self.recv_targets
    }

    /// A stream's receive-window target grew by `delta`.
    pub(super) fn recv_target_grew(&mut self, delta: u32) {
        self.recv_targets += u64::from(delta);
    }

    /// Stops counting a stream against the concurrency limits.
    pub(super) fn deactivate(&mut self, id: StreamId) {
        if id.initiator() == Some(self.side) {
            self.local_active = self.local_active.saturating_sub(1);
        } else {
            self.peer_active = self.peer_active.saturating_sub(1);
        }
    }

    /// Puts a stream in the send rotation if it has something to send and is
    /// not there yet.
    pub(super) fn schedule(&mut self, id: StreamId) {
        if self
            .map
            .get_mut(&id)
            .is_some_and(|stream| stream.claim_turn())
        {
            self.ready.push_back(id);
        }
    }

    /// Forgets every stream (the connection failed).
    pub(super) fn clear(&mut self) {
        self.map.clear();
        self.spare = None;
        self.ready.clear();
        self.blocked_writers.clear();
        self.credit_queue.clear();
        self.local_active = 0;
        self.peer_active = 0;
        self.recv_targets = 0;
    }
}
