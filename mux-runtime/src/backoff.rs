//! Reconnect backoff shared by the client pool and the sidecar: exponential
//! from an initial delay up to a ceiling, with jitter, so that the clients
//! of a server that restarts do not all come back in the same millisecond.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt number `failures + 1` (`failures` ≥ 1):
    /// `initial × 2^(failures-1)`, capped at `max`, then drawn uniformly
    /// from its upper half (jitter that never shortens it below half).
    pub fn delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(16);
        let full = self
            .initial
            .saturating_mul(1 << exponent)
            .min(self.max.max(self.initial));
        let half = full / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(random_below(nanos.saturating_add(1)))
    }
}

/// A number below `bound` (0 when `bound` is 0), from the std hasher's
/// per-instance random keys: jitter needs spread, not secrecy.
fn random_below(bound: u64) -> u64 {
    if bound == 0 {
        return 0;
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish() % bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_ceiling_within_their_upper_half() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for (failures, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (30, 1000),
        ] {
            for _ in 0..50 {
                let delay = backoff.delay(failures);
                let full = Duration::from_millis(full);
                assert!(delay >= full / 2 && delay <= full, "{failures}: {delay:?}");
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff.delay(3)).collect();
        assert!(spread.len() > 10, "no jitter: {spread:?}");
    }
}
