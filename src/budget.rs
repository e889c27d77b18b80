//! The memory budget: one limit, over every flow, on the bytes of records read but not yet
//! delivered. A tailer reserves room before it hands records on and waits while the budget is
//! spent, so when the destination is slow or down the files on disk are the buffer and memory
//! stays flat. The reservation travels with the records (lines → batch → call) and is given
//! back when the records are dropped, after delivery.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a record costs beyond its bytes: its place in a batch, its partition key, the
/// bookkeeping around it.
pub const RECORD_OVERHEAD: usize = 96;

/// The default budget.
pub const DEFAULT_MEMORY_BUDGET: usize = 64 * 1024 * 1024;

#[derive(Debug)]
pub struct MemoryBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl MemoryBudget {
    pub fn new(total: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        })
    }

    /// Waits until `bytes` fit in the budget and reserves them. A reservation larger than the
    /// whole budget takes the whole budget, so one huge block still moves, alone.
    pub async fn reserve(&self, bytes: usize) -> Reservation {
        let wanted = bytes.min(self.total);
        if wanted == 0 {
            return Reservation::none();
        }
        let permits = u32::try_from(wanted).unwrap_or(u32::MAX);
        // The semaphore is never closed, so this only fails if it were.
        let permit = Arc::clone(&self.bytes)
            .acquire_many_owned(permits)
            .await
            .ok();
        Reservation { permit }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.total - self.bytes.available_permits()
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

/// Bytes held in the budget; given back when dropped.
#[derive(Debug, Default)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// A reservation of nothing (records outside any budget, as in unit tests).
    pub fn none() -> Reservation {
        Reservation { permit: None }
    }

    pub fn bytes(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Moves up to `bytes` of this reservation into a new one.
    pub fn take(&mut self, bytes: usize) -> Reservation {
        let Some(permit) = self.permit.as_mut() else {
            return Reservation::none();
        };
        let bytes = bytes.min(permit.num_permits());
        if bytes == permit.num_permits() {
            return Reservation {
                permit: self.permit.take(),
            };
        }
        Reservation {
            permit: permit.split(bytes),
        }
    }

    /// Adds `other` to this reservation.
    pub fn merge(&mut self, other: Reservation) {
        match (self.permit.as_mut(), other.permit) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, theirs) => self.permit = theirs,
            (Some(_), None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reservations_wait_until_bytes_are_given_back() {
        let budget = MemoryBudget::new(1000);
        let first = budget.reserve(600).await;
        assert_eq!(budget.used(), 600);
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.reserve(600).await.bytes() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "600 more do not fit in 1000");
        drop(first);
        assert_eq!(waiting.await.ok(), Some(600));
        assert_eq!(budget.used(), 0, "dropped with the task");
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_larger_than_the_budget_takes_all_of_it() {
        let budget = MemoryBudget::new(100);
        let huge = budget.reserve(5000).await;
        assert_eq!(huge.bytes(), 100);
        assert_eq!(budget.used(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn parts_taken_and_merged_are_given_back_when_the_last_is_dropped() {
        let budget = MemoryBudget::new(1000);
        let mut lines = budget.reserve(300).await;
        let mut batch = Reservation::none();
        batch.merge(lines.take(100));
        batch.merge(lines.take(150));
        assert_eq!((lines.bytes(), batch.bytes()), (50, 250));
        let rest = lines.take(500);
        assert_eq!((rest.bytes(), lines.bytes()), (50, 0));
        drop(rest);
        assert_eq!(budget.used(), 250);
        drop(batch);
        assert_eq!(budget.used(), 0);
    }
}
