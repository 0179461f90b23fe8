//! A stream's received data until the application reads it (spec §7, §9,
//! §13.1.2), kept so that its memory follows the bytes received, not the
//! number of frames or messages that carried them.
//!
//! Large payloads stay the zero-copy slices the frame decoder produced. Small
//! ones (under [`PACK_BELOW`]) are copied into the tail of a packed segment,
//! so a flood of one-byte frames costs about its bytes. Message boundaries
//! are offsets into a segment, four bytes each, not a queue entry per
//! message. Reading hands the data back as [`Chunk`]s, cut at the boundaries.
//!
//! A stream's first message, when one frame carries it whole (a request's
//! body, read once), is copied into a buffer of its own instead, which the
//! read hands over as it is: a packed buffer would be split to hand it
//! out, and splitting allocates the buffer's sharing record.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::payload::Payload;
use super::stream::{Chunk, ChunkRef};

/// Payloads smaller than this are copied into a packed segment rather than
/// kept as slices of their frames: below it, a slice's bookkeeping (its
/// queue entry and the reference it holds) outweighs a copy. So a [`Chunk`]
/// read of fewer bytes lives in a buffer of its stream's own; a larger one
/// may be a slice of the buffer the connection read it into, which holding
/// keeps alive whole.
pub const PACK_BELOW: usize = 1024;

/// A packed segment grows to this size, then the next small payload starts
/// another (reads take whole segments or parts of them without copying).
const PACK_LIMIT: usize = 16 * 1024;

/// The most message boundaries a new packed segment makes room for ahead.
const PACK_HINT_MESSAGES: usize = 1024;

/// Bookkeeping memory of one segment beyond its bytes (the queue entry, its
/// boundary list), counted by [`RecvQueue::memory`].
const SEGMENT_OVERHEAD: usize = 96;

/// A run of received bytes with the message boundaries inside it.
#[derive(Debug)]
struct Segment {
    /// Zero-copy bytes of one large payload, or a stream's first message
    /// copied whole (`packed` is empty then).
    bytes: Bytes,
    /// Small payloads copied together; appended to while it is the tail.
    packed: BytesMut,
    /// Offsets from the segment's first byte where a message ends, in order
    /// (fixed when bytes are taken: taking stays O(1) however many wait).
    boundaries: Boundaries,
    /// Bytes taken from the segment's front so far.
    taken: u32,
    /// END_STREAM follows the segment's last byte.
    fin: bool,
    /// Made for small payloads (packed), not for one large one.
    small: bool,
}

impl Segment {
    fn len(&self) -> usize {
        self.bytes.len() + self.packed.len()
    }

