//! Where [`Connection::poll_transmit`](crate::Connection::poll_transmit)
//! puts what it sends: any [`FrameSink`]. A `BytesMut` gets every frame
//! copied into it; an [`Outgoing`] queue copies headers and small payloads
//! but keeps each large DATA payload as the `Bytes` the application handed
//! over, so that a vectored write sends it without a copy. The bytes on the
//! wire are the same either way (spec §4.1).

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::frame::{DataRef, Frame};

/// A destination for encoded frames.
pub trait FrameSink {
    /// Bytes queued so far.
    fn queued(&self) -> usize;
    /// Appends one frame.
    fn put_frame(&mut self, frame: &Frame);
    /// Appends one DATA frame whose payload is borrowed (copied in).
    fn put_data(&mut self, data: &DataRef<'_>);
    /// Appends raw bytes (the preface).
    fn put_raw(&mut self, bytes: &[u8]);
}

// Frames built by the connection never exceed the 24-bit length: DATA is
// cut to the peer's MAX_FRAME_SIZE, metadata to MAX_METADATA_SIZE, debug
// data to 256 bytes; so encoding cannot fail and its error is ignored.

impl FrameSink for BytesMut {
    fn queued(&self) -> usize {
        self.len()
    }

    fn put_frame(&mut self, frame: &Frame) {
        let _ = frame.encode(self);
    }

    fn put_data(&mut self, data: &DataRef<'_>) {
        let _ = data.encode(self);
    }

    fn put_raw(&mut self, bytes: &[u8]) {
        self.put_slice(bytes);
    }
}

/// Output waiting for the socket: a queue of byte chunks in wire order.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// Sealed chunks, oldest first.
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    chunked: usize,
    /// Headers and small payloads after the last chunk, still growing.
    head: BytesMut,
}

impl Outgoing {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.chunked + self.head.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The waiting bytes when they are one piece (small frames copied
    /// together, the common case): a plain write then does, with no slices
    /// to set up.
    pub fn contiguous(&self) -> Option<&[u8]> {
        match self.chunks.len() {
            0 => Some(&self.head[..]),
            1 if self.head.is_empty() => self.chunks.front().map(|chunk| &chunk[..]),
            _ => None,
        }
    }

    /// Fills `slices` with the waiting bytes in order, as many as fit;
    /// returns how many it filled.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let pieces = self
            .chunks
            .iter()
            .map(|chunk| &chunk[..])
            .chain(std::iter::once(&self.head[..]))
            .filter(|piece| !piece.is_empty());
        let mut filled = 0;
        for (slot, piece) in slices.iter_mut().zip(pieces) {
            *slot = IoSlice::new(piece);
            filled += 1;
        }
        filled
    }

    /// Drops the first `written` bytes (they reached the socket).
    pub fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else {
                let n = written.min(self.head.len());
                self.head.advance(n);
                return;
            };
            let n = written.min(front.len());
            front.advance(n);
            self.chunked -= n;
            written -= n;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
    }

    /// Frees the growing buffer if it holds more than `keep` bytes of
    /// capacity and nothing waits, so that an idle connection keeps no large
    /// allocation.
    pub fn release_if_idle(&mut self, keep: usize) {
        if self.is_empty() && self.head.capacity() > keep {
            self.head = BytesMut::new();
            self.chunks = VecDeque::new();
        }
    }

    fn seal_head(&mut self) {
        if !self.head.is_empty() {
            let sealed = self.head.split().freeze();
            self.chunked += sealed.len();
            self.chunks.push_back(sealed);
        }
    }
}

impl FrameSink for Outgoing {
    fn queued(&self) -> usize {
        self.len()
    }

    fn put_frame(&mut self, frame: &Frame) {
        if let Ok(Some(payload)) = frame.encode_split(&mut self.head) {
            self.seal_head();
            self.chunked += payload.len();
            self.chunks.push_back(payload);
        }
    }

    fn put_data(&mut self, data: &DataRef<'_>) {
        let _ = data.encode(&mut self.head);
    }

    fn put_raw(&mut self, bytes: &[u8]) {
        self.head.put_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Data, Ping, HEADER_LEN};
    use crate::StreamId;

    fn gather(out: &Outgoing) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 16];
        let n = out.io_slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.to_vec()).collect()
    }

    #[test]
    fn the_queue_holds_exactly_what_a_buffer_would() {
        let big = Bytes::from(vec![9u8; 4096]);
        let frames = [
            Frame::Ping(Ping {
                ack: false,
                payload: [1; 8],
            }),
            Frame::Data(Data::new(StreamId::new(1).expect("id"), big.clone())),
            Frame::Data(Data::new(
                StreamId::new(3).expect("id"),
                Bytes::from_static(b"small"),
            )),
            Frame::Data(Data::new(StreamId::new(5).expect("id"), big)),
        ];
        let (mut flat, mut queue) = (BytesMut::new(), Outgoing::new());
        queue.put_raw(b"MUX");
        flat.put_raw(b"MUX");
        for frame in &frames {
            flat.put_frame(frame);
            queue.put_frame(frame);
        }
        assert_eq!(queue.len(), flat.len());
        assert_eq!(gather(&queue), flat.to_vec());
        // Written in uneven pieces, what remains is always the tail.
        for step in [1, 7, 4000, 100, 3] {
            queue.advance(step);
            flat.advance(step);
            assert_eq!(gather(&queue), flat.to_vec());
        }
        queue.advance(queue.len());
        assert!(queue.is_empty());
    }

    #[test]
    fn one_piece_of_output_is_offered_whole_and_several_are_not() {
        let ping = Frame::Ping(Ping {
            ack: false,
            payload: [1; 8],
        });
        let big = Frame::Data(Data::new(
            StreamId::new(1).expect("id"),
            Bytes::from(vec![9u8; 4096]),
        ));
        let mut queue = Outgoing::new();
        assert_eq!(queue.contiguous(), Some(&[][..]));
        queue.put_frame(&ping);
        let mut flat = BytesMut::new();
        flat.put_frame(&ping);
        assert_eq!(
            queue.contiguous(),
            Some(&flat[..]),
            "small frames are copied together"
        );
        queue.put_frame(&big);
        assert_eq!(
            queue.contiguous(),
            None,
            "a header and a payload kept apart"
        );
        queue.advance(flat.len() + HEADER_LEN);
        assert_eq!(
            queue.contiguous().map(<[u8]>::len),
            Some(4096),
            "the payload alone"
        );
    }
}
