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

/// A point in time as nanoseconds since the connection started: a window
/// judges its measuring span on every consumption, and subtracting two
/// `Instant`s costs more than the rest of a consumption, so the connection
/// converts its clock once per turn and the windows count in integers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tick(u64);

impl Tick {
    /// `now` as a tick of a clock that started at `epoch`.
    pub(crate) fn since(epoch: Instant, now: Instant) -> Self {
        Self(nanos(now.saturating_duration_since(epoch)))
    }

    fn nanos_since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// For the tests' clocks (`start + Duration::from_millis(10)`).
#[cfg(test)]
impl core::ops::Add<Duration> for Tick {
    type Output = Self;

    fn add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(nanos(duration)))
    }
}

/// A duration in nanoseconds (saturating: 584 years).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Credit is returned once the unannounced part reaches this fraction of the
/// target (spec §9.4.2): a quarter keeps seven eighths of the window in use on
/// average (half would keep three quarters), at one 13-byte WINDOW_UPDATE per
/// quarter window.
const CREDIT_CADENCE: u32 = 4;

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
    span_start: Tick,
    /// Bytes consumed since `span_start`.
    span_consumed: u64,
    /// The target in force before `span_start`: credit granted when the span
    /// started takes a round trip to bring data, so the span's first round
    /// trip runs under this one.
    span_previous_target: u32,
    /// The span's last part, from its first consumption a round trip or
    /// more after `span_start`: the rate under the current window, since
    /// credit granted at the span's start takes a round trip to bring data.
    recent_start: Option<Tick>,
    /// Bytes consumed since `recent_start`.
    recent_consumed: u64,
}

impl RecvWindow {
    /// A window in which the peer believes it has `granted` credit, and
    /// which we want to offer at `target` (ask for the difference with
    /// [`RecvWindow::take_initial_update`]).
    pub(crate) fn new(granted: u32, target: u32, max: u32, now: Tick) -> Self {
        let max = max.min(MAX_WINDOW);
        let target = target.min(max).max(granted.min(MAX_WINDOW));
        Self {
            granted: granted.min(MAX_WINDOW),
            target,
            max: max.max(target),
            unannounced: target - granted.min(target),
            span_start: now,
            span_consumed: 0,
            span_previous_target: target,
            recent_start: None,
            recent_consumed: 0,
        }
    }

    pub(crate) fn granted(&self) -> u32 {
        self.granted
    }

    pub(crate) fn target(&self) -> u32 {
        self.target
    }

