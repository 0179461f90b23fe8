//! Flow-control windows (spec §9): the send side's credit, and the receive
//! side's credit with batching and auto-tuning (spec §9.6).

use core::time::Duration;
use std::time::Instant;

use crate::frame::MAX_WINDOW;

/// Credit this endpoint may still spend sending DATA (spec §9.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendWindow {
    available: u32,
}

/// A WINDOW_UPDATE would take a window past 2^31 - 1 (spec §9.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowOverflow;

impl SendWindow {
    pub(crate) fn new(initial: u32) -> Self {
        Self {
            available: initial.min(MAX_WINDOW),
        }
    }

    pub(crate) fn available(self) -> u32 {
        self.available
    }

    /// Adds credit from a WINDOW_UPDATE.
    pub(crate) fn grow(&mut self, increment: u32) -> Result<(), WindowOverflow> {
        match self.available.checked_add(increment) {
            Some(sum) if sum <= MAX_WINDOW => {
                self.available = sum;
                Ok(())
            }
            _ => Err(WindowOverflow),
        }
    }

    /// Spends credit on a DATA frame; the caller never spends more than is available.
    pub(crate) fn spend(&mut self, len: u32) {
        self.available = self.available.saturating_sub(len);
    }
}

/// Added to the two round trips a measuring span lasts at least (spec
/// §9.6.2): a receiver that is not scheduled for a while (milliseconds, on
/// a loaded host) then drains a backlog at memory speed, and only a span
/// longer than that gap averages the burst back to the path's rate.
const SCHEDULING_ALLOWANCE: Duration = Duration::from_millis(1);

/// The peer sent more DATA than the window allowed (spec §9.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowExceeded;

/// Credit this endpoint has granted, and the auto-tuning state of spec §9.6.
///
/// Invariant: `granted + held + unannounced == target`, where `held` is the
/// data received but not yet consumed by the application (tracked by the
/// caller). So the bytes a peer can make us buffer never exceed `target`,
/// which never exceeds `max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecvWindow {
    /// Credit the peer may still use.
    granted: u32,
    /// The window size we aim to offer.
    target: u32,
    /// The configured ceiling of `target`.
    max: u32,
    /// Consumed credit not yet returned with WINDOW_UPDATE.
    unannounced: u32,
    /// When the current measuring span started (spec §9.6.1).
    span_start: Instant,
    /// Bytes consumed since `span_start`.
    span_consumed: u64,
}

impl RecvWindow {
    /// A window in which the peer believes it has `granted` credit, and
    /// which we want to offer at `target` (ask for the difference with
    /// [`RecvWindow::take_initial_update`]).
    pub(crate) fn new(granted: u32, target: u32, max: u32, now: Instant) -> Self {
        let max = max.min(MAX_WINDOW);
        let target = target.min(max).max(granted.min(MAX_WINDOW));
        Self {
            granted: granted.min(MAX_WINDOW),
            target,
            max: max.max(target),
            unannounced: target - granted.min(target),
            span_start: now,
            span_consumed: 0,
        }
    }

    pub(crate) fn granted(&self) -> u32 {
        self.granted
    }

    pub(crate) fn target(&self) -> u32 {
        self.target
    }

    /// Credit the peer has not been told about at creation (target above
    /// the initial grant); returns the increment to announce, if any.
    pub(crate) fn take_initial_update(&mut self) -> Option<u32> {
        if self.unannounced == 0 {
            return None;
        }
        let increment = core::mem::take(&mut self.unannounced);
        self.granted += increment;
        Some(increment)
    }

    /// Accounts for `len` bytes of received DATA.
    pub(crate) fn receive(&mut self, len: u32) -> Result<(), WindowExceeded> {
        self.granted = self.granted.checked_sub(len).ok_or(WindowExceeded)?;
        Ok(())
    }

    /// Accounts for `len` bytes consumed (or discarded); returns the
    /// WINDOW_UPDATE increment to send now, if the batching threshold was
    /// reached (spec §9.4.2), after auto-tuning the target (spec §9.6.2).
    /// The target grows by at most `headroom` (spec §9.6.8).
    pub(crate) fn consume(
        &mut self,
        len: u32,
        now: Instant,
        rtt: Option<Duration>,
        headroom: u32,
    ) -> Option<u32> {
        self.unannounced = self.unannounced.saturating_add(len);
        self.span_consumed += u64::from(len);
        if self.unannounced < (self.target / 2).max(1) {
            return None;
        }
        if let Some(rtt) = rtt {
            self.tune(now, rtt, headroom);
        }
        let increment = core::mem::take(&mut self.unannounced);
        self.granted = self.granted.saturating_add(increment).min(MAX_WINDOW);
        Some(increment)
    }

