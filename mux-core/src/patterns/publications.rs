//! Publications messages (`spec/patterns.md` §3.3): several publications
//! on one topic in one feed message, for a subscriber that said it reads
//! them (`:batch`, §3.2, with the largest it reads). A server that has a run of publications for a
//! subscriber sends the topic once and the payloads one after another, so
//! the run costs one frame and one message on each side instead of one per
//! publication.
//!
//! ```text
//! Publications: 0x04 | Topic Len (8) | Topic | (Payload Len (32) | Payload)+
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::{MalformedFeed, MAX_TOPIC_LEN, PUBLICATIONS};

/// Bytes of a payload's length.
const LENGTH: usize = 4;

/// Checks that `entries` holds one or more payloads, each after its
/// length, and nothing else.
pub(super) fn check_entries(entries: &[u8]) -> Result<(), MalformedFeed> {
    if entries.is_empty() {
        return Err(MalformedFeed);
    }
    let mut rest = entries;
    while !rest.is_empty() {
        (_, rest) = split_entry(rest)?;
    }
    Ok(())
}

/// The first payload of `entries` and what follows it.
fn split_entry(entries: &[u8]) -> Result<(&[u8], &[u8]), MalformedFeed> {
    let (length, rest) = entries.split_at_checked(LENGTH).ok_or(MalformedFeed)?;
    let length: [u8; LENGTH] = length.try_into().map_err(|_| MalformedFeed)?;
    let length = usize::try_from(u32::from_be_bytes(length)).map_err(|_| MalformedFeed)?;
    rest.split_at_checked(length).ok_or(MalformedFeed)
}

/// The payloads of a Publications message parsed in place, in the order
/// they were published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadsRef<'a> {
    rest: &'a [u8],
}

impl<'a> PayloadsRef<'a> {
    /// Entries already checked by [`check_entries`].
    pub(super) fn new(entries: &'a [u8]) -> Self {
        Self { rest: entries }
    }
}

impl<'a> Iterator for PayloadsRef<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (payload, rest) = split_entry(self.rest).ok()?;
        self.rest = rest;
        Some(payload)
    }
}

/// The payloads of a decoded Publications message, each handed out as a
/// slice of the message's buffer (or lent), in the order they were
/// published.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payloads {
    entries: Bytes,
    /// Where the next payload's length starts in `entries`.
    at: usize,
}

impl Payloads {
    /// Entries already checked by [`check_entries`].
    pub(super) fn new(entries: Bytes) -> Self {
        Self { entries, at: 0 }
    }

    /// The payloads not yet taken, with their lengths, as on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        self.entries.get(self.at..).unwrap_or_default()
    }

    /// The payloads not yet taken, lent.
    pub fn as_ref(&self) -> PayloadsRef<'_> {
        PayloadsRef::new(self.as_bytes())
    }

    /// Whether every payload was taken.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// The next payload, lent, and moves past it.
    pub fn next_ref(&mut self) -> Option<&[u8]> {
        let (start, end) = self.next_span()?;
        self.entries.get(start..end)
    }

    /// Where the next payload lies in `entries`; moves past it.
    fn next_span(&mut self) -> Option<(usize, usize)> {
        let rest = self.as_bytes();
        let (payload, after) = split_entry(rest).ok()?;
        let start = self.at + LENGTH;
        let end = start + payload.len();
        self.at += rest.len() - after.len();
        Some((start, end))
    }
}

impl Iterator for Payloads {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let (start, end) = self.next_span()?;
        Some(self.entries.slice(start..end))
    }
}

/// Builds a Publications message: the topic, then payloads as they are
/// pushed.
#[derive(Debug)]
pub struct PublicationsBuilder {
    buf: BytesMut,
    count: usize,
}

impl PublicationsBuilder {
    /// A message for publications on `topic` (cut to [`MAX_TOPIC_LEN`]
    /// bytes, as a Publication's is), with room for `capacity` bytes of
    /// entries.
    pub fn new(topic: &str, capacity: usize) -> Self {
        let topic = topic.as_bytes();
        let topic = topic.get(..MAX_TOPIC_LEN).unwrap_or(topic);
        let mut buf = BytesMut::with_capacity(2 + topic.len() + capacity);
        buf.put_u8(PUBLICATIONS);
        buf.put_u8(topic.len() as u8);
        buf.put_slice(topic);
        Self { buf, count: 0 }
    }

    /// The bytes an entry for `payload_len` bytes adds.
    pub fn entry_len(payload_len: usize) -> usize {
        LENGTH + payload_len
    }

    /// Adds `payload`; `false` (and nothing added) if it is longer than a
    /// length can say (4 GiB).
    #[must_use]
    pub fn push(&mut self, payload: &[u8]) -> bool {
        let Ok(length) = u32::try_from(payload.len()) else {
            return false;
        };
        self.buf.put_u32(length);
        self.buf.put_slice(payload);
        self.count += 1;
        true
    }

    /// Payloads pushed.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The message's length so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no payload was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The message. One with no payload is malformed: a sender sends
    /// nothing instead.
    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}
