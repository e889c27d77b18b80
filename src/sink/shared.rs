//! What the calls of one flow share: the client, the retry and give-up settings, the metrics,
//! the pacer, and the rate limits of the sink's log lines.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{error, warn};

use super::dead_letter::DeadLetters;
use super::pacing::Pacer;
use super::{Billing, LogLimiter, PutError, RetryPolicy};
use crate::limits::MemoryBudget;
use crate::metrics::FlowMetrics;

/// State shared by the calls of one flow.
pub(super) struct Shared<P> {
    pub(super) flow: Arc<str>,
    pub(super) stream: String,
    pub(super) client: Arc<P>,
    pub(super) retry: RetryPolicy,
    pub(super) give_up: Option<(Duration, Arc<DeadLetters>)>,
    pub(super) metrics: Arc<FlowMetrics>,
    pub(super) billing: Billing,
    pub(super) limiters: Mutex<HashMap<&'static str, LogLimiter>>,
    pub(super) failing: AtomicBool,
    pub(super) pacer: Pacer,
    /// Records throttled since the last throttling line, and when that line was logged.
    pub(super) throttled: Mutex<(Option<tokio::time::Instant>, u64)>,
    pub(super) budget: Arc<MemoryBudget>,
}

impl<P> Shared<P> {
    /// `Some(held back)` if a line of `class` may be logged now.
    pub(super) fn may_log(&self, class: &'static str, every: Duration) -> Option<u64> {
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        limiters
            .entry(class)
            .or_insert_with(|| LogLimiter::new(every))
            .allow()
    }
}

/// Operator errors are repeated once a minute; transient trouble every ten seconds.
pub(super) const OPERATOR_LOG_EVERY: Duration = Duration::from_secs(60);
pub(super) const TRANSIENT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Logs a failed call, at most once a minute (an operator error, as ERROR) or every ten seconds
/// per kind of failure.
pub(super) fn report_call_failure<P>(shared: &Shared<P>, failure: &PutError, what: &'static str) {
    let every = if failure.needs_operator() {
        OPERATOR_LOG_EVERY
    } else {
        TRANSIENT_LOG_EVERY
    };
    let Some(held_back) = shared.may_log(failure.log_class(), every) else {
        return;
    };
    if failure.needs_operator() {
        error!(flow = %shared.flow, destination = %shared.stream, cause = %failure, repeats = held_back, "{what}");
    } else {
        warn!(flow = %shared.flow, destination = %shared.stream, cause = %failure, repeats = held_back, "{what}");
    }
}
