//! Appending what a socket read returned to a connection's input buffer,
//! moving the bytes already there as seldom as possible.
//!
//! The state machine slices each frame out of the input buffer as it
//! completes (payloads go on without a copy, spec §4.1); what stays is the
//! start of a frame that a read cut in two. When the buffer has no room for
//! the next read, `BytesMut` makes room by moving that partial frame to the
//! front, or into a new allocation while payloads still hold the old one.
//! With reads the size of the largest frames, every read cut one and moved
//! half a read on average a second time: in a profile of a one-stream
//! download through `DirectClient`, moving them cost 5% of all samples,
//! beside 6.5% for copying the reads themselves. A read that filled the
//! scratch buffer is a bulk transfer's: room for [`READS_AHEAD`] such reads
//! is made at once, so the partial frame moves once per that many reads.
//! Short reads (calls, deliveries) make room for themselves only, so a
//! connection that never moves bulk keeps small buffers.

use bytes::BytesMut;

/// How many full reads one making of room covers. The buffer then holds at
/// most this many reads plus the frame one of them cut, in an allocation at
/// most twice that (tested).
pub const READS_AHEAD: usize = 4;

/// Appends `read` to `input`; `full` says the read filled the buffer it was
/// read into (more is probably waiting in the socket).
pub fn append_read(input: &mut BytesMut, read: &[u8], full: bool) {
    make_room(input, read.len(), full);
    input.extend_from_slice(read);
}

/// Makes room in `input` for a read of `len` bytes (for [`READS_AHEAD`]
/// of them if the read was `full`), unless it has it. For input that
/// arrives in pieces, as TLS records' plaintext does: room made once for
/// the whole read lets every piece of it in without moving anything.
pub fn make_room(input: &mut BytesMut, len: usize, full: bool) {
    if input.capacity() - input.len() < len {
        let room = if full {
            len.saturating_mul(READS_AHEAD)
        } else {
            len
        };
        // Where it cannot reuse its allocation, `reserve` may double it:
        // the buffer stays under twice the room and a frame. (A new buffer
        // of exactly that size instead took more CPU in a download: the
        // next partial frame no longer fitted, and each one allocated.)
        input.reserve(room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ: usize = 64 * 1024;
    const FRAME: usize = READ + 9;

    /// What the state machine does: takes whole frames of `frame` bytes off
    /// the front, leaving a partial one.
    fn take_frames(input: &mut BytesMut, frame: usize) -> Vec<bytes::Bytes> {
        let mut frames = Vec::new();
        while input.len() >= frame {
            frames.push(input.split_to(frame).freeze());
        }
        frames
    }

    #[test]
    fn bytes_arrive_in_order_whatever_the_read_sizes() {
        let mut input = BytesMut::new();
        let mut expected = Vec::new();
        for (n, size) in [READ, 10, READ, 3, READ, READ, 7].into_iter().enumerate() {
            let read: Vec<u8> = (0..size).map(|i| (i + n) as u8).collect();
            expected.extend_from_slice(&read);
            append_read(&mut input, &read, size == READ);
        }
        assert_eq!(&input[..], &expected[..]);
    }

    /// Feeds `reads` full reads (each `shorter_by(n)` bytes under
    /// [`READ`]) of frames a little larger than a read, as 64 KiB payloads
    /// with their 9-byte headers are: every read leaves part of a frame
    /// behind. Returns how often that partial frame moved, and the largest
    /// capacity the buffer reached.
    fn bulk_reads(reads: usize, shorter_by: impl Fn(usize) -> usize) -> (usize, usize) {
        let read = vec![7u8; READ];
        let mut input = BytesMut::new();
        let (mut moves, mut largest) = (0, 0);
        for n in 0..reads {
            let partial_before = input.as_ptr();
            let had_partial = !input.is_empty();
            append_read(&mut input, &read[..READ - shorter_by(n)], true);
            if had_partial && input.as_ptr() != partial_before {
                moves += 1;
            }
            largest = largest.max(input.capacity());
            drop(take_frames(&mut input, FRAME));
        }
        (moves, largest)
    }

    #[test]
    fn a_partial_frame_moves_once_per_reads_ahead_full_reads() {
        let reads = 32;
        let (moves, _) = bulk_reads(reads, |_| 0);
        assert!(
            moves <= reads / 4,
            "the partial frame moved {moves} times in {reads} reads"
        );
    }

    #[test]
    fn bulk_reads_keep_the_buffer_within_twice_four_reads_and_a_frame() {
        let (_, largest) = bulk_reads(64, |n| n % 3);
        assert!(
            largest <= 2 * (READS_AHEAD * READ + FRAME),
            "capacity {largest}"
        );
    }

    #[test]
    fn short_reads_keep_the_buffer_small() {
        let mut input = BytesMut::new();
        for _ in 0..100 {
            append_read(&mut input, &[1u8; 100], false);
            drop(take_frames(&mut input, 100));
        }
        assert!(input.capacity() < 4 * 1024, "capacity {}", input.capacity());
    }
}
