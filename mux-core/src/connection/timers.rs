//! The connection's timers (spec §11): one deadline per [`Timer`], set and
//! stopped where the state they watch changes, folded into the single
//! deadline that `poll_timeout` reports.

use std::time::Instant;

use bytes::Bytes;

use super::{Connection, Phase, PingPurpose};
use crate::error::{ConnectionError, ErrorCode, Timeout};
use crate::frame::{Frame, GoAway};

/// Every timer a connection runs (spec §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// The peer's preface and first SETTINGS must arrive in time (spec §11.4.1).
    Handshake,
    /// Our oldest unacknowledged SETTINGS must be acknowledged in time (spec §5.4.2.4).
    SettingsAck,
    /// Silence since the last bytes received: send a keepalive PING; or, with the
    /// probe outstanding, the time left for its ACK (spec §11.2.3).
    Keepalive,
    /// No active stream for this long: GOAWAY with IDLE_TIMEOUT (spec §11.4.2).
    Idle,
    /// A graceful shutdown must finish in time (spec §11.3.3).
    Drain,
}

impl Timer {
    /// Every timer, in the order `handle_timeout` serves expired ones.
    pub(super) const ALL: [Self; 5] = [
        Self::Handshake,
        Self::SettingsAck,
        Self::Drain,
        Self::Keepalive,
        Self::Idle,
    ];

    fn slot(self) -> usize {
        match self {
            Self::Handshake => 0,
            Self::SettingsAck => 1,
            Self::Keepalive => 2,
            Self::Idle => 3,
            Self::Drain => 4,
        }
    }
}

/// One optional deadline per timer.
#[derive(Debug, Clone, Default)]
pub(super) struct TimerTable {
    deadlines: [Option<Instant>; 5],
}

impl TimerTable {
    #[cfg(test)]
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.assign(timer, Some(at));
    }

    pub(super) fn stop(&mut self, timer: Timer) {
        self.assign(timer, None);
    }

    /// Sets the timer to `at`, or stops it when `at` is `None`.
    pub(super) fn assign(&mut self, timer: Timer, at: Option<Instant>) {
        if let Some(slot) = self.deadlines.get_mut(timer.slot()) {
            *slot = at;
        }
    }

    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines.get(timer.slot()).copied().flatten()
    }

    pub(super) fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The earliest deadline of all.
    pub(super) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    pub(super) fn clear(&mut self) {
        self.deadlines = [None; 5];
    }
}

impl Connection {
    /// When `handle_timeout` should be called next, if ever (group D).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        self.timers.next()
    }

    /// Handles the passing of time: handshake, settings, keepalive, idle and
    /// drain timers (spec §11) (group B).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        for timer in Timer::ALL {
            if self.phase == Phase::Closed {
                return;
            }
            if self.timers.is_expired(timer, now) {
                self.on_timer(timer, now);
            }
        }
    }

    fn on_timer(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::Handshake => {
                self.fail(ConnectionError::Timeout(Timeout::Handshake), Bytes::new())
            }
            Timer::SettingsAck => {
                self.fail(ConnectionError::Timeout(Timeout::SettingsAck), Bytes::new())
            }
            Timer::Drain => self.fail(ConnectionError::Timeout(Timeout::Drain), Bytes::new()),
            Timer::Keepalive => {
                if self
                    .pings
                    .iter()
                    .any(|(_, _, purpose)| *purpose == PingPurpose::Keepalive)
                {
                    self.fail(ConnectionError::Timeout(Timeout::Keepalive), Bytes::new());
                } else {
                    self.send_ping(now, PingPurpose::Keepalive);
                }
            }
            Timer::Idle => {
                let last = self.streams.last_peer_id();
                self.goaway_sent = Some(last);
                self.control.push_back(Frame::GoAway(GoAway {
                    last_stream: last,
                    code: ErrorCode::IDLE_TIMEOUT,
                    debug: Bytes::new(),
                }));
                self.refresh_idle_timer();
                self.check_drained();
            }
        }
    }

    /// The SETTINGS timer follows our oldest unacknowledged SETTINGS.
    pub(super) fn refresh_settings_timer(&mut self) {
        let deadline = self
            .settings_in_flight
            .front()
            .and_then(|sent| sent.checked_add(self.config.settings_timeout));
        self.timers.assign(Timer::SettingsAck, deadline);
    }

    /// The keepalive timer: the probe's ACK deadline while one is out,
    /// otherwise an interval after the last bytes received.
    /// Keepalive runs once the handshake is done: before, the handshake
    /// timer watches the peer, and a server must send nothing before the
    /// client's preface (spec §3.3).
    pub(super) fn refresh_keepalive_timer(&mut self) {
        let Some(interval) = self.config.keepalive_interval else {
            return;
        };
        if self.phase != Phase::Open {
            return;
        }
        let deadline = match self
            .pings
            .iter()
            .find(|(_, _, purpose)| *purpose == PingPurpose::Keepalive)
        {
            Some((_, sent, _)) => sent.checked_add(self.config.keepalive_timeout),
            None => self.last_received.checked_add(interval),
        };
        // A wait too long to be an instant is no deadline.
        self.timers.assign(Timer::Keepalive, deadline);
    }

    /// The idle timer runs while the connection is open, has no active
    /// stream, and has not started to go away.
    pub(super) fn refresh_idle_timer(&mut self) {
        let deadline = match (self.config.idle_timeout, self.idle_since) {
            (Some(idle), Some(since))
                if self.goaway_sent.is_none() && self.phase == Phase::Open =>
            {
                since.checked_add(idle)
            }
            _ => None,
        };
        self.timers.assign(Timer::Idle, deadline);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn next_is_the_earliest_set_deadline() {
        let now = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(Timer::Idle, now + Duration::from_secs(5));
        table.set(Timer::Drain, now + Duration::from_secs(1));
        assert_eq!(table.next(), Some(now + Duration::from_secs(1)));
        table.stop(Timer::Drain);
        assert_eq!(table.next(), Some(now + Duration::from_secs(5)));
        assert!(!table.is_expired(Timer::Idle, now));
        assert!(table.is_expired(Timer::Idle, now + Duration::from_secs(5)));
        table.clear();
        assert_eq!(table.next(), None);
    }

    #[test]
    fn every_timer_has_its_own_slot() {
        let now = Instant::now();
        let mut table = TimerTable::default();
        for (n, timer) in Timer::ALL.into_iter().enumerate() {
            table.set(timer, now + Duration::from_secs(n as u64));
        }
        for (n, timer) in Timer::ALL.into_iter().enumerate() {
            assert_eq!(table.get(timer), Some(now + Duration::from_secs(n as u64)));
        }
    }
}
