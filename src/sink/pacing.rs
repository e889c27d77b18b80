//! Throttle-aware pacing: when a stream throttles, the flow limits its own record rate instead
//! of sending more than the stream takes and retrying the rest.
//!
//! Throttling of a few records (under 5 % of those answered lately) is simply retried. Beyond
//! that, the first limit is the rate the stream was accepting when throttling began. While
//! throttling goes on the limit is cut to 70 % (at most once per cooldown); while it does not,
//! the limit grows by 10 % per second, so it settles just under what the stream takes. Each
//! cut is checked: if the share of records throttled in the next window did not fall, the
//! refusals do not depend on the rate (a failing partition, a noisy neighbour), slowing down
//! cannot help, and the limit is lifted for a while instead of cutting the flow to nothing.
//! After a quiet minute the limit is lifted.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Each cut keeps this share of the rate.
const CUT_TO: f64 = 0.7;
/// At most one cut per this long: the answers of calls already in flight tell of the same
/// overload and must not cut again.
const CUT_COOLDOWN: Duration = Duration::from_secs(2);
/// The limit grows by this share per second.
const RAISE_PER_SECOND: f64 = 0.1;
/// The limit never drops below this many records per second.
const LOWEST_RATE: f64 = 10.0;
/// The first limit is at least this, for a stream that refused whole calls (nothing accepted).
const LOWEST_START: f64 = 100.0;
/// A cut helped if the share of records throttled after it fell below this share of before.
const CUT_HELPED_BELOW: f64 = 0.7;
/// Throttling of fewer than this share of the records answered lately (this window and the
/// last) does not slow the flow: retrying them costs less.
const SHARE_WORTH_SLOWING_FOR: f64 = 0.05;
/// Cuts made when fewer records than this share were throttled are not judged: the share is
/// too small to tell a change from noise.
const SHARE_WORTH_JUDGING: f64 = 0.1;
/// How long the limit stays off after a cut did not help.
const RATE_INDEPENDENT_PAUSE: Duration = Duration::from_secs(30);
/// After this long without throttling the limit is lifted.
const QUIET_BEFORE_LIFTING: Duration = Duration::from_secs(60);
/// Callers waiting for the limit look again at least this often.
const LOOK_AGAIN_EVERY: Duration = Duration::from_millis(100);
/// Attempts are counted over windows of this length.
const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: Option<Limit>,
    current: Window,
    last: Window,
    last_throttle: Option<Instant>,
    /// Throttling was found not to depend on the rate: no limit until then.
    paused_until: Option<Instant>,
}

/// Records counted from `start`; `end` is set once the window is over.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
    attempted: f64,
    accepted: f64,
    throttled: f64,
    answers: u32,
}

#[derive(Debug, Clone, Copy)]
struct Limit {
    /// Records per second.
    rate: f64,
    /// Records that may go at once; negative while callers wait their turn.
    tokens: f64,
    refilled: Instant,
    last_cut: Instant,
    /// The share of records throttled before the last cut, until a window after it shows
    /// whether the cut helped.
    share_before_cut: Option<f64>,
}

/// What one answer said.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answer {
    pub accepted: usize,
    pub throttled: usize,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new()
    }
}

impl Window {
    fn starting(at: Instant) -> Window {
        Window {
            start: at,
            end: at,
            attempted: 0.0,
            accepted: 0.0,
            throttled: 0.0,
            answers: 0,
        }
    }

    fn throttled_share(&self) -> f64 {
        let answered = self.accepted + self.throttled;
        if answered > 0.0 {
            self.throttled / answered
        } else {
            0.0
        }
    }
}

impl Pacer {
    pub fn new() -> Pacer {
        let now = Instant::now();
        Pacer {
            state: Mutex::new(State {
                limit: None,
                current: Window::starting(now),
                last: Window::starting(now),
                last_throttle: None,
                paused_until: None,
            }),
        }
    }

    /// Waits until `records` may be sent, and counts them as attempted. Waiters look again
    /// every little while rather than queueing for a fixed time, so a limit that is raised or
    /// lifted frees them at once.
    pub async fn wait(&self, records: usize) {
        while let Err(wait) = self.try_admit(records) {
            tokio::time::sleep(wait.min(LOOK_AGAIN_EVERY)).await;
        }
    }

