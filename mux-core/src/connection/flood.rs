//! Budgets against floods of cheap frames (spec §13.2): one token bucket per
//! kind of abuse, refilled with the time the caller passes in.

use std::time::Instant;

/// A burst and a refill rate for one kind of event (spec §13.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Events allowed at once, from a full bucket.
    pub burst: u32,
    /// Events per second the bucket regains.
    pub per_second: u32,
}

impl Budget {
    /// A budget of `burst` events, refilled at `per_second`.
    pub const fn new(burst: u32, per_second: u32) -> Self {
        Self { burst, per_second }
    }
}

/// The per-connection flood budgets, with the spec's recommended defaults
/// (spec §13.2, which gives their sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodLimits {
    /// Streams the peer opened and then reset before we finished them (rapid reset).
    pub peer_resets: Budget,
    /// Streams we refused: over the concurrency limit, metadata too large, after GOAWAY.
    pub refused_streams: Budget,
    /// PING frames without ACK.
    pub pings: Budget,
    /// SETTINGS frames without ACK.
    pub settings: Budget,
    /// DATA frames with no payload and no flag, and empty unknown frames.
    pub empty_frames: Budget,
    /// RESETs we had to send because of the peer's misbehaviour.
    pub stream_errors: Budget,
}

impl Default for FloodLimits {
    fn default() -> Self {
        Self {
            peer_resets: Budget::new(200, 100),
            refused_streams: Budget::new(200, 100),
            pings: Budget::new(50, 10),
            settings: Budget::new(20, 5),
            empty_frames: Budget::new(100, 100),
            stream_errors: Budget::new(100, 50),
        }
    }
}

/// Tokens are kept in millionths so that refill needs no floating point.
const SCALE: u64 = 1_000_000;

/// A token bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    budget: Budget,
    micro_tokens: u64,
    last_refill: Instant,
}

impl TokenBucket {
    pub(crate) fn new(budget: Budget, now: Instant) -> Self {
        Self {
            budget,
            micro_tokens: u64::from(budget.burst) * SCALE,
            last_refill: now,
        }
    }

    /// Takes one token; `false` means the budget is exhausted.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last_refill);
        let refill = (elapsed.as_micros() as u64).saturating_mul(u64::from(self.budget.per_second));
        let cap = u64::from(self.budget.burst) * SCALE;
        self.micro_tokens = self.micro_tokens.saturating_add(refill).min(cap);
        self.last_refill = now;
        if self.micro_tokens >= SCALE {
            self.micro_tokens -= SCALE;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(Budget::new(3, 10), start);
        assert!((0..3).all(|_| bucket.take(start)));
        assert!(!bucket.take(start));
        assert!(!bucket.take(start + Duration::from_millis(99)));
        assert!(bucket.take(start + Duration::from_millis(199)));
    }

    #[test]
    fn refill_never_exceeds_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(Budget::new(2, 1000), start);
        let later = start + Duration::from_secs(3600);
        assert!(bucket.take(later) && bucket.take(later));
        assert!(!bucket.take(later));
    }
}