    /// Spec §9.6.2: once a span of at least two round trips plus the
    /// scheduling allowance has passed, doubles the target if the consumer
    /// took at least a whole target per two round trips over it (the
    /// window, not the consumer or the path, was the limit), then starts a
    /// new span. The rate is taken over the
    /// whole span, not since the last update: a reader that drains a
    /// backlog consumes megabytes in microseconds, and that burst says the
    /// reader, not the window, was behind (spec §9.6.7).
    fn tune(&mut self, now: Instant, rtt: Duration, headroom: u32) {
        let span = now.saturating_duration_since(self.span_start);
        let two_trips = rtt.saturating_mul(2);
        if span.is_zero() || span < two_trips.saturating_add(SCHEDULING_ALLOWANCE) {
            return;
        }
        // consumed / span >= target / (2 × rtt): the target is at most
        // twice the bandwidth-delay product. Without division.
        let fast = u128::from(self.span_consumed) * two_trips.as_nanos()
            >= u128::from(self.target) * span.as_nanos();
        if fast && self.target < self.max {
            let grown = self
                .target
                .saturating_mul(2)
                .min(self.max)
                .min(self.target.saturating_add(headroom));
            self.unannounced += grown - self.target;
            self.target = grown;
        }
        self.span_start = now;
        self.span_consumed = 0;
    }

    /// Raises the target floor, used to keep the connection window at least
    /// as large as its largest stream window (spec §9.6.5). Returns credit to
    /// announce at once.
    pub(crate) fn raise_target(&mut self, floor: u32) -> Option<u32> {
        let floor = floor.min(self.max);
        if floor <= self.target {
            return None;
        }
        let increment = floor - self.target;
        self.target = floor;
        self.granted = self.granted.saturating_add(increment).min(MAX_WINDOW);
        Some(increment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_window_overflow_is_detected() {
        let mut window = SendWindow::new(10);
        assert_eq!(window.grow(MAX_WINDOW - 10), Ok(()));
        assert_eq!(window.grow(1), Err(WindowOverflow));
        assert_eq!(window.available(), MAX_WINDOW);
    }

    #[test]
    fn receive_beyond_grant_is_an_error() {
        let now = Instant::now();
        let mut window = RecvWindow::new(100, 100, 100, now);
        assert_eq!(window.receive(60), Ok(()));
        assert_eq!(window.receive(41), Err(WindowExceeded));
    }

    #[test]
    fn credit_is_batched_until_half_the_target() {
        let now = Instant::now();
        let mut window = RecvWindow::new(100, 100, 100, now);
        window.receive(100).expect("within window");
        assert_eq!(window.consume(49, now, None, u32::MAX), None);
        assert_eq!(window.consume(1, now, None, u32::MAX), Some(50));
        assert_eq!(window.granted(), 50);
    }

    #[test]
    fn fast_consumer_doubles_target_up_to_max() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let rtt = Some(Duration::from_millis(50));
        let mut window = RecvWindow::new(100, 100, 300, start);
        // A window-limited sender: a whole window per round trip.
        window.receive(100).expect("within window");
        assert_eq!(
            window.consume(100, at(50), rtt, u32::MAX),
            Some(100),
            "span too short to judge"
        );
        assert_eq!(window.target(), 100);
        window.receive(100).expect("within window");
        // Two round trips and the scheduling allowance later: twice the
        // target went by, so the window was the limit.
        let increment = window.consume(100, at(101), rtt, u32::MAX);
        assert_eq!((increment, window.target()), (Some(200), 200));
        window.receive(200).expect("within window");
        let increment = window.consume(50, at(120), rtt, u32::MAX);
        assert_eq!(
            (increment, window.target()),
            (None, 200),
            "below threshold of 100, no update yet"
        );
        assert_eq!(window.consume(150, at(151), rtt, u32::MAX), Some(200));
        window.receive(200).expect("within window");
        let increment = window.consume(200, at(202), rtt, u32::MAX);
        assert_eq!(
            (increment, window.target()),
            (Some(300), 300),
            "capped at max"
        );
    }

    #[test]
    fn a_backlog_drained_at_once_does_not_grow_the_window() {
        let start = Instant::now();
        let rtt = Some(Duration::from_millis(50));
        let mut window = RecvWindow::new(1000, 1000, 100_000, start);
        // The reader was away for 300 ms, then drains the whole window in
        // bursts microseconds apart.
        for n in 0..10u64 {
            window.receive(1000).expect("within window");
            let now = start + Duration::from_millis(300) + Duration::from_micros(n);
            assert_eq!(window.consume(1000, now, rtt, u32::MAX), Some(1000));
        }
        assert_eq!(window.target(), 1000);
    }

    #[test]
    fn slow_consumer_keeps_the_target() {
        let start = Instant::now();
        let mut window = RecvWindow::new(100, 100, 1000, start);
        window.receive(100).expect("within window");
        let later = start + Duration::from_secs(1);
        assert_eq!(
            window.consume(50, later, Some(Duration::from_millis(50)), u32::MAX),
            Some(50)
        );
        assert_eq!(window.target(), 100);
    }
}