    /// Counts `records` as attempted if they may go now; otherwise says how long until they
    /// might. A call larger than the bucket goes once the bucket is full.
    pub fn try_admit(&self, records: usize) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.lock();
        state.roll_window(now);
        if let Some(limit) = state.limit.as_mut() {
            limit.refill(now);
            let needed = (records as f64).min(limit.rate);
            if limit.tokens < needed {
                let wait = Duration::from_secs_f64((needed - limit.tokens) / limit.rate);
                // Never zero: a waiter must let time pass before it looks again.
                return Err(wait.max(Duration::from_millis(1)));
            }
            limit.tokens -= records as f64;
        }
        state.current.attempted += records as f64;
        Ok(())
    }

    /// The records-per-second limit in force, if any.
    pub fn limit(&self) -> Option<f64> {
        self.lock().limit.map(|limit| limit.rate)
    }

    /// Learns from an answer: throttled records cut the limit.
    pub fn answered(&self, answer: Answer) {
        let now = Instant::now();
        let mut state = self.lock();
        state.roll_window(now);
        state.current.accepted += answer.accepted as f64;
        state.current.throttled += answer.throttled as f64;
        state.current.answers += 1;
        if answer.throttled == 0 {
            let quiet = state
                .last_throttle
                .is_none_or(|last| now.duration_since(last) >= QUIET_BEFORE_LIFTING);
            if quiet {
                state.limit = None;
            }
            return;
        }
        state.last_throttle = Some(now);
        if state.paused_until.is_some_and(|until| now < until) {
            return;
        }
        state.paused_until = None;
        let share = state.recent_throttled_share();
        if share < SHARE_WORTH_SLOWING_FOR {
            // A few refusals cost a few retries; slowing the whole flow would cost more.
            return;
        }
        match state.limit.as_mut() {
            None => {
                let accepted = state.recent_accepted_rate(now);
                state.limit = Some(Limit {
                    rate: accepted.max(LOWEST_START),
                    tokens: 0.0,
                    refilled: now,
                    last_cut: now,
                    share_before_cut: Some(share),
                });
            }
            Some(limit) => {
                limit.refill(now);
                if limit.share_before_cut.is_none()
                    && now.duration_since(limit.last_cut) >= CUT_COOLDOWN
                {
                    limit.rate = (limit.rate * CUT_TO).max(LOWEST_RATE);
                    limit.last_cut = now;
                    limit.share_before_cut = Some(share);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn roll_window(&mut self, now: Instant) {
        // A window needs a few answers to tell anything, however slow the calls.
        if now.duration_since(self.current.start) < WINDOW || self.current.answers < 3 {
            return;
        }
        self.current.end = now;
        self.last = std::mem::replace(&mut self.current, Window::starting(now));
        self.judge_last_cut(now);
    }

    /// Once a whole window after a cut has passed: if the share throttled did not fall, the
    /// refusals do not depend on the rate, and the limit is lifted for a while.
    fn judge_last_cut(&mut self, now: Instant) {
        let Some(limit) = self.limit.as_mut() else {
            return;
        };
        let Some(before) = limit.share_before_cut else {
            return;
        };
        let answered = self.last.accepted + self.last.throttled;
        if self.last.start <= limit.last_cut || answered == 0.0 {
            return;
        }
        let after = self.last.throttled_share();
        limit.share_before_cut = None;
        if before >= SHARE_WORTH_JUDGING && after > before * CUT_HELPED_BELOW {
            self.limit = None;
            self.paused_until = Some(now + RATE_INDEPENDENT_PAUSE);
        }
    }

    /// The share of answered records throttled in the last window and this one.
    fn recent_throttled_share(&self) -> f64 {
        let accepted = self.last.accepted + self.current.accepted;
        let throttled = self.last.throttled + self.current.throttled;
        if accepted + throttled > 0.0 {
            throttled / (accepted + throttled)
        } else {
            0.0
        }
    }

    /// Records per second accepted over the last window and this one (counted over at least
    /// a window, so a burst at the start is not taken for a rate).
    fn recent_accepted_rate(&self, now: Instant) -> f64 {
        let seconds = now
            .duration_since(self.last.start)
            .max(WINDOW)
            .as_secs_f64();
        (self.last.accepted + self.current.accepted) / seconds
    }
}

impl Limit {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        if self.share_before_cut.is_none() {
            // Not while a cut is being judged: the window after it must show the cut alone.
            self.rate *= 1.0 + RAISE_PER_SECOND * elapsed.min(1.0);
        }
        // A second's worth may go at once, as a shard allows short bursts.
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard that takes `allowed` records per second (with a second's burst) and throttles
    /// the rest, as Kinesis does.
    struct Shard {
        allowed: f64,
        tokens: f64,
        at: Instant,
    }

    impl Shard {
        fn put(&mut self, records: usize) -> usize {
            let now = Instant::now();
            self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.allowed)
                .min(self.allowed);
            self.at = now;
            let accepted = (records as f64).min(self.tokens.max(0.0)).floor();
            self.tokens -= accepted;
            accepted as usize
        }
    }

    /// Sends `total` records in calls of 500 through `pacer` to a shard allowing `allowed`
    /// per second, retrying refused records after `retry_delay`; returns (seconds, refused).
    async fn ship(
        pacer: &Pacer,
        total: usize,
        allowed: f64,
        retry_delay: Duration,
    ) -> (f64, usize) {
        let started = Instant::now();
        let mut shard = Shard {
            allowed,
            tokens: allowed,
            at: started,
        };
        let mut left = total;
        let mut refused = 0;
        let mut pending = 0;
        while left > 0 || pending > 0 {
            let call = if pending > 0 {
                pending
            } else {
                let call = left.min(500);
                left -= call;
                call
            };
            pacer.wait(call).await;
            tokio::time::sleep(Duration::from_millis(5)).await; // the call's round trip
            let accepted = shard.put(call);
            let throttled = call - accepted;
            pacer.answered(Answer {
                accepted,
                throttled,
            });
            refused += throttled;
            pending = throttled;
            if throttled > 0 {
                tokio::time::sleep(retry_delay).await;
            }
        }
        (started.elapsed().as_secs_f64(), refused)
    }

    #[tokio::test(start_paused = true)]
    async fn under_sustained_throttling_the_rate_settles_near_what_the_shard_allows() {
        let pacer = Pacer::new();
        let allowed = 1000.0;
        let total = 120_000;
        let (seconds, refused) = ship(&pacer, total, allowed, Duration::from_millis(50)).await;
        let rate = total as f64 / seconds;
        assert!(
            rate > allowed * 0.7 && rate <= allowed * 1.05,
            "delivered {rate:.0} records/s against {allowed} allowed"
        );
        // Without pacing, every call of 500 after the first second's burst is mostly refused
        // and retried every 50 ms: about ten refusals per record delivered.
        let retry_ratio = refused as f64 / total as f64;
        assert!(retry_ratio < 0.25, "{refused} refusals for {total} records");
    }

    #[tokio::test(start_paused = true)]
    async fn without_pacing_the_same_shard_is_hammered() {
        // The yardstick for the test above: a pacer that is never told of throttling.
        let pacer = Pacer::new();
        let mut shard = Shard {
            allowed: 1000.0,
            tokens: 1000.0,
            at: Instant::now(),
        };
        let mut refused = 0;
        let mut delivered = 0;
        while delivered < 20_000 {
            tokio::time::sleep(Duration::from_millis(55)).await;
            let accepted = shard.put(500);
            delivered += accepted;
            refused += 500 - accepted;
        }
        assert!(pacer.limit().is_none());
        assert!(
            refused > delivered,
            "{refused} refused, {delivered} delivered"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_that_do_not_depend_on_the_rate_do_not_slow_the_flow_for_long() {
        // A cut that does not lower the share refused shows slowing down does not help: the
        // limit is lifted instead of cutting the flow down to the floor.
        let pacer = Pacer::new();
        for _ in 0..100 {
            pacer.wait(500).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            pacer.answered(Answer {
                accepted: 500,
                throttled: 0,
            });
        }
        let mut sent = 0.0;
        let started = Instant::now();
        for call in 0..4000u32 {
            pacer.wait(500).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            sent += 500.0;
            let throttled = if call % 3 == 0 { 150 } else { 0 };
            pacer.answered(Answer {
                accepted: 500 - throttled,
                throttled,
            });
        }
        let rate = sent / started.elapsed().as_secs_f64();
        assert!(
            rate > 40_000.0,
            "{rate:.0} records/s from an unthrottled 50,000"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_few_refusals_do_not_slow_the_flow() {
        let pacer = Pacer::new();
        for call in 0..2000u32 {
            pacer.wait(500).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
            let throttled = usize::from(call % 10 == 0) * 5;
            pacer.answered(Answer {
                accepted: 500 - throttled,
                throttled,
            });
            assert!(pacer.limit().is_none(), "limited at call {call}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_is_lifted_after_a_quiet_minute() {
        let pacer = Pacer::new();
        pacer.wait(500).await;
        pacer.answered(Answer {
            accepted: 400,
            throttled: 100,
        });
        assert!(pacer.limit().is_some());
        tokio::time::advance(Duration::from_secs(30)).await;
        pacer.answered(Answer {
            accepted: 500,
            throttled: 0,
        });
        assert!(pacer.limit().is_some(), "not yet quiet for a minute");
        tokio::time::advance(Duration::from_secs(31)).await;
        pacer.answered(Answer {
            accepted: 500,
            throttled: 0,
        });
        assert!(pacer.limit().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_never_falls_below_the_floor() {
        let pacer = Pacer::new();
        pacer.answered(Answer {
            accepted: 0,
            throttled: 10,
        });
        for _ in 0..20 {
            if let Some(limit) = pacer.lock().limit.as_mut() {
                limit.share_before_cut = None; // every cut judged as helping
            }
            tokio::time::advance(CUT_COOLDOWN).await;
            pacer.answered(Answer {
                accepted: 0,
                throttled: 10,
            });
        }
        let limit = pacer.limit();
        assert!(
            limit.is_some_and(|rate| (LOWEST_RATE..LOWEST_RATE * 1.5).contains(&rate)),
            "{limit:?}"
        );
    }
}
