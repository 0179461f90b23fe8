//! A stream's data waiting to be sent (spec §7, §9, §12), message by
//! message, each with its END_MESSAGE flag.
//!
//! Payloads stay the `Bytes` the application handed over, except small ones
//! that queue behind others: those are copied into the tail of a packed
//! buffer. A small payload is copied into the output when it is sent anyway
//! (below [`CHAIN_THRESHOLD`] a frame's payload goes next to its header), so
//! copying it earlier costs a few bytes more; what it saves is the payload's
//! reference count, which would otherwise be dropped when the frame goes
//! out. A payload with fewer than [`PACK_BEHIND`] messages ahead of it is
//! not copied: it goes out at the next flush, and an answer (a head and a
//! body) costs no allocation; packing pays once messages pile up. A payload lent
//! rather than handed over ([`Payload::Borrowed`]) is always copied: small
//! ones into the packed buffer, large ones into a `Bytes` of their own.

use std::collections::VecDeque;

use bytes::Bytes;

use super::payload::Payload;
use crate::frame::{Data, DataRef, Frame, CHAIN_THRESHOLD};
use crate::output::FrameSink;
use crate::stream_id::StreamId;

/// One queued message, or what is left of it.
#[derive(Debug)]
enum Entry {
    /// The application's bytes, kept as they were handed over.
    Shared { bytes: Bytes, end_message: bool },
    /// The next `len` bytes of the packed buffer.
    Packed { len: usize, end_message: bool },
}

impl Entry {
    fn len(&self) -> usize {
        match self {
            Self::Shared { bytes, .. } => bytes.len(),
            Self::Packed { len, .. } => *len,
        }
    }

    fn end_message(&self) -> bool {
        match self {
            Self::Shared { end_message, .. } | Self::Packed { end_message, .. } => *end_message,
        }
    }
}

/// The front of the queue, taken for one DATA frame.
#[derive(Debug)]
pub(crate) enum Taken<'a> {
    /// A payload to send as it is.
    Shared(Bytes),
    /// A payload to copy out; it leaves the queue when the value is dropped.
    Packed(PackedTake<'a>),
}

impl Taken<'_> {
    /// Appends the DATA frame that carries these bytes to `sink`.
    pub(crate) fn put(
        self,
        sink: &mut impl FrameSink,
        stream: StreamId,
        end_message: bool,
        end_stream: bool,
    ) {
        match self {
            Self::Shared(payload) => sink.put_frame(&Frame::Data(Data {
                stream,
                end_message,
                end_stream,
                payload,
            })),
            Self::Packed(packed) => sink.put_data(&DataRef {
                stream,
                end_message,
                end_stream,
                payload: packed.bytes(),
            }),
        }
    }
}

/// The packed payloads' bytes.
#[derive(Debug, Default)]
struct Packed {
    /// Allocated while packed bytes wait (boxed: most streams never pack,
    /// and every stream carries this field).
    bytes: Option<Box<PackedBytes>>,
    /// Bytes packed since the buffer was made.
    burst: u32,
    /// What the last burst packed: a new buffer starts with that room, so
    /// that a stream fed bursts (a subscription) allocates once per burst,
    /// not at every doubling. The buffer itself is let go when it drains
    /// after a burst above [`KEEP_PACKED`], so an idle stream holds little;
    /// a smaller one stays for the next burst, or a subscription fed one
    /// message at a time would allocate and free it per message.
    last_burst: u32,
}

/// A packed buffer: bytes appended at the back, sent from `start`. Only
/// ever lent out by reference, so a plain vector does, and emptying it
/// is two stores.
#[derive(Debug)]
struct PackedBytes {
    buf: Vec<u8>,
    start: usize,
}

impl PackedBytes {
    fn waiting(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }
}

impl Packed {
    #[cfg(any(test, fuzzing))]
    fn len(&self) -> usize {
        self.bytes.as_ref().map_or(0, |bytes| bytes.waiting().len())
    }

