//! One limiter for log lines that could repeat many times a second (a failing call, an
//! unparsable record, a file that cannot be read): the first goes out, then at most one per
//! interval, saying how many were held back. Bottom layer: imports nothing of the crate.

use std::time::Duration;

use tokio::time::Instant;

/// Lets a log line through at most once per `every`, counting the ones held back.
#[derive(Debug)]
pub struct LogLimiter {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl LogLimiter {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(held back since the last line)` when a line may be logged now.
    pub fn allow(&mut self) -> Option<u64> {
        self.allow_counting(1)
    }

    /// As [`LogLimiter::allow`], for a line that stands for `count` events: what is held
    /// back is counted in events.
    pub fn allow_counting(&mut self, count: u64) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.held_back += count;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_limiter_counts_what_it_held_back() {
        let mut limiter = LogLimiter::new(Duration::from_secs(10));
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), None);
        assert_eq!(limiter.allow(), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(limiter.allow(), Some(2));
        assert_eq!(limiter.allow_counting(5), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(limiter.allow_counting(3), Some(5));
    }
}
