//! A connection's input buffer: where socket reads land, and what the state
//! machine slices frames out of.
//!
//! The state machine slices each frame out of the buffer as it completes
//! (payloads go on without a copy, spec §4.1); what stays is the start of a
//! frame that a read cut in two. Three costs hide here, and this module keeps
//! them off the bulk path:
//!
//! - **Copying reads.** Short reads (calls, deliveries) go into the loop's
//!   scratch buffer and are appended: a connection that never moves bulk keeps
//!   small buffers, and an idle one none. A read that filled the scratch
//!   buffer is a bulk transfer's: from then on the socket is read straight
//!   into the buffer's spare capacity, right after the bytes received, in the
//!   same allocation, so what arrives joins them without a copy. In a profile
//!   of a one-stream download through `DirectClient`, the copy out of the
//!   scratch buffer was 9.5% of all samples.
//! - **Zeroing room.** The spare capacity is read into uninitialised: the
//!   kernel's copy is the first write to those bytes. ([`RecvUninit`], whose
//!   implementations promise to report only bytes they wrote, is what makes
//!   that sound.) Zero-filling the room first, as this buffer did while the
//!   workspace forbade `unsafe`, wrote every byte received twice.
//! - **Moving partial frames.** When there is no room for the next read, the
//!   partial frame moves to the front, or into another block while payloads
//!   still hold the old one. With reads the size of the largest frames, every
//!   read cut one and moved half a read on average a second time (5% of the
//!   samples in an earlier profile of the same download). Room is made for
//!   [`READS_AHEAD`] full reads at once, so the partial frame moves once per
//!   that many reads.

use std::io::{self, Read};
use std::mem::MaybeUninit;

use bytes::BytesMut;

/// Bytes asked for per `read` of a connection's socket. 64 KiB, the
/// largest frame's payload: room for [`READS_AHEAD`] of them fits in this
/// machine's second-level cache (512 KiB per core). 256 KiB reads, whose
/// room is a megabyte, cost the loop more CPU per byte uploaded (interleaved
/// 4 GiB uploads, the server's CPU: 1.75-2.09 s in three, against 1.26-1.67 s
/// in six with 64 KiB reads). (While every read was copied out of a scratch
/// buffer, the loop read 256 KiB at a time.)
pub const READ_SIZE: usize = 64 * 1024;

/// How many earlier blocks a buffer keeps for reuse.
const EARLIER_BLOCKS: usize = 4;

/// How many full reads one making of room covers. The buffer then holds at
/// most this many reads plus the frame one of them cut, in an allocation at
/// most twice that (tested).
pub const READS_AHEAD: usize = 4;

