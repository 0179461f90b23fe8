//! When a loop polls without sleeping before it blocks, and for how long.
//!
//! Waking a thread blocked in `epoll_wait` costs tens of microseconds on
//! virtual machines, more than a small request's round trip; a loop that
//! polls a little longer before it sleeps catches the next event awake. A
//! spin that finds work saves that wake-up; one that does not burns the
//! whole spin, and on a machine with fewer cores than busy threads it delays
//! the very threads that would bring the work. It pays only when it almost
//! always succeeds: with a 200 µs spin and a wake-up of about 40 µs (an
//! estimate; wake-ups of tens of microseconds were seen on these VMs), above
//! about 85%.
//!
//! With [`SpinPolicy::adaptive`] (the default), the loop keeps a running
//! rate of how often work came back within the spin time after it ran out
//! of it (whether it spun or slept), and spins only while that rate is at
//! least `SUCCESS_NEEDED`. Chained calls (work back within tens of
//! microseconds) spin; calls a millisecond apart, whose every other wait is
//! long, do not; an idle loop sleeps at once, so idle CPU is 0. A wait that
//! a timer ends counts as one that work ends: a loop that only its periodic
//! timers wake (a server's once-a-second metrics tick) stops spinning after
//! them, where it used to spin after every one. A spinning
//! loop yields its core between polls, so that a thread that shares the
//! core (the application thread it serves, or another process) runs.
//!
//! Why adaptive is the default: in two alternating pairs of `mux-bench
//! --only rpc,busy,paced --rounds 2` runs (fixed, then adaptive, twice),
//! adaptive was ahead of a fixed 200 µs spin on every request/response
//! workload (1 outstanding: 24.8-32.2k blocking calls/s against 24.1-25.0k;
//! 64 outstanding: 170-212k against 114k; beside a busy process: 19.4-22.4k
//! against 13.2-13.4k) and used half the CPU at one call per millisecond
//! (117-123 ms of client CPU per 1,000 calls against 260-273 ms).
//!
//! Spinning during a bulk transfer shows as CPU per GB (a loop that waits a
//! few microseconds for the peer's next bytes burns them). Not spinning once
//! a loop moved more than 16 KiB between waits on average was tried and
//! measured against this policy, alternating `mux-bench --only bulk` runs:
//! the one-stream upload fell to 2.01 and 0.34 GB/s against 4.38 and
//! 2.76 GB/s (raw TCP's 64 KiB line moved between 1.7 and 2.9 GB/s across
//! the same four runs: a noisy machine, but a drop beyond its noise), so
//! the spin stays. Two narrower rules were measured later, interleaved
//! against this policy: no spin after a full read's worth (64 KiB) moved
//! since the last wait gave `Client` downloads of 2.37-2.99 GB/s against
//! 1.78-2.49 (three `--only bulk` pairs) but 6,869-7,037 calls per second
//! beside an upload, p99 0.42-0.50 ms, against 7,896-7,960 and 0.35 ms (two
//! `--only mixed,rpc` pairs); the same only while no stream received data (a
//! sender waiting for credit) showed no change in a download's server CPU.
//! Neither beat the noise on the bulk rows, and the first costs the calls
//! beside an upload.
//!
//! Beside a busy process (a thread that computes without pause), the spin
//! costs `Client`'s calls their tail: a spinning loop that yields, or is
//! preempted, loses its core to that thread for a time slice, and the p99.9
//! of blocking calls was 3.6-7.7 ms in ten one-round runs where with the
//! spin off it was 0.12-0.14 ms (two pairs: 22.3k and 20.8k calls per
//! second against 15.3k and 17.4k). Stopping the spin for a second after a
//! turn of it (poll and yield) lasted 100 µs or more took the tail away
//! beside the busy process (p99.9 0.10-0.26 ms, three runs), but such turns
//! happen in chained calls on two cores too, with three threads and no busy
//! process, and the chained calls fell from 34.3k and 26.2k per second to
//! 17.9k and 15.8k; with 1 ms instead of 100 µs, 22.7k and 17.8k against
//! 29.8k and 32.7k. Nor did the kernel's count of runnable threads tell
//! them apart: not spinning while `/proc/loadavg` counted more runnable
//! threads than cores (sampled every 10 ms) gave, in five interleaved
//! `--only busy,rpc` pairs, blocking calls beside the busy process at 0.73×
//! h2's at the median against 0.65× (p99.9 under 0.32 ms in three runs of
//! five, against one), but chained calls alone at 21.6k per second against
//! 28.2k: the caller, woken while both loops spin, makes three runnable
//! threads on two cores often enough. Not adopted: a loop cannot tell from
//! its own timings, nor from the run queue, a thread that would bring it
//! work from one that never will.