    fn append(&mut self, payload: &[u8]) {
        let last_burst = self.last_burst as usize;
        let bytes = self.bytes.get_or_insert_with(|| {
            let room = last_burst.min(PACKED_START_LIMIT).max(payload.len());
            Box::new(PackedBytes {
                buf: Vec::with_capacity(room),
                start: 0,
            })
        });
        if bytes.buf.capacity() - bytes.buf.len() < payload.len() && bytes.start > 0 {
            // Sent bytes at the front: drop them rather than grow past them.
            let sent = bytes.start.min(bytes.buf.len());
            bytes.buf.drain(..sent);
            bytes.start = 0;
        }
        bytes.buf.extend_from_slice(payload);
        self.burst = self
            .burst
            .saturating_add(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    }
}

/// Bytes at the front of the packed buffer, handed out by reference.
#[derive(Debug)]
pub(crate) struct PackedTake<'a> {
    packed: &'a mut Packed,
    len: usize,
}

impl PackedTake<'_> {
    pub(crate) fn bytes(&self) -> &[u8] {
        let bytes = self
            .packed
            .bytes
            .as_deref()
            .map_or(&[][..], PackedBytes::waiting);
        bytes.get(..self.len).unwrap_or_default()
    }
}

impl Drop for PackedTake<'_> {
    fn drop(&mut self) {
        let packed = &mut *self.packed;
        if let Some(bytes) = packed.bytes.as_mut() {
            bytes.start = (bytes.start + self.len).min(bytes.buf.len());
            if bytes.start == bytes.buf.len() {
                bytes.buf.clear();
                bytes.start = 0;
                packed.last_burst = std::mem::take(&mut packed.burst);
                // Its room left, not its burst alone: a small burst into
                // room made for a large one leaves a large buffer.
                if packed.last_burst as usize > KEEP_PACKED || bytes.buf.capacity() > KEEP_PACKED {
                    packed.bytes = None;
                }
            }
        }
    }
}

/// A small payload handed over is packed once this many messages queue
/// ahead of it.
const PACK_BEHIND: usize = 2;

/// A packed buffer that drained after a burst of at most this many bytes,
/// with at most this much room, is kept for the next burst.
const KEEP_PACKED: usize = 512;

/// A burst's packed buffer starts with at most this much room (the last
/// burst's size; the stream's send buffer bounds a burst, 1 MiB by
/// default). A subscriber's share of a fan-out pass at peak was above
/// 64 KiB (and below 256) in 2,424 of 4,524 bursts counted here; from a
/// 64 KiB start, those grew by reallocation, copying and faulting in
/// fresh pages each time (3M deliveries to 100
/// subscribers: 24,000-49,000 page faults in five of six runs of the
/// server, 254-316 ms of its CPU, against 2,700-15,000 and 222-255 ms in
/// four of six with this limit; fan-out at peak in eight interleaved
/// one-round pairs, direct subscribers 1.04× Redis at the median against
/// 0.87×).
const PACKED_START_LIMIT: usize = 512 * 1024;

/// The unsent data of one stream.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    entries: VecDeque<Entry>,
    packed: Packed,
    /// Bytes queued.
    len: usize,
}

impl SendQueue {
    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The front message's queued length and END_MESSAGE flag.
    pub(crate) fn front(&self) -> Option<(usize, bool)> {
        self.entries
            .front()
            .map(|entry| (entry.len(), entry.end_message()))
    }