/// Appends `read` to `input`; `full` says the read filled the buffer it was
/// read into (more is probably waiting in the socket).
fn append_read(input: &mut BytesMut, read: &[u8], full: bool) {
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

/// A socket that reads into memory not yet initialised.
///
/// # Safety
///
/// [`recv_uninit`](Self::recv_uninit) must return how many bytes at the
/// front of `into` it initialised, never more than `into.len()`: the buffer
/// takes that many as received without looking at them.
#[allow(unsafe_code)]
pub unsafe trait RecvUninit: Read {
    /// Reads once into `into`; `Ok(0)` at the end of the stream.
    fn recv_uninit(&mut self, into: &mut [MaybeUninit<u8>]) -> io::Result<usize>;
}

// SAFETY: `recv(2)` writes the bytes it reports and no more than it is
// given; socket2 passes `into`'s pointer and length to it unchanged.
#[allow(unsafe_code)]
unsafe impl RecvUninit for mio::net::TcpStream {
    fn recv_uninit(&mut self, into: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        socket2::SockRef::from(&*self).recv(into)
    }
}

// SAFETY: as for mio's stream, the same system call.
#[allow(unsafe_code)]
unsafe impl RecvUninit for std::net::TcpStream {
    fn recv_uninit(&mut self, into: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        socket2::SockRef::from(&*self).recv(into)
    }
}

/// A connection's input buffer (see the module docs): the bytes received and
/// not yet consumed, and during bulk transfers the room the next reads land
/// in, as the spare capacity after them.
#[derive(Debug, Default)]
pub struct ReadBuffer {
    /// Received, not yet taken by the state machine; its spare capacity is
    /// where bulk reads land.
    received: BytesMut,
    /// Whether the last read filled what it was given.
    bulk: bool,
    /// Blocks read into before the current one, each held by an empty
    /// handle, so that a block whose payloads the application has all let
    /// go is read into again instead of a fresh allocation (see
    /// [`ReadBuffer::move_to_another_block`]).
    /// At most [`EARLIER_BLOCKS`]; empty (no allocation) until a block is
    /// retired, so that connections without bulk transfers stay small.
    earlier: Vec<BytesMut>,
    /// The slot of `earlier` a retired block takes once it is full.
    next_slot: usize,
    /// Blocks allocated for bulk reads (for the tests).
    #[cfg(test)]
    blocks_allocated: usize,
}

impl ReadBuffer {
    /// An empty buffer; it allocates on the first read.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes received and not yet consumed, for the state machine to take
    /// whole frames from the front of.
    pub fn received(&mut self) -> &mut BytesMut {
        &mut self.received
    }

    /// Whether nothing is waiting to be consumed.
    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    /// The memory held: received bytes, room, and the earlier blocks kept
    /// for reuse.
    pub fn capacity(&self) -> usize {
        let earlier: usize = self.earlier.iter().map(BytesMut::capacity).sum();
        self.received.capacity() + earlier
    }

    /// Room for reads after the bytes received.
    fn spare(&self) -> usize {
        self.received.capacity() - self.received.len()
    }

    /// Lets the memory go if nothing is waiting in it.
    pub fn release_if_empty(&mut self) {
        if self.received.is_empty() {
            *self = Self::new();
        }
    }

    /// Reads `socket` once: straight into the buffer's room when it has a
    /// read's worth (made after a read that filled what it was given),
    /// otherwise through `scratch` (whose length is the size of a read),
    /// with a copy.
    #[allow(unsafe_code)]
    pub fn read_with(
        &mut self,
        scratch: &mut [u8],
        socket: &mut impl RecvUninit,
    ) -> io::Result<usize> {
        let chunk = scratch.len();
        if self.bulk && self.spare() < chunk {
            self.make_room_for_reads(chunk);
        }
        let received = self.received.len();
        let n = match self.received.spare_capacity_mut().get_mut(..chunk) {
            Some(into) => {
                let n = socket.recv_uninit(into)?.min(into.len());
                // SAFETY: `RecvUninit` initialised the first `n` bytes of
                // the spare capacity, which starts at `received` and holds
                // at least `n` bytes.
                unsafe { self.received.set_len(received + n) };
                n
            }
            None => {
                let n = socket.read(scratch)?.min(chunk);
                append_read(
                    &mut self.received,
                    scratch.get(..n).unwrap_or_default(),
                    n == chunk,
                );
                n
            }
        };
        self.bulk = n == chunk && chunk > 0;
        Ok(n)
    }

    /// Makes room for [`READS_AHEAD`] reads of `chunk` bytes (more if the
    /// partial frame is larger: room doubles with a frame that outgrows it,
    /// so a large frame is moved a logarithmic number of times).
    fn make_room_for_reads(&mut self, chunk: usize) {
        let kept = self.received.len();
        let wanted = chunk.saturating_mul(READS_AHEAD).max(kept);
        // In the same block when nothing else holds it (the partial frame
        // moves to its front).
        if !self.received.try_reclaim(wanted) {
            // A read's worth of headroom: when this block is reclaimed, the
            // partial frame then may be larger than the one moved now.
            self.move_to_another_block(kept + wanted + chunk);
        }
    }

    /// Moves the partial frame to an earlier block that nothing holds any
    /// more, or else to a new one of `size` bytes; the current block, which
    /// payloads still hold, joins the earlier ones. When another thread
    /// consumes the payloads (`Client`'s loop hands them to the
    /// application's), the current block is seldom free by the time it is
    /// full, and a new allocation each time was memory the allocator had
    /// returned to the kernel: page faults, and the kernel zeroing each page.
    fn move_to_another_block(&mut self, size: usize) {
        let reusable = self
            .earlier
            .iter_mut()
            .position(|block| block.try_reclaim(size));
        let mut block = match reusable.and_then(|slot| self.earlier.get_mut(slot)) {
            Some(earlier) => std::mem::take(earlier),
            None => {
                #[cfg(test)]
                {
                    self.blocks_allocated += 1;
                }
                BytesMut::with_capacity(size)
            }
        };
        block.extend_from_slice(&self.received);
        let mut retired = std::mem::replace(&mut self.received, block);
        retired.clear();
        let slot = match reusable {
            Some(slot) => slot,
            None if self.earlier.len() < EARLIER_BLOCKS => {
                self.earlier.push(retired);
                return;
            }
            None => {
                let slot = self.next_slot;
                self.next_slot = (slot + 1) % EARLIER_BLOCKS;
                slot
            }
        };
        if let Some(earlier) = self.earlier.get_mut(slot) {
            *earlier = retired;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ: usize = 64 * 1024;
    const FRAME: usize = READ + 9;

    /// A peer sending a running byte pattern (byte `i` of the stream is
    /// `i as u8`), and the reader's scratch buffer.
    struct Feed {
        sent: usize,
        scratch: Vec<u8>,
    }

    /// What one read did.
    struct Read {
        /// Whether it was given the scratch buffer rather than the buffer's room.
        into_scratch: bool,
        /// Whether the partial frame the read found moved to another place.
        partial_moved: bool,
    }

    /// The feed's socket for one read: at most `size` bytes of the pattern
    /// from `sent` on, into whichever memory it is given.
    struct Socket<'a> {
        sent: &'a mut usize,
        size: usize,
        into_scratch: bool,
    }

    impl io::Read for Socket<'_> {
        fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
            self.into_scratch = true;
            let n = self.size.min(into.len());
            for (i, byte) in into.iter_mut().take(n).enumerate() {
                *byte = (*self.sent + i) as u8;
            }
            *self.sent += n;
            Ok(n)
        }
    }

    // SAFETY: it writes the `n` bytes it reports, `n <= into.len()`.
    #[allow(unsafe_code)]
    unsafe impl RecvUninit for Socket<'_> {
        fn recv_uninit(&mut self, into: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
            let n = self.size.min(into.len());
            for (i, byte) in into.iter_mut().take(n).enumerate() {
                byte.write((*self.sent + i) as u8);
            }
            *self.sent += n;
            Ok(n)
        }
    }

    impl Feed {
        fn new() -> Self {
            Self {
                sent: 0,
                scratch: vec![0; READ],
            }
        }

        /// One read of at most `size` bytes.
        fn read(&mut self, buffer: &mut ReadBuffer, size: usize) -> Read {
            let partial = (!buffer.is_empty()).then(|| buffer.received().as_ptr());
            let mut socket = Socket {
                sent: &mut self.sent,
                size,
                into_scratch: false,
            };
            let n = buffer
                .read_with(&mut self.scratch, &mut socket)
                .expect("the feed never fails");
            assert_eq!(n, size.min(READ));
            Read {
                into_scratch: socket.into_scratch,
                partial_moved: partial.is_some_and(|at| at != buffer.received().as_ptr()),
            }
        }
    }

    /// What the state machine does: takes whole frames of `frame` bytes off
    /// the front, leaving a partial one.
    fn take_frames(buffer: &mut ReadBuffer, frame: usize) -> Vec<bytes::Bytes> {
        let mut frames = Vec::new();
        while buffer.received().len() >= frame {
            frames.push(buffer.received().split_to(frame).freeze());
        }
        frames
    }

    fn pattern(from: usize, len: usize) -> Vec<u8> {
        (from..from + len).map(|i| i as u8).collect()
    }

    #[test]
    fn bytes_arrive_in_order_whatever_the_read_sizes() {
        let (mut buffer, mut feed) = (ReadBuffer::new(), Feed::new());
        let mut taken = Vec::new();
        let sizes = [
            READ, 10, READ, READ, 3, READ, READ, READ, READ, READ, READ, 7, READ,
        ];
        for size in sizes {
            feed.read(&mut buffer, size);
            for frame in take_frames(&mut buffer, FRAME) {
                taken.extend_from_slice(&frame);
            }
        }
        taken.extend_from_slice(buffer.received());
        assert_eq!(taken, pattern(0, feed.sent));
    }

    #[test]
    fn bulk_reads_land_in_the_buffer_without_a_copy() {
        let (mut buffer, mut feed) = (ReadBuffer::new(), Feed::new());
        let through_scratch = (0..32)
            .filter(|_| {
                let read = feed.read(&mut buffer, READ);
                drop(take_frames(&mut buffer, FRAME));
                read.into_scratch
            })
            .count();
        assert_eq!(through_scratch, 1, "only the first full read is copied");
        // A short read ends the bulk transfer but still uses the room made.
        assert!(!feed.read(&mut buffer, 100).into_scratch);
    }

    #[test]
    fn short_reads_go_through_the_scratch_buffer_and_keep_the_buffer_small() {
        let (mut buffer, mut feed) = (ReadBuffer::new(), Feed::new());
        for _ in 0..100 {
            assert!(feed.read(&mut buffer, 100).into_scratch);
            drop(take_frames(&mut buffer, 100));
        }
        assert!(
            buffer.capacity() < 4 * 1024,
            "capacity {}",
            buffer.capacity()
        );
    }

    #[test]
    fn a_partial_frame_moves_once_per_reads_ahead_full_reads() {
        let (mut buffer, mut feed) = (ReadBuffer::new(), Feed::new());
        let reads = 32;
        let moves = (0..reads)
            .filter(|_| {
                let read = feed.read(&mut buffer, READ);
                drop(take_frames(&mut buffer, FRAME));
                read.partial_moved
            })
            .count();
        assert!(
            moves <= reads / READS_AHEAD,
            "the partial frame moved {moves} times in {reads} reads"
        );
    }

    #[test]
    fn a_frame_larger_than_the_room_moves_a_logarithmic_number_of_times() {
        let (mut buffer, mut feed) = (ReadBuffer::new(), Feed::new());
        let frame = 64 * READ;
        let moves = (0..64)
            .filter(|_| feed.read(&mut buffer, READ).partial_moved)
            .count();
        assert!(moves <= 6, "a {frame}-byte frame moved {moves} times");
        assert_eq!(take_frames(&mut buffer, frame), [pattern(0, frame)]);
    }

    #[test]
    fn bulk_reads_keep_the_buffer_within_twice_four_reads_and_a_frame() {
        let (mut buffer, mut feed) = (ReadBuffer::new(), Feed::new());
        let mut largest = 0;
        for n in 0..64 {
            // Mostly full reads, with short ones between that end and
            // restart the bulk transfer.
            feed.read(&mut buffer, READ - usize::from(n % 5 == 4) * 1000);
            largest = largest.max(buffer.capacity());
            drop(take_frames(&mut buffer, FRAME));
        }
        assert!(
            largest <= 2 * (READS_AHEAD * READ + FRAME),
            "capacity {largest}"
        );
    }

    /// Full reads while the application holds the frames of the last
    /// `held` reads, as a thread that consumes them later does; returns how
    /// many blocks were allocated for bulk reads.
    fn reads_with_frames_held(reads: usize, held: usize) -> usize {
        let (mut buffer, mut feed) = (ReadBuffer::new(), Feed::new());
        let mut holding = std::collections::VecDeque::new();
        for _ in 0..reads {
            feed.read(&mut buffer, READ);
            holding.push_back(take_frames(&mut buffer, FRAME));
            if holding.len() > held {
                holding.pop_front();
            }
        }
        buffer.blocks_allocated
    }

    #[test]
    fn a_block_the_application_let_go_is_read_into_again() {
        // Holding six reads' frames, the current block (room for four) is
        // never free when it is full: each time another is needed.
        let allocated = reads_with_frames_held(256, 6);
        assert!(allocated <= 3, "{allocated} blocks allocated in 256 reads");
        // The first block, made by a read through the scratch buffer, is
        // replaced once.
        assert!(
            reads_with_frames_held(256, 0) <= 1,
            "a free block is reused in place"
        );
    }

    #[test]
    fn an_emptied_buffer_lets_its_memory_go() {
        let (mut buffer, mut feed) = (ReadBuffer::new(), Feed::new());
        for _ in 0..3 {
            feed.read(&mut buffer, READ);
        }
        buffer.release_if_empty();
        assert!(buffer.capacity() > 0, "bytes were waiting: kept");
        drop(take_frames(&mut buffer, 3 * READ));
        buffer.release_if_empty();
        assert_eq!(buffer.capacity(), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the read sizes, frame sizes and how long the
        /// application holds frames, every byte arrives once and in order,
        /// and the buffer stays within its bound.
        #[test]
        fn any_reads_deliver_every_byte_in_order_within_the_bound(
            steps in proptest::collection::vec((0usize..=READ, 1usize..=2 * READ, 0usize..8), 1..60),
        ) {
            let (mut buffer, mut feed) = (ReadBuffer::new(), Feed::new());
            let mut taken = Vec::new();
            let mut holding = std::collections::VecDeque::new();
            for (size, frame, held) in steps {
                feed.read(&mut buffer, size.max(1));
                let frames = take_frames(&mut buffer, frame);
                for frame in &frames {
                    taken.extend_from_slice(frame);
                }
                holding.push_back(frames);
                while holding.len() > held {
                    holding.pop_front();
                }
                let bound = (EARLIER_BLOCKS + 1) * 2 * (READS_AHEAD * READ + 2 * READ + 9);
                proptest::prop_assert!(buffer.capacity() <= bound, "capacity {}", buffer.capacity());
            }
            taken.extend_from_slice(buffer.received());
            proptest::prop_assert_eq!(taken, pattern(0, feed.sent));
        }
    }
}