    fn is_packed(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Takes up to `max` bytes from the front, stopping at the first boundary.
    fn take(&mut self, max: usize) -> Chunk {
        let (len, end_message) = self.next_chunk(max);
        let bytes = if self.is_packed() {
            self.packed.split_to(len).freeze()
        } else {
            self.bytes.split_to(len)
        };
        let fin = self.taken_up_to(len, end_message);
        Chunk {
            bytes,
            end_message,
            fin,
        }
    }

    /// As [`take`](Self::take), but lends the chunk's bytes to `visit`
    /// instead of handing out a handle on them; returns what `visit` made
    /// and the chunk's length.
    fn take_with<R>(&mut self, max: usize, visit: impl FnOnce(ChunkRef<'_>) -> R) -> (R, usize) {
        let (len, end_message) = self.next_chunk(max);
        let rest = self.len().saturating_sub(len);
        let boundaries_left = self
            .boundaries
            .len()
            .saturating_sub(usize::from(end_message));
        let fin = rest == 0 && boundaries_left == 0 && self.fin;
        let source: &[u8] = if self.is_packed() {
            self.packed.as_ref()
        } else {
            self.bytes.as_ref()
        };
        let made = visit(ChunkRef {
            bytes: source.get(..len).unwrap_or(source),
            end_message,
            fin,
        });
        if self.is_packed() {
            self.packed.advance(len);
        } else {
            self.bytes.advance(len);
        }
        self.taken_up_to(len, end_message);
        (made, len)
    }

    /// The next chunk's length, at most `max`, and whether it ends a message.
    fn next_chunk(&self, max: usize) -> (usize, bool) {
        let next_boundary = self
            .boundaries
            .front()
            .map(|b| b.saturating_sub(self.taken) as usize);
        let len = next_boundary.unwrap_or(self.len()).min(max);
        (len, next_boundary == Some(len))
    }

    /// Counts `len` bytes taken (and the message they ended); whether they
    /// were the stream's last.
    fn taken_up_to(&mut self, len: usize, end_message: bool) -> bool {
        if end_message {
            self.boundaries.pop_front();
        }
        self.taken = self
            .taken
            .saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
        self.len() == 0 && self.boundaries.is_empty() && self.fin
    }
}

/// A segment's message ends in order, the first inline: a segment that holds
/// one message (a request's body, a subscription's lone delivery) allocates
/// no list.
#[derive(Debug, Default)]
struct Boundaries {
    /// The first; `None` only while `rest` is empty too.
    first: Option<u32>,
    rest: VecDeque<u32>,
}

impl Boundaries {
    /// Room for `messages` ends without allocating again.
    fn with_capacity(messages: usize) -> Self {
        Self {
            first: None,
            rest: VecDeque::with_capacity(messages.saturating_sub(1)),
        }
    }

    fn front(&self) -> Option<u32> {
        self.first
    }

    fn pop_front(&mut self) {
        self.first = self.rest.pop_front();
    }

    fn push_back(&mut self, end: u32) {
        match self.first {
            None => self.first = Some(end),
            Some(_) => self.rest.push_back(end),
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// How many ends fit without allocating.
    fn capacity(&self) -> usize {
        self.rest.capacity() + 1
    }

    /// Bytes allocated for the ends beyond the first.
    fn heap_bytes(&self) -> usize {
        self.rest.capacity() * 4
    }

    fn reserve(&mut self, messages: usize) {
        self.rest.reserve(messages.saturating_sub(1));
    }

    fn clear(&mut self) {
        self.first = None;
        self.rest.clear();
    }
}

/// The received, unread data of one stream.
#[derive(Debug, Default)]
pub(crate) struct RecvQueue {
    segments: VecDeque<Segment>,
    /// Bytes held (what flow control counts).
    held: usize,
    /// The size of the last packed segment read to its end: its bytes and
    /// its message boundaries' room. A new packed segment starts with that
    /// room, so a stream fed batches of small messages (a subscription)
    /// allocates once per batch rather than at every doubling: a hundred
    /// subscribers' threads counted 0.22 `realloc`s per delivery, and
    /// contended for the allocator's locks.
    last_packed: (u32, u32),
    /// The buffers of the last small segment read to its end, kept for the
    /// next one if they are at most [`SPARE_LIMIT`]: a subscription fed a
    /// few messages at a time made a packed buffer, its sharing record
    /// and a boundary list per batch, and freed them after. The buffer is
    /// taken back only if every chunk read from it was dropped (else the
    /// next segment allocates, as before); its room is counted in
    /// [`RecvQueue::memory`].
    spare: Option<Box<Spare>>,
}

/// A drained small segment's buffers (empty, `room` 0, while in use).
#[derive(Debug, Default)]
struct Spare {
    packed: BytesMut,
    boundaries: Boundaries,
    /// At least the packed buffer's allocation: the bytes read from it and
    /// the room after them.
    room: usize,
}

/// The largest packed buffer (with its boundary list) kept for reuse.
const SPARE_LIMIT: usize = 4 * 1024;

impl RecvQueue {
    /// Bytes received and not yet read.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Memory this queue holds: its bytes and its bookkeeping.
    pub(crate) fn memory(&self) -> usize {
        self.segments
            .iter()
            .map(|s| s.bytes.len() + s.packed.capacity() + s.boundaries.len() * 4)
            .sum::<usize>()
            + self.segments.len() * SEGMENT_OVERHEAD
            + self
                .spare
                .as_ref()
                .map_or(0, |spare| spare.room + spare.boundaries.heap_bytes())
    }

    /// Segments queued.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Message boundaries queued.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn boundaries(&self) -> usize {
        self.segments.iter().map(|s| s.boundaries.len()).sum()
    }

    /// Appends a DATA frame's payload and flags.
    pub(crate) fn push<'a>(
        &mut self,
        payload: impl Into<Payload<'a>>,
        end_message: bool,
        fin: bool,
    ) {
        let payload = payload.into();
        self.held += payload.len();
        let small = payload.len() < PACK_BELOW;
        let tail_takes = self.segments.back().is_some_and(|tail| {
            !tail.fin
                && (payload.is_empty()
                    || (small && tail.is_packed() && tail.len() + payload.len() <= PACK_LIMIT))
        });
        if !tail_takes {
            if payload.is_empty() && !end_message && !fin {
                return;
            }
            let first_whole_message = self.last_packed == (0, 0)
                && self.segments.is_empty()
                && small
                && end_message
                && !payload.is_empty();
            let (bytes, packed, boundaries) = if first_whole_message {
                let bytes = Bytes::copy_from_slice(payload.as_slice());
                (bytes, BytesMut::new(), Boundaries::default())
            } else if small {
                let (room, messages) = self.last_packed;
                let room = (room as usize).clamp(payload.len(), PACK_LIMIT);
                let messages = (messages as usize).min(PACK_HINT_MESSAGES);
                let (mut packed, boundaries) = match self.spare.as_mut() {
                    Some(spare) if spare.room > 0 => {
                        spare.room = 0;
                        let mut packed = std::mem::take(&mut spare.packed);
                        let mut boundaries = std::mem::take(&mut spare.boundaries);
                        // Takes the buffer back from its start if no chunk
                        // of it is alive; allocates otherwise.
                        packed.reserve(room);
                        boundaries.reserve(messages);
                        (packed, boundaries)
                    }
                    _ => (
                        BytesMut::with_capacity(room),
                        Boundaries::with_capacity(messages),
                    ),
                };
                packed.extend_from_slice(payload.as_slice());
                (Bytes::new(), packed, boundaries)
            } else {
                (payload.into_bytes(), BytesMut::new(), Boundaries::default())
            };
            self.segments.push_back(Segment {
                bytes,
                packed,
                boundaries,
                taken: 0,
                fin: false,
                small,
            });
            return self.mark(end_message, fin);
        }
        if let Some(tail) = self.segments.back_mut() {
            tail.packed.extend_from_slice(payload.as_slice());
        }
        self.mark(end_message, fin);
    }

    /// Records a message end and END_STREAM after the tail's last byte.
    fn mark(&mut self, end_message: bool, fin: bool) {
        let Some(tail) = self.segments.back_mut() else {
            return;
        };
        if end_message {
            let end = u32::try_from(tail.len())
                .unwrap_or(u32::MAX)
                .saturating_add(tail.taken);
            tail.boundaries.push_back(end);
        }
        tail.fin |= fin;
    }

    /// Takes the next chunk of at most `max` bytes (at least one), ending at
    /// the next message boundary; `None` when nothing is queued.
    pub(crate) fn pop(&mut self, max: usize) -> Option<Chunk> {
        let front = self.segments.front_mut()?;
        let chunk = front.take(max.max(1));
        self.after_taking(chunk.bytes.len());
        Some(chunk)
    }

    /// As [`pop`](Self::pop), lending the chunk to `visit`: a chunk that is
    /// a slice of a packed buffer costs no handle on that buffer. Returns
    /// what `visit` made and the chunk's length.
    pub(crate) fn pop_with<R>(
        &mut self,
        max: usize,
        visit: impl FnOnce(ChunkRef<'_>) -> R,
    ) -> Option<(R, usize)> {
        let front = self.segments.front_mut()?;
        let (made, len) = front.take_with(max.max(1), visit);
        self.after_taking(len);
        Some((made, len))
    }

    /// Lets go of the front segment once drained, and counts `len` bytes out.
    fn after_taking(&mut self, len: usize) {
        let Some(front) = self.segments.front_mut() else {
            return;
        };
        if front.len() == 0 && front.boundaries.is_empty() {
            // A stream's first batch may be its only one (a request's
            // body): its buffers go, and only a stream fed again keeps any.
            let fed_before = self.last_packed != (0, 0);
            if front.small {
                let messages = u32::try_from(front.boundaries.capacity()).unwrap_or(u32::MAX);
                self.last_packed = (front.taken, messages);
            }
            let drained = self.segments.pop_front();
            if let Some(drained) = drained.filter(|_| fed_before) {
                self.keep_spare(drained);
            }
        }
        self.held = self.held.saturating_sub(len);
    }

    /// Keeps a drained small segment's buffers for the next one, if small.
    fn keep_spare(&mut self, drained: Segment) {
        if !drained.small {
            return;
        }
        let room = drained.packed.capacity() + drained.taken as usize;
        if room + drained.boundaries.heap_bytes() > SPARE_LIMIT {
            return;
        }
        let Segment {
            mut packed,
            mut boundaries,
            ..
        } = drained;
        packed.clear();
        boundaries.clear();
        let spare = Spare {
            packed,
            boundaries,
            room,
        };
        // The box stays once made (emptied while its buffers are in use).
        match self.spare.as_mut() {
            Some(kept) => **kept = spare,
            None => self.spare = Some(Box::new(spare)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(queue: &mut RecvQueue, max: usize) -> Vec<(Vec<u8>, bool, bool)> {
        std::iter::from_fn(|| queue.pop(max))
            .map(|c| (c.bytes.to_vec(), c.end_message, c.fin))
            .collect()
    }

    /// The same pushes into two queues, drained one with `pop`, the other
    /// with `pop_with`, at each `max`.
    #[test]
    fn lent_chunks_are_the_chunks_that_would_be_handed_out() {
        let fill = |queue: &mut RecvQueue| {
            queue.push(&b"first"[..], true, false);
            for n in 0..300u32 {
                queue.push(Bytes::from(n.to_be_bytes().to_vec()), n % 3 != 0, false);
            }
            queue.push(Bytes::from(vec![9u8; 3 * PACK_BELOW]), true, false);
            queue.push(&b"half a "[..], false, false);
            queue.push(&b"message, then the end"[..], true, true);
        };
        for max in [1, 3, 7, 1000, usize::MAX] {
            let (mut handed, mut lent) = (RecvQueue::default(), RecvQueue::default());
            fill(&mut handed);
            fill(&mut lent);
            let expected = drain(&mut handed, max);
            let mut got = Vec::new();
            while let Some((chunk, len)) =
                lent.pop_with(max, |c| (c.bytes.to_vec(), c.end_message, c.fin))
            {
                assert_eq!(len, chunk.0.len());
                got.push(chunk);
            }
            assert_eq!(got, expected, "max {max}");
            assert!(lent.is_empty());
            assert_eq!(lent.held(), 0);
        }
    }

    #[test]
    fn small_messages_are_packed_and_read_back_one_by_one() {
        let mut queue = RecvQueue::default();
        for n in 0..1000u32 {
            queue.push(Bytes::from(n.to_be_bytes().to_vec()), true, false);
        }
        assert_eq!(
            queue.segments(),
            2,
            "the first message alone, then one packed"
        );
        assert_eq!(queue.held(), 4000);
        assert!(queue.memory() <= 2 * 4000 + 1000 * 4 + SEGMENT_OVERHEAD);
        let chunks = drain(&mut queue, usize::MAX);
        assert_eq!(chunks.len(), 1000);
        for (n, (bytes, end, fin)) in chunks.into_iter().enumerate() {
            assert_eq!(bytes, (n as u32).to_be_bytes());
            assert!(end && !fin);
        }
        assert!(queue.is_empty());
        assert_eq!(queue.held(), 0);
    }

    #[test]
    fn a_first_whole_message_is_kept_in_a_buffer_of_its_own() {
        let mut queue = RecvQueue::default();
        queue.push(&b"request body"[..], true, true);
        let segment = queue.segments.front().expect("a segment");
        assert!(!segment.is_packed(), "not copied into a packed buffer");
        assert_eq!(segment.boundaries.heap_bytes(), 0, "its end is inline");
        let chunk = queue.pop(usize::MAX).expect("the message");
        assert_eq!(
            (&chunk.bytes[..], chunk.end_message, chunk.fin),
            (&b"request body"[..], true, true)
        );
        assert!(queue.is_empty());
        // A stream read before packs what follows, as it always did.
        let mut queue = RecvQueue::default();
        queue.push(&b"first"[..], true, false);
        queue.push(&b"second"[..], true, false);
        queue.push(&b"third"[..], true, false);
        assert_eq!(queue.segments(), 2, "the first alone, the rest packed");
        assert_eq!(queue.boundaries(), 3);
        drop(queue.pop(usize::MAX));
        queue.push(&b"fourth"[..], false, false);
        queue.push(&b"!"[..], true, false);
        assert!(queue.segments.iter().all(Segment::is_packed));
        assert_eq!(
            drain(&mut queue, 3),
            vec![
                (b"sec".to_vec(), false, false),
                (b"ond".to_vec(), true, false),
                (b"thi".to_vec(), false, false),
                (b"rd".to_vec(), true, false),
                (b"fou".to_vec(), false, false),
                (b"rth".to_vec(), false, false),
                (b"!".to_vec(), true, false),
            ]
        );
        // Partial reads of a first message cut it where asked.
        let mut queue = RecvQueue::default();
        queue.push(&b"abcdef"[..], true, true);
        assert_eq!(
            drain(&mut queue, 4),
            vec![
                (b"abcd".to_vec(), false, false),
                (b"ef".to_vec(), true, true)
            ]
        );
    }

    #[test]
    fn boundaries_keep_their_order_across_the_inline_first() {
        let mut boundaries = Boundaries::with_capacity(1);
        assert_eq!(boundaries.heap_bytes(), 0);
        for end in [3, 5, 9] {
            boundaries.push_back(end);
        }
        assert_eq!(boundaries.len(), 3);
        let mut seen = Vec::new();
        while let Some(end) = boundaries.front() {
            seen.push(end);
            boundaries.pop_front();
        }
        assert_eq!(seen, [3, 5, 9]);
        assert!(boundaries.is_empty());
        boundaries.push_back(4);
        assert_eq!(boundaries.front(), Some(4));
    }

    #[test]
    fn a_drained_small_segment_is_reused_once_its_chunks_are_dropped() {
        let mut queue = RecvQueue::default();
        queue.push(&[0u8; 64][..], true, false);
        drop(queue.pop(usize::MAX));
        assert_eq!(queue.memory(), 0, "a first batch keeps nothing");
        queue.push(&[1u8; 64][..], true, false);
        let first = queue.pop(usize::MAX).expect("a message");
        let at = first.bytes.as_ptr();
        assert!(queue.memory() > 0, "the spare's room is counted");
        // A chunk still held: the next batch gets a buffer of its own.
        queue.push(&[2u8; 64][..], true, false);
        let second = queue.pop(usize::MAX).expect("a message");
        assert_ne!(second.bytes.as_ptr(), at);
        assert_eq!(first.bytes, [1u8; 64][..]);
        drop((first, second));
        // Every chunk dropped: the kept buffer takes the batch at its start.
        let at = {
            queue.push(&[3u8; 64][..], true, false);
            queue.push(&[4u8; 64][..], true, false);
            let third = queue.pop(usize::MAX).expect("a message");
            third.bytes.as_ptr()
        };
        assert_eq!(
            queue.pop(usize::MAX).map(|c| c.bytes),
            Some(Bytes::from(vec![4u8; 64]))
        );
        queue.push(&[5u8; 64][..], true, false);
        let fifth = queue.pop(usize::MAX).expect("a message");
        assert_eq!(fifth.bytes.as_ptr(), at);
        assert_eq!(fifth.bytes, [5u8; 64][..]);
    }

    #[test]
    fn a_large_drained_segment_is_not_kept() {
        let mut queue = RecvQueue::default();
        for batch in [1, 1, 100] {
            for _ in 0..batch {
                queue.push(&[1u8; 100][..], true, false);
            }
            drain(&mut queue, usize::MAX);
        }
        assert_eq!(queue.memory(), 0, "10 KiB of room is let go");
    }

    #[test]
    fn borrowed_payloads_queue_as_shared_ones_do() {
        let large = vec![9u8; PACK_BELOW + 1];
        let payloads: [&[u8]; 4] = [b"abc", b"", &large, b"de"];
        let (mut borrowed, mut shared) = (RecvQueue::default(), RecvQueue::default());
        for (n, payload) in payloads.into_iter().enumerate() {
            let end = n != 0;
            borrowed.push(payload, end, n == 3);
            shared.push(Bytes::copy_from_slice(payload), end, n == 3);
        }
        assert_eq!(borrowed.held(), shared.held());
        assert_eq!(borrowed.segments(), shared.segments());
        assert_eq!(drain(&mut borrowed, 100), drain(&mut shared, 100));
    }

    #[test]
    fn reads_from_the_tail_while_it_grows_keep_the_boundaries() {
        let mut queue = RecvQueue::default();
        queue.push(Bytes::from_static(b"abc"), true, false);
        queue.push(Bytes::from_static(b"de"), false, false);
        let pop = |queue: &mut RecvQueue, max| {
            let chunk = queue.pop(max).expect("a chunk");
            (chunk.bytes.to_vec(), chunk.end_message)
        };
        assert_eq!(pop(&mut queue, 2), (b"ab".to_vec(), false));
        assert_eq!(pop(&mut queue, 9), (b"c".to_vec(), true));
        assert_eq!(pop(&mut queue, 1), (b"d".to_vec(), false));
        // The tail is still the same packed segment, partly taken.
        assert_eq!(queue.segments(), 1);
        queue.push(Bytes::from_static(b"f"), true, false);
        queue.push(Bytes::from_static(b"gh"), true, true);
        assert_eq!(
            drain(&mut queue, usize::MAX),
            vec![(b"ef".to_vec(), true, false), (b"gh".to_vec(), true, true)]
        );
    }

    /// Pushes 40 messages of 70 bytes; returns how often the tail segment's
    /// buffer grew meanwhile (its room, not its address: the allocator may
    /// grow a buffer where it lies).
    fn push_batch(queue: &mut RecvQueue) -> usize {
        let message = Bytes::from(vec![1u8; 70]);
        let mut growths = 0;
        let mut room = None;
        for _ in 0..40 {
            queue.push(message.clone(), true, false);
            let now = queue.segments.back().map(|s| s.packed.capacity());
            growths += usize::from(room.is_some() && now > room);
            room = now;
        }
        growths
    }

    #[test]
    fn a_batch_like_the_last_one_fits_the_room_made_for_it() {
        let mut queue = RecvQueue::default();
        // A stream's first message, read alone, is kept alone.
        queue.push(&b"first"[..], true, false);
        drop(queue.pop(usize::MAX));
        assert!(
            push_batch(&mut queue) > 0,
            "the first batch grows its segment"
        );
        assert_eq!(drain(&mut queue, usize::MAX).len(), 40);
        assert_eq!(push_batch(&mut queue), 0, "the second batch never grows");
        assert_eq!(drain(&mut queue, usize::MAX).len(), 40);
        // A large payload read to its end leaves no hint behind.
        let mut queue = RecvQueue::default();
        queue.push(Bytes::from(vec![7u8; 8192]), true, false);
        drop(drain(&mut queue, usize::MAX));
        queue.push(Bytes::from_static(b"small"), true, false);
        let room = queue.segments.back().map(|s| s.packed.capacity());
        assert!(room.is_some_and(|room| room < PACK_BELOW), "room {room:?}");
    }

    #[test]
    fn one_byte_frames_cost_about_their_bytes() {
        let mut queue = RecvQueue::default();
        for _ in 0..100_000 {
            queue.push(Bytes::from_static(b"x"), false, false);
        }
        assert_eq!(queue.held(), 100_000);
        // Packed segments grow by doubling: at most twice the bytes.
        assert!(queue.memory() <= 2 * 100_000 + 8 * SEGMENT_OVERHEAD);
    }

    #[test]
    fn large_payloads_stay_zero_copy() {
        let big = Bytes::from(vec![7u8; 8192]);
        let pointer = big.as_ptr();
        let mut queue = RecvQueue::default();
        queue.push(big, true, false);
        let chunk = queue.pop(usize::MAX).expect("a chunk");
        assert_eq!(chunk.bytes.as_ptr(), pointer);
        assert!(chunk.end_message);
    }

    #[test]
    fn empty_frames_carry_their_flags_and_empty_messages_survive() {
        let mut queue = RecvQueue::default();
        queue.push(Bytes::from_static(b"ab"), false, false);
        queue.push(Bytes::new(), true, false); // ends "ab"
        queue.push(Bytes::new(), true, false); // an empty message
        queue.push(Bytes::new(), false, false); // nothing
        queue.push(Bytes::new(), false, true); // END_STREAM
                                               // The empty message's chunk also carries END_STREAM.
        assert_eq!(
            drain(&mut queue, usize::MAX),
            vec![(b"ab".to_vec(), true, false), (Vec::new(), true, true)]
        );
    }

    #[test]
    fn reads_cut_at_max_and_at_boundaries_in_order() {
        let mut queue = RecvQueue::default();
        queue.push(Bytes::from(vec![1u8; 3000]), false, false);
        queue.push(Bytes::from_static(b"tail"), true, false);
        queue.push(Bytes::from_static(b"next"), false, true);
        let chunks = drain(&mut queue, 1000);
        let sizes: Vec<(usize, bool, bool)> =
            chunks.iter().map(|c| (c.0.len(), c.1, c.2)).collect();
        assert_eq!(
            sizes,
            vec![
                (1000, false, false),
                (1000, false, false),
                (1000, false, false),
                (4, true, false),
                (4, false, true)
            ]
        );
    }
}