use std::time::{Duration, Instant};

/// The spin a loop allows itself; [`SpinPolicy::OFF`] never spins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpinPolicy {
    /// How long a loop polls before it sleeps. 200 µs by default: measured
    /// with `mux-bench`, chained 64-byte calls come 20-60 µs apart and a
    /// shorter spin (100 µs, or twice the gap) lost a third to a half of
    /// their rate, while calls 1 ms apart never spin.
    pub max: Duration,
    /// Spin only while work almost always comes back within `max` (see the
    /// module doc); without it, every wait spins `max` first. On by default.
    pub adaptive: bool,
}

impl SpinPolicy {
    /// Never spin: block in the poller as soon as there is nothing to do.
    pub const OFF: Self = Self {
        max: Duration::ZERO,
        adaptive: false,
    };

    /// Spin `max` only while it almost always pays.
    pub const ADAPTIVE: Self = Self {
        max: Duration::from_micros(200),
        adaptive: true,
    };
}

impl Default for SpinPolicy {
    /// [`SpinPolicy::ADAPTIVE`] (see the module doc for the measurements).
    fn default() -> Self {
        Self::ADAPTIVE
    }
}

/// The share of waits that must end within the spin time for spinning to
/// pay (in 1/1024ths): 85%, the break-even of a 200 µs spin against an
/// estimated 40 µs wake-up.
const SUCCESS_NEEDED: u32 = 870;

/// A loop's record of how soon work comes back once it ran out of it.
#[derive(Debug)]
pub(super) struct Spinner {
    policy: SpinPolicy,
    /// When the loop last ran out of work, if it has not found more since.
    idle_since: Option<Instant>,
    /// Smoothed share of waits that ended within `policy.max`, in 1/1024ths.
    success: u32,
}

impl Spinner {
    /// A loop starts as if spinning had paid: a new connection's handshake
    /// and first call come back within microseconds, and two waits that do
    /// not (an idle loop) are enough to stop it spinning.
    pub(super) fn new(policy: SpinPolicy) -> Self {
        Self {
            policy,
            idle_since: None,
            success: 1024,
        }
    }

    /// The loop ran out of work at `now` and is about to wait for more.
    pub(super) fn idle(&mut self, now: Instant) {
        self.idle_since.get_or_insert(now);
    }

    /// An iteration found work at `now`.
    pub(super) fn work(&mut self, now: Instant) {
        let Some(idle) = self.idle_since.take() else {
            return; // busy without a pause
        };
        let soon = now.saturating_duration_since(idle) <= self.policy.max;
        // 7/8 history, 1/8 this wait.
        self.success = (self.success * 7 + if soon { 1024 } else { 0 }) / 8;
    }

