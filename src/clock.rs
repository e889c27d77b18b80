//! Wall-clock time, read only where a timestamp is written: a checkpoint's `seen` time, a dead
//! letter's time, the metadata added to records. Everything that measures an interval uses
//! tokio's clock instead, which tests can pause and advance. Bottom layer: imports nothing of
//! the crate.

use std::time::SystemTime;

/// Now, by the wall clock.
#[allow(
    clippy::disallowed_methods,
    reason = "the one place that reads the wall clock"
)]
pub fn wall_now() -> SystemTime {
    SystemTime::now()
}

/// Whole seconds since the Unix epoch (0 if the clock is set before it).
pub fn unix_seconds() -> u64 {
    wall_now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
