//! Catch-up after a rotation while the agent was stopped: the file that was renamed away is
//! read to its end before the flow opens new files, so its old lines go first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// Held by the tailer of a file that was rotated while the agent was stopped, until it has
/// read that file to its end: new files of the flow wait for it, so the old lines go first.
pub(super) struct CatchUp {
    state: Arc<CatchUpState>,
}

/// One flow's files still catching up.
#[derive(Default)]
pub(super) struct CatchUpState {
    remaining: AtomicUsize,
    done: Notify,
}

impl CatchUpState {
    /// Whether a file rotated while the agent was stopped is still being read to its end.
    pub(super) fn is_catching_up(&self) -> bool {
        self.remaining.load(Ordering::SeqCst) > 0
    }

    /// Completes once the last file catching up has been read to its end.
    pub(super) fn caught_up(&self) -> Notified<'_> {
        self.done.notified()
    }
}

impl CatchUp {
    pub(super) fn new(state: &Arc<CatchUpState>) -> Self {
        state.remaining.fetch_add(1, Ordering::SeqCst);
        Self {
            state: Arc::clone(state),
        }
    }
}

impl Drop for CatchUp {
    fn drop(&mut self) {
        if self.state.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.state.done.notify_waiters();
        }
    }
}
