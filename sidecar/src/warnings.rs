//! Warnings a person can read under load: the first occurrence of a
//! warning is logged at once; repeats are counted and summed up once per
//! stats period ("… and 34,456 more in the last 10 s"), so a flood of
//! refused connections writes two lines, not one per connection.

use std::collections::BTreeMap;
use std::time::Duration;

/// Distinct warnings counted per period; beyond, repeats of new ones are
/// counted together.
const MAX_KINDS: usize = 64;

/// Warnings of the current period, by text.
#[derive(Debug, Default)]
pub(crate) struct Warnings {
    repeats: BTreeMap<String, u64>,
    other: u64,
}

impl Warnings {
    /// Logs `what` now if it is new this period, else counts it.
    pub(crate) fn warn(&mut self, what: String) {
        if let Some(count) = self.repeats.get_mut(&what) {
            *count += 1;
        } else if self.repeats.len() < MAX_KINDS {
            log::warn!("{what}");
            self.repeats.insert(what, 0);
        } else {
            self.other += 1;
        }
    }

    /// Logs how often each warning repeated since the last summary, then
    /// starts a new period.
    pub(crate) fn summarize(&mut self, period: Duration) {
        for (what, repeats) in std::mem::take(&mut self.repeats) {
            if repeats > 0 {
                log::warn!("{what} (and {repeats} more in the last {period:?})");
            }
        }
        if self.other > 0 {
            log::warn!(
                "{} more warnings of other kinds in the last {period:?}",
                self.other
            );
            self.other = 0;
        }
    }

    /// Warnings counted this period (for tests).
    #[cfg(test)]
    fn counted(&self) -> u64 {
        self.repeats.values().map(|n| n + 1).sum::<u64>() + self.other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_and_a_new_period_starts_after_a_summary() {
        let mut warnings = Warnings::default();
        for _ in 0..1000 {
            warnings.warn("tunnel refused: redis: the remote sidecar is not connected".into());
        }
        warnings.warn("another".into());
        assert_eq!(warnings.repeats.len(), 2);
        assert_eq!(warnings.counted(), 1001);
        warnings.summarize(Duration::from_secs(10));
        assert_eq!(warnings.counted(), 0);
        for n in 0..(MAX_KINDS + 10) {
            warnings.warn(format!("kind {n}"));
        }
        assert_eq!(warnings.repeats.len(), MAX_KINDS);
        assert_eq!(warnings.other, 10);
    }
}
