//! A min-heap of deadlines for the event loop: each connection's next
//! `poll_timeout`, and application timers. Entries are never removed; a
//! stale entry (its connection gone, or its deadline moved) is skipped when
//! it surfaces, which keeps every operation O(log n) with no rescans.
//!
//! The deadlines themselves come from the core (spec §11).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// What a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// A connection's protocol timer: slab index and generation.
    Conn {
        /// Slab index of the connection.
        index: usize,
        /// Generation of the slot when the timer was set.
        generation: u64,
    },
    /// An application timer with its token.
    App(u64),
    /// The end of a closed connection's lingering (spec §11.3.4): its slot
    /// among the lingering sockets and that slot's generation.
    Linger {
        /// Slot of the lingering socket.
        index: usize,
        /// Generation of the slot when the timer was set.
        generation: u64,
    },
}

/// The heap.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, TimerKind)>>,
}

impl Timers {
    /// Adds a deadline.
    pub fn insert(&mut self, at: Instant, kind: TimerKind) {
        self.heap.push(Reverse((at, kind)));
    }

    /// The earliest deadline, stale or not.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns one deadline that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKind)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(entry)| entry)
    }

    /// Entries in the heap, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether the heap is empty.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// How far [`deadline_within`] reaches at most: about a century.
const FAR_AWAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The instant `timeout` from now; `None` when that lies beyond what an
/// [`Instant`] can hold (`Duration::MAX`, say, meant as "no deadline"),
/// where `Instant + Duration` panics.
pub fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The instant `timeout` from now, or about a century from now when that
/// lies beyond what an [`Instant`] can hold: for waits that need an instant.
pub fn deadline_within(timeout: Duration) -> Instant {
    later_by(Instant::now(), timeout)
}

/// `wait` after `from`, or about a century after it when that lies beyond
/// what an [`Instant`] can hold: for timers set from a configured wait.
pub fn later_by(from: Instant, wait: Duration) -> Instant {
    from.checked_add(wait.min(FAR_AWAY)).unwrap_or(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_past_any_instant_is_no_deadline_or_a_far_one() {
        assert_eq!(deadline_after(Duration::MAX), None);
        let soon = deadline_after(Duration::from_secs(1)).expect("a second fits");
        assert!(soon > Instant::now());
        let far = deadline_within(Duration::MAX);
        assert!(far >= Instant::now() + FAR_AWAY - Duration::from_secs(1));
        let near = deadline_within(Duration::from_millis(5));
        assert!(near <= Instant::now() + Duration::from_millis(5));
    }

    #[test]
    fn pops_due_deadlines_in_order() {
        let start = Instant::now();
        let mut timers = Timers::default();
        timers.insert(start + Duration::from_secs(2), TimerKind::App(2));
        timers.insert(start + Duration::from_secs(1), TimerKind::App(1));
        timers.insert(start + Duration::from_secs(3), TimerKind::App(3));
        let now = start + Duration::from_secs(2);
        assert_eq!(timers.pop_due(now).map(|e| e.1), Some(TimerKind::App(1)));
        assert_eq!(timers.pop_due(now).map(|e| e.1), Some(TimerKind::App(2)));
        assert_eq!(timers.pop_due(now), None);
        assert_eq!(timers.len(), 1);
    }
}