    /// Queues `payload`, then a message boundary if `end_message`.
    pub(crate) fn push<'a>(&mut self, payload: impl Into<Payload<'a>>, end_message: bool) {
        let payload = payload.into();
        let len = payload.len();
        self.len += len;
        let borrowed = matches!(payload, Payload::Borrowed(_));
        let entry = if len < CHAIN_THRESHOLD && (borrowed || self.entries.len() >= PACK_BEHIND) {
            self.packed.append(payload.as_slice());
            Entry::Packed { len, end_message }
        } else {
            Entry::Shared {
                bytes: payload.into_bytes(),
                end_message,
            }
        };
        self.entries.push_back(entry);
    }

    /// Takes up to `max` bytes from the front message (all of it, and its
    /// flag, if it has no more): the bytes, whether they end the message,
    /// and whether the queue is empty now. `None` when nothing is queued.
    pub(crate) fn take(&mut self, max: usize) -> Option<(Taken<'_>, bool, bool)> {
        let front = self.entries.front_mut()?;
        let len = front.len().min(max);
        let whole = len == front.len();
        let end_message = whole && front.end_message();
        let shared = match front {
            Entry::Shared { bytes, .. } => Some(bytes.split_to(len)),
            Entry::Packed { len: left, .. } => {
                *left -= len;
                None
            }
        };
        if whole {
            self.entries.pop_front();
        }
        self.len -= len;
        let taken = match shared {
            Some(bytes) => Taken::Shared(bytes),
            None => Taken::Packed(PackedTake {
                packed: &mut self.packed,
                len,
            }),
        };
        Some((taken, end_message, self.entries.is_empty()))
    }

    /// Whether every byte of the queue is accounted for (for the
    /// connection's invariant checks).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn is_consistent(&self) -> bool {
        let counted: usize = self.entries.iter().map(Entry::len).sum();
        let packed: usize = self
            .entries
            .iter()
            .filter(|entry| matches!(entry, Entry::Packed { .. }))
            .map(Entry::len)
            .sum();
        counted == self.len && packed == self.packed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes everything, `max` bytes at a time: (bytes, end_message, packed).
    fn drain(queue: &mut SendQueue, max: usize) -> Vec<(Vec<u8>, bool, bool)> {
        let mut taken = Vec::new();
        while let Some((piece, end_message, _)) = queue.take(max) {
            let (bytes, packed) = match &piece {
                Taken::Shared(bytes) => (bytes.to_vec(), false),
                Taken::Packed(packed) => (packed.bytes().to_vec(), true),
            };
            drop(piece);
            taken.push((bytes, end_message, packed));
        }
        taken
    }

    #[test]
    fn small_payloads_behind_others_are_packed_and_come_out_in_order() {
        let mut queue = SendQueue::default();
        let large = Bytes::from(vec![7u8; CHAIN_THRESHOLD]);
        queue.push(Bytes::from_static(b"first"), true);
        queue.push(Bytes::from_static(b"0"), true);
        queue.push(Bytes::from_static(b"ab"), false);
        queue.push(Bytes::from_static(b"c"), true);
        queue.push(large.clone(), true);
        queue.push(Bytes::new(), true);
        queue.push(Bytes::from_static(b"last"), false);
        assert_eq!(queue.len(), 5 + 1 + 3 + CHAIN_THRESHOLD + 4);
        assert!(queue.is_consistent());
        assert_eq!(
            drain(&mut queue, usize::MAX),
            vec![
                (b"first".to_vec(), true, false), // alone when queued: kept as handed over
                (b"0".to_vec(), true, false),     // one ahead: kept too
                (b"ab".to_vec(), false, true),
                (b"c".to_vec(), true, true),
                (large.to_vec(), true, false), // not small: kept
                (Vec::new(), true, true),
                (b"last".to_vec(), false, true),
            ]
        );
        assert_eq!(queue.len(), 0);
        assert!(queue.front().is_none());
    }

    #[test]
    fn a_queue_that_never_packs_stays_small() {
        // Every stream carries one; most never pack.
        assert!(size_of::<SendQueue>() <= 64, "{}", size_of::<SendQueue>());
    }

    #[test]
    fn lent_payloads_are_copied_even_on_an_empty_queue() {
        let mut queue = SendQueue::default();
        let large = vec![3u8; CHAIN_THRESHOLD];
        queue.push(&b"lent"[..], true);
        queue.push(&large[..], false);
        assert!(queue.is_consistent());
        assert_eq!(
            drain(&mut queue, usize::MAX),
            vec![(b"lent".to_vec(), true, true), (large, false, false)]
        );
    }

    #[test]
    fn partial_takes_keep_the_flag_for_the_last_piece() {
        let mut queue = SendQueue::default();
        queue.push(Bytes::from_static(b"xyz"), true);
        queue.push(Bytes::new(), false);
        queue.push(Bytes::from_static(b"hello"), true);
        assert_eq!(
            drain(&mut queue, 2),
            vec![
                (b"xy".to_vec(), false, false),
                (b"z".to_vec(), true, false),
                (Vec::new(), false, false),
                (b"he".to_vec(), false, true),
                (b"ll".to_vec(), false, true),
                (b"o".to_vec(), true, true),
            ]
        );
        assert!(queue.is_consistent());
    }

    /// Starts a burst (the first payload that packs) and returns the room
    /// its buffer was made with.
    fn room_for_the_next_burst(queue: &mut SendQueue, payload: &[u8]) -> usize {
        for _ in 0..=PACK_BEHIND {
            queue.push(payload, true);
        }
        queue.packed.bytes.as_ref().map_or(0, |b| b.buf.capacity())
    }

    #[test]
    fn a_drained_queue_holds_no_buffer_and_the_next_burst_allocates_once() {
        let mut queue = SendQueue::default();
        let burst = |queue: &mut SendQueue| {
            for n in 0..100u8 {
                queue.push(Bytes::from(vec![n; 64]), true);
            }
        };
        burst(&mut queue);
        drain(&mut queue, usize::MAX);
        assert!(queue.packed.bytes.is_none(), "an idle stream holds nothing");
        assert_eq!(queue.packed.last_burst, 98 * 64);
        let room = room_for_the_next_burst(&mut queue, &[5u8; 64]);
        assert!(room >= 98 * 64, "room for the whole burst");
        burst(&mut queue);
        assert!(queue.is_consistent());
    }

    #[test]
    fn a_fan_out_pass_worth_of_a_burst_is_allocated_whole_the_next_time() {
        // 3,000 deliveries of 70 bytes: a subscriber's share of a fan-out
        // pass at peak, larger than one read or frame.
        let mut queue = SendQueue::default();
        for _ in 0..3000 {
            queue.push(&[3u8; 70][..], true);
        }
        drain(&mut queue, usize::MAX);
        let burst = queue.packed.last_burst as usize;
        assert!(burst > 200_000);
        let room = room_for_the_next_burst(&mut queue, &[4u8; 70]);
        assert!(room >= burst, "room {room} for the last burst of {burst}");
    }

    #[test]
    fn a_small_burst_into_room_made_for_a_large_one_keeps_no_buffer() {
        let mut queue = SendQueue::default();
        for _ in 0..100 {
            queue.push(&[1u8; 64][..], true);
        }
        drain(&mut queue, usize::MAX);
        queue.push(&[2u8; 64][..], true);
        drain(&mut queue, usize::MAX);
        assert!(
            queue.packed.bytes.is_none(),
            "room for 100 messages is let go"
        );
    }

    #[test]
    fn sent_bytes_make_room_before_the_buffer_grows() {
        let mut queue = SendQueue::default();
        for n in 0..4u8 {
            queue.push(&[n; 100][..], true);
        }
        let room = queue.packed.bytes.as_ref().map_or(0, |b| b.buf.capacity());
        let (first, _, _) = queue.take(usize::MAX).expect("queued");
        drop(first);
        // Room for the 100 bytes sent ahead: the buffer moves its waiting
        // bytes to the front instead of growing.
        while queue
            .packed
            .bytes
            .as_ref()
            .map_or(0, |b| b.buf.capacity() - b.buf.len())
            >= 10
        {
            queue.push(&[9u8; 10][..], true);
        }
        queue.push(&[9u8; 10][..], true);
        assert_eq!(
            queue.packed.bytes.as_ref().map_or(0, |b| b.buf.capacity()),
            room
        );
        assert!(queue.is_consistent());
        let drained = drain(&mut queue, usize::MAX);
        let expected: Vec<_> = (1..4u8).map(|n| vec![n; 100]).collect();
        let got: Vec<_> = drained.iter().take(3).map(|(b, _, _)| b.clone()).collect();
        assert_eq!(got, expected);
        assert!(drained
            .iter()
            .skip(3)
            .all(|(b, end, _)| b == &vec![9u8; 10] && *end));
    }

    #[test]
    fn a_stream_fed_one_small_message_at_a_time_reuses_its_buffer() {
        let mut queue = SendQueue::default();
        let mut first = None;
        for n in 0..10u8 {
            queue.push(&[n; 64][..], true);
            let at = queue.packed.bytes.as_ref().map(|b| b.buf.as_ptr());
            assert!(
                at.is_some() && at == *first.get_or_insert(at),
                "message {n}"
            );
            assert_eq!(
                drain(&mut queue, usize::MAX),
                vec![(vec![n; 64], true, true)]
            );
            assert!(
                queue.packed.bytes.is_some(),
                "a small drained buffer is kept"
            );
        }
        assert!(queue.is_consistent());
    }
}
