//! What one run of a workload on one system yields (its figure, the CPU
//! each process spent on it, its latency samples), and the summary of
//! repeated runs: min/median/max.

use std::time::{Duration, Instant};

use mux_testkit::cpu_seconds;

/// Latency percentiles of one run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Latency {
    pub(crate) samples: usize,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) p999: Duration,
}

impl Latency {
    pub(crate) fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            let index = ((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1));
            samples.get(index).copied().unwrap_or_default()
        };
        Self {
            samples: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
        }
    }
}

/// What a workload's body reports: its figure (higher is better), the work
/// done in the unit CPU is charged per (GB, thousands of calls...), and
/// latency samples if it takes any.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) value: f64,
    pub(crate) units: f64,
    pub(crate) samples: Option<Vec<Duration>>,
    /// CPU-seconds a client process other than this one spent (wrk).
    pub(crate) outside_client_cpu: f64,
    /// GB/s of a bulk upload that ran beside the work measured, on the
    /// same connection: what the work's figure cost the upload.
    pub(crate) beside: Option<f64>,
}

impl Outcome {
    /// Bytes moved in `elapsed`: GB/s, CPU per GB.
    pub(crate) fn bytes(total: usize, elapsed: Duration) -> Self {
        let gb = total as f64 / 1e9;
        Self {
            value: gb / elapsed.as_secs_f64(),
            units: gb,
            samples: None,
            outside_client_cpu: 0.0,
            beside: None,
        }
    }

    /// Operations (calls, deliveries, set-ups) timed one by one in
    /// `elapsed`: per second, CPU per thousand.
    pub(crate) fn operations(samples: Vec<Duration>, elapsed: Duration) -> Self {
        let count = samples.len() as f64;
        Self {
            value: count / elapsed.as_secs_f64(),
            units: count / 1e3,
            samples: Some(samples),
            outside_client_cpu: 0.0,
            beside: None,
        }
    }

    /// A figure a program of its own measured (per second, over `units`),
    /// whose client CPU is that program's `client_cpu` seconds.
    pub(crate) fn external(value: f64, units: f64, client_cpu: f64) -> Self {
        Self {
            value,
            units,
            samples: None,
            outside_client_cpu: client_cpu,
            beside: None,
        }
    }
}

/// A download's receiving side, timing its second half: on a long link the
/// first half includes the ramp-up, and the second is the steady rate.
#[derive(Debug)]
pub(crate) struct SteadyHalf {
    total: usize,
    got: usize,
    half_at: Option<(Instant, usize)>,
}

impl SteadyHalf {
    pub(crate) fn new(total: usize) -> Self {
        Self {
            total,
            got: 0,
            half_at: None,
        }
    }

    /// Counts `n` bytes received.
    pub(crate) fn received(&mut self, n: usize) {
        self.got += n;
        if self.half_at.is_none() && self.got >= self.total / 2 {
            self.half_at = Some((Instant::now(), self.got));
        }
    }

    pub(crate) fn got(&self) -> usize {
        self.got
    }

    /// The rate of the bytes received after the first half.
    pub(crate) fn outcome(&self) -> Outcome {
        let (since, at) = self.half_at.unwrap_or((Instant::now(), self.got));
        Outcome::bytes(self.got.saturating_sub(at), since.elapsed())
    }
}

/// One run: its figure, CPU-seconds per unit on the client side (this
/// process) and the server side (the server's process), and latency.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Run {
    pub(crate) value: f64,
    pub(crate) client_cpu: f64,
    pub(crate) server_cpu: f64,
    pub(crate) latency: Option<Latency>,
    /// GB/s of the upload beside the work, if one ran ([`Outcome::beside`]).
    pub(crate) beside: Option<f64>,
}

/// Runs `body`, charging the CPU this process and process `server` spent
/// meanwhile to it. Each process's own counters: the client side of every
/// system runs in this process, one workload at a time, and the other
/// systems' clients sit idle meanwhile.
pub(crate) fn measure(server: u32, body: impl FnOnce() -> Outcome) -> Run {
    let me = std::process::id();
    let (client_before, server_before) = (cpu_seconds(me), cpu_seconds(server));
    let outcome = body();
    let (client_after, server_after) = (cpu_seconds(me), cpu_seconds(server));
    let per_unit = |spent: f64| {
        if outcome.units > 0.0 {
            spent / outcome.units
        } else {
            0.0
        }
    };
    Run {
        value: outcome.value,
        client_cpu: per_unit(client_after - client_before + outcome.outside_client_cpu),
        server_cpu: per_unit(server_after - server_before),
        latency: outcome.samples.map(Latency::of),
        beside: outcome.beside,
    }
}

/// Min, median and max of some figures.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Spread {
    pub(crate) min: f64,
    pub(crate) median: f64,
    pub(crate) max: f64,
}

impl Spread {
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        values.sort_unstable_by(f64::total_cmp);
        let at = |index: usize| values.get(index).copied().unwrap_or(0.0);
        Self {
            min: at(0),
            median: at(values.len() / 2),
            max: at(values.len().saturating_sub(1)),
        }
    }
}

/// Repeated runs of one system on one workload.
#[derive(Debug, Clone, Default)]
pub(crate) struct Series {
    pub(crate) system: String,
    pub(crate) runs: Vec<Run>,
}

impl Series {
    pub(crate) fn value(&self) -> Spread {
        Spread::of(self.runs.iter().map(|r| r.value))
    }

    pub(crate) fn client_cpu(&self) -> f64 {
        Spread::of(self.runs.iter().map(|r| r.client_cpu)).median
    }

    /// The upload beside the work over the runs, if one ran.
    pub(crate) fn beside(&self) -> Option<Spread> {
        let rates: Vec<f64> = self.runs.iter().filter_map(|r| r.beside).collect();
        (!rates.is_empty()).then(|| Spread::of(rates))
    }

    pub(crate) fn server_cpu(&self) -> f64 {
        Spread::of(self.runs.iter().map(|r| r.server_cpu)).median
    }

    /// Each percentile's median over the runs, and the samples of all runs.
    pub(crate) fn latency(&self) -> Option<Latency> {
        let all: Vec<Latency> = self.runs.iter().filter_map(|r| r.latency).collect();
        if all.is_empty() {
            return None;
        }
        let median = |f: fn(&Latency) -> Duration| {
            Duration::from_secs_f64(Spread::of(all.iter().map(|l| f(l).as_secs_f64())).median)
        };
        Some(Latency {
            samples: all.iter().map(|l| l.samples).sum(),
            p50: median(|l| l.p50),
            p99: median(|l| l.p99),
            p999: median(|l| l.p999),
        })
    }

    /// The ratio of `self` to `other` run by run (round n against round n,
    /// measured side by side), as a spread.
    pub(crate) fn ratio_to(&self, other: &Self) -> Spread {
        Spread::of(
            self.runs
                .iter()
                .zip(&other.runs)
                .filter(|(_, o)| o.value > 0.0)
                .map(|(s, o)| s.value / o.value),
        )
    }
}

/// Calls `call` at `rate` per second, `count` times, sampling each call's
/// latency; sleeps between calls (no spin on our side).
pub(crate) fn paced(count: usize, rate: f64, mut call: impl FnMut()) -> Outcome {
    let gap = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut samples = Vec::with_capacity(count);
    for n in 0..count {
        let due = start + gap * n as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let at = Instant::now();
        call();
        samples.push(at.elapsed());
    }
    Outcome::operations(samples, start.elapsed())
}