    /// Credit the peer holds: granted, or spent on bytes not yet consumed
    /// (`target - unannounced`, by the invariant).
    pub(crate) fn held_by_peer(&self) -> u32 {
        self.target - self.unannounced
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
    /// WINDOW_UPDATE increment to send now, if a quarter of the target is
    /// unannounced (spec §9.4.2), after auto-tuning the target (spec §9.6.2).
    /// The target grows by at most `headroom` (spec §9.6.8). Credit the peer
    /// holds (granted, or spent on bytes not yet consumed) is topped up to
    /// `ceiling` at most, if below the target (spec §9.6.9); the rest stays
    /// unannounced.
    pub(crate) fn consume(
        &mut self,
        len: u32,
        now: Tick,
        rtt: Option<Duration>,
        headroom: u32,
        ceiling: u32,
    ) -> Option<u32> {
        self.unannounced = self.unannounced.saturating_add(len);
        self.span_consumed += u64::from(len);
        let rtt = rtt.map(nanos);
        if self.recent_start.is_some() {
            self.recent_consumed += u64::from(len);
        } else if rtt.is_some_and(|rtt| now.nanos_since(self.span_start) >= rtt) {
            self.recent_start = Some(now);
        }
        // Judged on every consumption, not only at updates: waiting for the
        // next quarter window would delay each growth by up to a quarter
        // round trip. A grown target is credit to announce at once.
        let before = self.target;
        if let Some(rtt) = rtt {
            self.tune(now, rtt, headroom);
        }
        let grew = self.target > before;
        let limit = self.target.min(ceiling);
        let room = limit.saturating_sub(self.held_by_peer());
        let increment = self.unannounced.min(room);
        if increment == 0 || (!grew && increment < (limit / CREDIT_CADENCE).max(1)) {
            return None;
        }
        self.unannounced -= increment;
        self.granted = self.granted.saturating_add(increment).min(MAX_WINDOW);
        Some(increment)
    }

    /// The credit a stream that shares its connection may hold (spec
    /// §9.6.9): about one bandwidth-delay product (a quarter of a target
    /// tuned to four), and never less than the initial window `floor`.
    pub(crate) fn shared_ceiling(&self, floor: u32) -> u32 {
        (self.target / 4).max(floor)
    }

    /// Spec §9.6.2: once a span of at least two round trips plus the
    /// scheduling allowance has passed, grows the target if the consumer
    /// took at least a whole target per two round trips over it (the
    /// window, not the consumer or the path, was the limit), then starts a
    /// new span. The target grows to four times the bytes delivered per
    /// round trip over the span, and at least doubles: a window-limited
    /// stream that delivers a whole target per round trip grows fourfold
    /// every two round trips, as fast as TCP's slow start. The rate is taken
    /// over the whole span, not since the last update: a reader that drains a
    /// backlog consumes megabytes in microseconds, and that burst says the
    /// reader, not the window, was behind (spec §9.6.7).
    fn tune(&mut self, now: Tick, rtt: u64, headroom: u32) {
        let span = now.nanos_since(self.span_start);
        let two_trips = rtt.saturating_mul(2);
        if span == 0 || span < two_trips.saturating_add(nanos(SCHEDULING_ALLOWANCE)) {
            return;
        }
        // consumed / span >= window / (2 × rtt), where the window is the
        // previous target for the span's first round trip and the current
        // one after: the target is at most twice the bandwidth-delay
        // product. Without division.
        let window_x_span = u128::from(self.span_previous_target) * u128::from(rtt)
            + u128::from(self.target) * u128::from(span.saturating_sub(rtt));
        let fast = u128::from(self.span_consumed) * u128::from(two_trips) >= window_x_span;
        let previous = self.target;
        if fast && self.target < self.max {
            let grown = self
                .four_round_trips_of_delivery(now, rtt, span)
                .min(self.max)
                .min(self.target.saturating_add(headroom))
                .max(self.target);
            self.unannounced += grown - self.target;
            self.target = grown;
        }
        self.span_start = now;
        self.span_consumed = 0;
        self.span_previous_target = previous;
        self.recent_start = None;
        self.recent_consumed = 0;
    }

    /// Four times the bytes delivered per round trip, at the rate of the
    /// span's last part if it lasted a round trip, else of the whole span.
    fn four_round_trips_of_delivery(&self, now: Tick, rtt: u64, span: u64) -> u32 {
        let (consumed, over) = match self.recent_start {
            Some(start) if now.nanos_since(start) >= rtt => {
                (self.recent_consumed, now.nanos_since(start))
            }
            _ => (self.span_consumed, span),
        };
        let bytes = 4 * u128::from(consumed) * u128::from(rtt) / u128::from(over.max(1));
        u32::try_from(bytes).unwrap_or(u32::MAX)
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
        let now = Tick::default();
        let mut window = RecvWindow::new(100, 100, 100, now);
        assert_eq!(window.receive(60), Ok(()));
        assert_eq!(window.receive(41), Err(WindowExceeded));
    }

    #[test]
    fn a_ceiling_holds_back_the_credit_above_it() {
        // §9.6.9: the peer holds at most the ceiling; the rest of the target
        // stays unannounced until the ceiling lifts.
        let now = Tick::default();
        let mut window = RecvWindow::new(1000, 1000, 1000, now);
        window.receive(800).expect("within the grant");
        // Held: 200 granted; up to 500 allowed.
        assert_eq!(window.consume(800, now, None, u32::MAX, 500), Some(300));
        assert_eq!(window.granted(), 500);
        assert_eq!(window.consume(0, now, None, u32::MAX, 500), None);
        assert_eq!(window.consume(0, now, None, u32::MAX, u32::MAX), Some(500));
        assert_eq!(window.granted(), 1000);
    }

    #[test]
    fn a_shared_stream_may_hold_a_quarter_of_its_target_or_its_initial_window() {
        let now = Tick::default();
        let big = RecvWindow::new(4 << 20, 4 << 20, 32 << 20, now);
        assert_eq!(big.shared_ceiling(256 << 10), 1 << 20);
        let small = RecvWindow::new(256 << 10, 256 << 10, 32 << 20, now);
        assert_eq!(small.shared_ceiling(256 << 10), 256 << 10);
    }

    #[test]
    fn credit_is_batched_until_a_quarter_of_the_target() {
        let now = Tick::default();
        let mut window = RecvWindow::new(100, 100, 100, now);
        window.receive(100).expect("within window");
        assert_eq!(window.consume(24, now, None, u32::MAX, u32::MAX), None);
        assert_eq!(window.consume(1, now, None, u32::MAX, u32::MAX), Some(25));
        assert_eq!(window.granted(), 25);
    }

    #[test]
    fn a_window_limited_stream_grows_to_four_round_trips_of_delivery() {
        let start = Tick::default();
        let rtt = Some(Duration::from_millis(50));
        let mut window = RecvWindow::new(1000, 1000, 100_000, start);
        // A window-limited sender: a whole window per round trip, consumed
        // in 200-byte pieces every 10 ms.
        let mut consume = |ms: u64| {
            window.receive(200).expect("within window");
            let increment = window.consume(
                200,
                start + Duration::from_millis(ms),
                rtt,
                u32::MAX,
                u32::MAX,
            );
            (increment, window.target())
        };
        for ms in (10..=100).step_by(10) {
            assert_eq!(consume(ms).1, 1000, "span too short to judge at {ms} ms");
        }
        // Two round trips and the scheduling allowance later: a target per
        // round trip went by, so the window was the limit; the target
        // becomes four round trips of delivery at the rate of the span's
        // last round trip, and the growth is announced at once.
        assert_eq!(consume(110), (Some(200 + 3000), 4000));
    }

    #[test]
    fn growth_stops_at_the_maximum_and_the_headroom() {
        let start = Tick::default();
        let rtt = Some(Duration::from_millis(10));
        let at = |ms| start + Duration::from_millis(ms);
        for (max, headroom, expected) in [(3000, u32::MAX, 3000), (100_000, 500, 1500)] {
            let mut window = RecvWindow::new(1000, 1000, max, start);
            window.receive(1000).expect("within window");
            window.consume(1000, at(10), rtt, headroom, u32::MAX);
            window.receive(1000).expect("within window");
            window.consume(1000, at(21), rtt, headroom, u32::MAX);
            assert_eq!(window.target(), expected, "max {max}, headroom {headroom}");
        }
    }

    #[test]
    fn growth_is_announced_at_once_however_small() {
        // §9.6.2: a grown target goes out with the next WINDOW_UPDATE at once,
        // even when the growth (here 1 byte, at the maximum) and the consumed
        // credit together stay below the quarter-window batching threshold.
        let start = Tick::default();
        let rtt = Some(Duration::from_millis(10));
        let at = |ms| start + Duration::from_millis(ms);
        let mut window = RecvWindow::new(1000, 1000, 1001, start);
        window.receive(1000).expect("within window");
        assert_eq!(
            window.consume(1000, at(10), rtt, u32::MAX, u32::MAX),
            Some(1000)
        );
        window.receive(300).expect("within window");
        assert_eq!(
            window.consume(300, at(15), rtt, u32::MAX, u32::MAX),
            Some(300)
        );
        // The span is judged: fast enough to grow, to the maximum (+1); only
        // 10 bytes are unannounced besides, far below a quarter window.
        window.receive(10).expect("within window");
        assert_eq!(
            window.consume(10, at(21), rtt, u32::MAX, u32::MAX),
            Some(11)
        );
        assert_eq!(window.target(), 1001);
    }

    #[test]
    fn a_path_limited_stream_settles_within_four_times_the_bdp() {
        // 100 bytes per ms over a 10 ms RTT: BDP 1,000 bytes.
        let start = Tick::default();
        let rtt = Some(Duration::from_millis(10));
        let mut window = RecvWindow::new(1000, 1000, 1_000_000, start);
        for ms in 1..=1000u64 {
            window.receive(100).expect("within window");
            window.consume(
                100,
                start + Duration::from_millis(ms),
                rtt,
                u32::MAX,
                u32::MAX,
            );
        }
        assert!(
            (2000..=4000).contains(&window.target()),
            "target {}",
            window.target()
        );
    }

    #[test]
    fn a_backlog_drained_at_once_does_not_grow_the_window() {
        let start = Tick::default();
        let rtt = Some(Duration::from_millis(50));
        let mut window = RecvWindow::new(1000, 1000, 100_000, start);
        // The reader was away for 300 ms, then drains the whole window in
        // bursts microseconds apart.
        for n in 0..10u64 {
            window.receive(1000).expect("within window");
            let now = start + Duration::from_millis(300) + Duration::from_micros(n);
            assert_eq!(
                window.consume(1000, now, rtt, u32::MAX, u32::MAX),
                Some(1000)
            );
        }
        assert_eq!(window.target(), 1000);
    }

    #[test]
    fn slow_consumer_keeps_the_target() {
        let start = Tick::default();
        let mut window = RecvWindow::new(100, 100, 1000, start);
        window.receive(100).expect("within window");
        let later = start + Duration::from_secs(1);
        assert_eq!(
            window.consume(
                50,
                later,
                Some(Duration::from_millis(50)),
                u32::MAX,
                u32::MAX
            ),
            Some(50)
        );
        assert_eq!(window.target(), 100);
    }
}
