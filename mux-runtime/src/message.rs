//! Reassembles a stream's chunks into messages (spec §7), or into one whole
//! body, within a size limit.

use bytes::{Bytes, BytesMut};
use mux_core::connection::PACK_BELOW;
use mux_core::Chunk;

/// A message exceeded the reader's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// Collects chunks until END_MESSAGE.
#[derive(Debug, Default)]
pub struct MessageReader {
    partial: BytesMut,
    /// A single chunk kept without copying while it is the whole message so far.
    single: Option<Bytes>,
}

impl MessageReader {
    /// Adds a chunk; returns the message it completes, if any. An empty
    /// chunk that ends no message (a bare END_STREAM) adds nothing.
    pub fn push(&mut self, chunk: Chunk, limit: usize) -> Result<Option<Bytes>, TooLarge> {
        if chunk.bytes.is_empty() && !chunk.end_message {
            return Ok(None);
        }
        let held = self.partial.len() + self.single.as_ref().map_or(0, Bytes::len);
        if held + chunk.bytes.len() > limit {
            return Err(TooLarge);
        }
        if self.partial.is_empty() && self.single.is_none() {
            if chunk.end_message {
                return Ok(Some(chunk.bytes));
            }
            self.single = Some(chunk.bytes);
            return Ok(None);
        }
        if let Some(first) = self.single.take() {
            // Room for both pieces at once: a message that a frame boundary
            // cut (a window running out mid-message) is copied once, not
            // copied and then moved again by a growing buffer.
            self.partial.reserve(first.len() + chunk.bytes.len());
            self.partial.extend_from_slice(&first);
        }
        self.partial.extend_from_slice(&chunk.bytes);
        if chunk.end_message {
            return Ok(Some(self.partial.split().freeze()));
        }
        Ok(None)
    }

    /// Bytes after the last boundary (a partial message, spec §7.3).
    pub fn take_partial(&mut self) -> Bytes {
        match self.single.take() {
            Some(single) => single,
            None => self.partial.split().freeze(),
        }
    }

    /// Whether a partial message is held.
    pub fn has_partial(&self) -> bool {
        self.single.is_some() || !self.partial.is_empty()
    }
}

/// Collects a whole body up to a limit: request bodies on the server,
/// response and push bodies on the client.
#[derive(Debug, Default)]
pub struct BodyBuffer {
    held: Held,
}

/// What a [`BodyBuffer`] holds: one of the two kinds of buffer, never both
/// (a request held while its body arrives costs the larger one alone).
#[derive(Debug, Default)]
enum Held {
    #[default]
    Nothing,
    /// A single chunk kept without copying while it is the whole body so far.
    Single(Bytes),
    /// Chunks copied together.
    Copied(BytesMut),
}

impl BodyBuffer {
    /// Appends `bytes`; past `limit` the body so far is dropped and the
    /// caller learns it is too large.
    pub fn push(&mut self, bytes: Bytes, limit: usize) -> Result<(), TooLarge> {
        if self.len() + bytes.len() > limit {
            self.held = Held::Nothing;
            return Err(TooLarge);
        }
        match &mut self.held {
            Held::Copied(copied) => copied.extend_from_slice(&bytes),
            Held::Single(first) if !first.is_empty() => {
                let mut copied = BytesMut::with_capacity(first.len() + bytes.len());
                copied.extend_from_slice(first);
                copied.extend_from_slice(&bytes);
                self.held = Held::Copied(copied);
            }
            // Nothing held yet (or only an empty chunk). A small first chunk
            // is in a buffer of its stream's own: kept as it came. A larger
            // one may be a slice of the connection's read buffer, which
            // holding until the body is taken would keep alive whole.
            _ if bytes.len() < PACK_BELOW => self.held = Held::Single(bytes),
            _ => self.held = Held::Copied(BytesMut::from(&bytes[..])),
        }
        Ok(())
    }

    /// The body collected so far, leaving the buffer empty.
    pub fn take(&mut self) -> Bytes {
        match std::mem::take(&mut self.held) {
            Held::Nothing => Bytes::new(),
            Held::Single(single) => single,
            Held::Copied(copied) => copied.freeze(),
        }
    }

    /// Bytes collected so far.
    pub fn len(&self) -> usize {
        match &self.held {
            Held::Nothing => 0,
            Held::Single(single) => single.len(),
            Held::Copied(copied) => copied.len(),
        }
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(bytes: &'static [u8], end_message: bool) -> Chunk {
        Chunk {
            bytes: Bytes::from_static(bytes),
            end_message,
            fin: false,
        }
    }

    #[test]
    fn messages_are_reassembled_across_chunks() {
        let mut reader = MessageReader::default();
        assert_eq!(reader.push(chunk(b"he", false), 16), Ok(None));
        assert_eq!(
            reader.push(chunk(b"llo", true), 16),
            Ok(Some(Bytes::from("hello")))
        );
        assert_eq!(
            reader.push(chunk(b"x", true), 16),
            Ok(Some(Bytes::from("x")))
        );
        assert!(!reader.has_partial());
        assert_eq!(reader.push(chunk(b"", false), 16), Ok(None));
        assert!(
            !reader.has_partial(),
            "an empty chunk is no partial message"
        );
        assert_eq!(reader.push(chunk(b"", true), 16), Ok(Some(Bytes::new())));
        assert_eq!(reader.push(chunk(b"0123456789", false), 16), Ok(None));
        assert!(reader.has_partial());
        assert_eq!(reader.push(chunk(b"0123456789", true), 16), Err(TooLarge));
    }

    #[test]
    fn a_large_first_chunk_is_copied_out_of_the_buffer_it_came_in() {
        let read_buffer = Bytes::from(vec![7u8; 4 * PACK_BELOW]);
        let mut body = BodyBuffer::default();
        let first = read_buffer.slice(..2 * PACK_BELOW);
        assert_eq!(body.push(first, usize::MAX), Ok(()));
        assert_eq!(body.push(Bytes::from_static(b"end"), usize::MAX), Ok(()));
        assert_eq!(body.len(), 2 * PACK_BELOW + 3);
        let whole = body.take();
        assert_ne!(
            whole.as_ptr(),
            read_buffer.as_ptr(),
            "the read buffer is not held"
        );
        assert!(whole.starts_with(&[7u8; 16]) && whole.ends_with(b"end"));
        assert!(body.is_empty());
    }

    #[test]
    fn a_body_past_its_limit_is_dropped() {
        let mut body = BodyBuffer::default();
        assert_eq!(body.push(Bytes::from_static(b"abc"), 4), Ok(()));
        assert_eq!(body.push(Bytes::from_static(b"de"), 4), Err(TooLarge));
        assert!(body.is_empty());
        assert_eq!(body.push(Bytes::from_static(b"ab"), 4), Ok(()));
        assert_eq!(body.push(Bytes::from_static(b"c"), 4), Ok(()));
        assert_eq!(body.len(), 3);
        assert_eq!(body.take(), Bytes::from("abc"));
        assert_eq!(body.len(), 0);
        assert_eq!(body.push(Bytes::from_static(b"xy"), 4), Ok(()));
        assert_eq!(body.take(), Bytes::from("xy"), "a single chunk is the body");
        let chunk = Bytes::from_static(b"xy");
        assert_eq!(body.push(Bytes::new(), 4), Ok(()));
        assert_eq!(body.push(chunk.clone(), 4), Ok(()));
        assert_eq!(
            body.take().as_ptr(),
            chunk.as_ptr(),
            "an empty chunk first changes nothing: the next is kept as it came"
        );
    }
}