    /// How long to poll before sleeping now.
    pub(super) fn budget(&self) -> Duration {
        if !self.policy.adaptive || self.success >= SUCCESS_NEEDED {
            self.policy.max
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Spins begun on this thread (a loop's), for the tests.
    static SPUN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A loop on this thread begins a spin.
#[cfg(test)]
pub(super) fn note_spin() {
    SPUN.with(|spun| spun.set(spun.get() + 1));
}

/// Spins begun on this thread so far.
#[cfg(test)]
pub(super) fn spun_here() -> u64 {
    SPUN.with(std::cell::Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work that comes `gap` after the loop runs out of it, `times` times.
    fn paced(gap: Duration, times: u32) -> Spinner {
        let mut spinner = Spinner::new(SpinPolicy::ADAPTIVE);
        let start = Instant::now();
        for n in 0..times {
            let idle = start + (gap + Duration::from_micros(5)) * n;
            spinner.idle(idle);
            spinner.work(idle + gap);
        }
        spinner
    }

    #[test]
    fn frequent_work_spins_and_sparse_work_sleeps() {
        assert_eq!(
            Spinner::new(SpinPolicy::ADAPTIVE).budget(),
            Duration::from_micros(200),
            "a new loop spins until it learns otherwise"
        );
        let mut idle = Spinner::new(SpinPolicy::ADAPTIVE);
        let start = Instant::now();
        for n in 0..2 {
            idle.idle(start + Duration::from_secs(n));
            idle.work(start + Duration::from_secs(n) + Duration::from_millis(500));
        }
        assert_eq!(idle.budget(), Duration::ZERO, "two long waits stop it");
        let fixed = SpinPolicy {
            adaptive: false,
            ..SpinPolicy::ADAPTIVE
        };
        assert_eq!(
            Spinner::new(fixed).budget(),
            Duration::from_micros(200),
            "a fixed spin always spins"
        );
        assert_eq!(
            paced(Duration::from_micros(20), 30).budget(),
            Duration::from_micros(200)
        );
        assert_eq!(
            paced(Duration::from_micros(150), 30).budget(),
            Duration::from_micros(200)
        );
        assert_eq!(paced(Duration::from_millis(1), 30).budget(), Duration::ZERO);
    }

    #[test]
    fn a_pause_in_the_work_stops_the_spinning() {
        let mut spinner = paced(Duration::from_micros(20), 30);
        let now = Instant::now() + Duration::from_millis(1);
        spinner.idle(now);
        spinner.work(now + Duration::from_millis(10));
        assert_eq!(
            spinner.budget(),
            Duration::from_micros(200),
            "one pause is not a trend"
        );
        spinner.idle(now + Duration::from_millis(11));
        spinner.work(now + Duration::from_millis(20));
        assert_eq!(spinner.budget(), Duration::ZERO, "two long waits end it");

        // Calls a millisecond apart: every other wait is long.
        let mut alternating = Spinner::new(SpinPolicy::ADAPTIVE);
        let start = Instant::now();
        for n in 0..40u32 {
            let gap = if n % 2 == 0 { 50 } else { 900 };
            let idle = start + Duration::from_millis(u64::from(n));
            alternating.idle(idle);
            alternating.work(idle + Duration::from_micros(gap));
        }
        assert_eq!(alternating.budget(), Duration::ZERO);
    }

    /// Wakes itself with a timer every 2 ms, `TICKS` times, and records
    /// the spins begun on its thread at each tick.
    struct Ticking {
        spun_at: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
        ticks: usize,
    }

    const TICKS: usize = 20;

    impl crate::event_loop::App for Ticking {
        type Command = ();
        fn on_start(&mut self, ctx: &mut crate::event_loop::Ctx<'_>) {
            ctx.set_timer(ctx.now + Duration::from_millis(2), 0);
        }
        fn on_event(
            &mut self,
            _: &mut crate::event_loop::Ctx<'_>,
            _: crate::event_loop::ConnKey,
            _: mux_core::Event,
        ) {
        }
        fn on_closed(
            &mut self,
            _: &mut crate::event_loop::Ctx<'_>,
            _: crate::event_loop::ConnKey,
            _: Option<crate::event_loop::LoopError>,
        ) {
        }
        fn on_command(&mut self, _: &mut crate::event_loop::Ctx<'_>, (): ()) {}
        fn on_timer(&mut self, ctx: &mut crate::event_loop::Ctx<'_>, _: u64) {
            if let Ok(mut spun_at) = self.spun_at.lock() {
                spun_at.push(spun_here());
            }
            self.ticks += 1;
            if self.ticks < TICKS {
                ctx.set_timer(ctx.now + Duration::from_millis(2), 0);
            }
        }
        fn is_done(&self, _: &crate::event_loop::Ctx<'_>) -> bool {
            self.ticks >= TICKS
        }
    }

    #[test]
    fn a_loop_that_only_its_timers_wake_stops_spinning_after_them() {
        let spun_at = std::sync::Arc::default();
        let app = Ticking {
            spun_at: std::sync::Arc::clone(&spun_at),
            ticks: 0,
        };
        let config = crate::event_loop::LoopConfig::default();
        assert_eq!(config.spin, SpinPolicy::ADAPTIVE);
        let (event_loop, _handle) =
            crate::event_loop::EventLoop::new(app, config, None, 1).expect("a loop");
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(event_loop.run());
        });
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("the loop ends after its ticks")
            .expect("the loop ran");
        let spun_at = spun_at.lock().expect("the record").clone();
        assert_eq!(spun_at.len(), TICKS);
        // Each wait is 2 ms, ten times the spin: after the first two, the
        // loop knows that spinning after a tick finds nothing.
        assert_eq!(
            spun_at.get(2),
            spun_at.last(),
            "spins begun by each tick: {spun_at:?}"
        );
    }

    #[test]
    fn the_policy_can_turn_spinning_off() {
        let mut spinner = Spinner::new(SpinPolicy::OFF);
        let start = Instant::now();
        for n in 0..10 {
            spinner.idle(start + Duration::from_micros(20) * n);
            spinner.work(start + Duration::from_micros(20) * n + Duration::from_micros(10));
        }
        assert_eq!(spinner.budget(), Duration::ZERO);
    }
}
