//! The agent-wide budget of open files and read buffers, shared by every flow's source.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How many files may be read into a buffer at once, over all flows. A file waiting for its
/// turn holds no buffer, so thousands of busy files cost a few read buffers, not thousands.
const READS_AT_ONCE: usize = 8;

/// The agent-wide budget of open files and of read buffers, shared by every flow.
#[derive(Debug)]
pub struct OpenFiles {
    permits: Arc<Semaphore>,
    max_open_files: usize,
    /// Turns to read into a buffer and hand the records on; first come, first served.
    reading: Semaphore,
    /// Files found but waiting for a descriptor, over all flows.
    pub waiting: AtomicUsize,
    /// Woken whenever a descriptor is given back.
    pub freed: Notify,
}

impl OpenFiles {
    pub fn new(max_open_files: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max_open_files)),
            max_open_files,
            reading: Semaphore::new(READS_AT_ONCE),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    pub fn try_take(self: &Arc<Self>) -> Option<FilePermit> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        Some(FilePermit {
            _permit: permit,
            open_files: Arc::clone(self),
        })
    }

    /// Waits for a turn to read; `None` only if the budget was closed, which it never is.
    pub async fn read_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.reading.acquire().await.ok()
    }

    /// How many files are open now, over all flows.
    pub fn open_now(&self) -> usize {
        self.max_open_files
            .saturating_sub(self.permits.available_permits())
    }

    pub fn others_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }
}

/// One open file's share of the budget; giving it back wakes the flows waiting for one.
pub struct FilePermit {
    _permit: OwnedSemaphorePermit,
    open_files: Arc<OpenFiles>,
}

impl Drop for FilePermit {
    fn drop(&mut self) {
        self.open_files.freed.notify_waiters();
    }
}
