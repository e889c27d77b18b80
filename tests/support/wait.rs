//! Waiting in tests: a condition is polled until it holds or a deadline passes, never a bare
//! sleep standing in for an event. One loop for every wait; the callers name what they wait
//! for, so a timeout says what never happened.
//!
//! The benchmarks include this file too (`benches/ship.rs`), so it uses nothing else of the
//! test support.

use std::time::{Duration, Instant};

/// How often a condition is checked unless the caller says otherwise: often enough that a wait
/// ends soon after its event, seldom enough not to load a busy machine.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Calls `check` every `interval` until it returns `Some`, and returns that value; `None` once
/// `deadline` has passed without it. `check` is always called at least once, and once more
/// at the deadline.
pub fn poll_every<T>(
    interval: Duration,
    deadline: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        let now = Instant::now();
        if now >= until {
            return None;
        }
        std::thread::sleep(interval.min(until - now));
    }
}

/// [`poll_every`] at [`POLL_INTERVAL`].
pub fn poll<T>(deadline: Duration, check: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(POLL_INTERVAL, deadline, check)
}

/// Whether `condition` came to hold within `deadline`, for a caller that handles a timeout
/// itself.
pub fn holds_within(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    poll(deadline, || condition().then_some(())).is_some()
}

/// Waits until `condition` holds; panics naming `what` after `deadline`.
pub fn wait_until(what: &str, deadline: Duration, condition: impl FnMut() -> bool) {
    wait_until_showing(what, deadline, condition, String::new);
}

/// As [`wait_until`], with what `show` returns (an agent's log, say) in the panic message.
pub fn wait_until_showing(
    what: &str,
    deadline: Duration,
    mut condition: impl FnMut() -> bool,
    show: impl FnOnce() -> String,
) {
    wait_for_showing(what, deadline, || condition().then_some(()), show);
}

/// Waits until `check` finds something, and returns it; panics naming `what` after
/// `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, check: impl FnMut() -> Option<T>) -> T {
    wait_for_showing(what, deadline, check, String::new)
}

/// As [`wait_for`], with what `show` returns in the panic message.
pub fn wait_for_showing<T>(
    what: &str,
    deadline: Duration,
    check: impl FnMut() -> Option<T>,
    show: impl FnOnce() -> String,
) -> T {
    match poll(deadline, check) {
        Some(found) => found,
        None => panic!(
            "timed out after {deadline:?} waiting for {what}:\n{}",
            show()
        ),
    }
}

/// [`poll_every`] for async tests: the runtime's sleep between checks, so the task yields.
pub async fn poll_async<T, F>(
    interval: Duration,
    deadline: Duration,
    mut check: impl FnMut() -> F,
) -> Option<T>
where
    F: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        let now = Instant::now();
        if now >= until {
            return None;
        }
        tokio::time::sleep(interval.min(until - now)).await;
    }
}
