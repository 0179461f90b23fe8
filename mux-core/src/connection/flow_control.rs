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
    /// When the current auto-tuning epoch started (spec §9.6.1).
    epoch_start: Instant,
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
            epoch_start: now,
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
    pub(crate) fn consume(&mut self, len: u32, now: Instant, rtt: Option<Duration>) -> Option<u32> {
        self.unannounced = self.unannounced.saturating_add(len);
        if self.unannounced < (self.target / 2).max(1) {
            return None;
        }
        if let Some(rtt) = rtt {
            let epoch = now.saturating_duration_since(self.epoch_start);
            // A zero-length epoch says nothing about the rate: the receiver
            // consumed a burst read at once (one `now` for many frames), not
            // half a window per round trip. Growing on it overshoots the BDP
            // (measured: windows reached their maximum on loopback).
            if !epoch.is_zero() && epoch < rtt.saturating_mul(2) && self.target < self.max {
                let grown = self.target.saturating_mul(2).min(self.max);
                self.unannounced += grown - self.target;
                self.target = grown;
            }
        }
        self.epoch_start = now;
        let increment = core::mem::take(&mut self.unannounced);
        self.granted = self.granted.saturating_add(increment).min(MAX_WINDOW);
        Some(increment)
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
        assert_eq!(window.consume(49, now, None), None);
        assert_eq!(window.consume(1, now, None), Some(50));
        assert_eq!(window.granted(), 50);
    }

    #[test]
    fn fast_consumer_doubles_target_up_to_max() {
        let start = Instant::now();
        let rtt = Some(Duration::from_millis(50));
        let mut window = RecvWindow::new(100, 100, 300, start);
        window.receive(100).expect("within window");
        // Half a window consumed within 2 RTT: the window was the limit.
        let increment = window.consume(50, start + Duration::from_millis(10), rtt);
        assert_eq!((increment, window.target()), (Some(150), 200));
        let increment = window.consume(50, start + Duration::from_millis(20), rtt);
        assert_eq!(
            window.target(),
            200,
            "below threshold of 100, no update yet"
        );
        assert_eq!(increment, None);
        window.receive(150).expect("within window");
        let increment = window.consume(100, start + Duration::from_millis(30), rtt);
        assert_eq!(
            (increment, window.target()),
            (Some(250), 300),
            "capped at max"
        );
    }

    #[test]
    fn slow_consumer_keeps_the_target() {
        let start = Instant::now();
        let mut window = RecvWindow::new(100, 100, 1000, start);
        window.receive(100).expect("within window");
        let later = start + Duration::from_secs(1);
        assert_eq!(
            window.consume(50, later, Some(Duration::from_millis(50))),
            Some(50)
        );
        assert_eq!(window.target(), 100);
    }
}
