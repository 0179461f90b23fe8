//! Reassembles a stream's chunks into messages (spec §7), within a size limit.

use bytes::{Bytes, BytesMut};
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
    /// Adds a chunk; returns the message it completes, if any.
    pub fn push(&mut self, chunk: Chunk, limit: usize) -> Result<Option<Bytes>, TooLarge> {
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
