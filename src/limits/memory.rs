//! The memory budget: one limit, over every flow, on the bytes of records read but not yet
//! delivered, and of the requests that carry them. A tailer reserves room before it hands
//! records on and waits while the budget is spent, so when the destination is slow or down the
//! files on disk are the buffer and memory stays flat. The reservation travels with the records
//! (lines → batch → call) and is given back when the records are dropped, after delivery.
//!
//! A call in progress holds its records twice: as read, kept for a retry, and as the request
//! the client encodes from them (each record copied, then base64 in a JSON body, about 2.4
//! times its bytes). A share of the budget is kept for those requests, apart from the records'
//! share so that a call never waits for records that only its own delivery would free.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a record costs beyond its bytes: its place in a batch, its partition key, the
/// bookkeeping around it.
pub const RECORD_OVERHEAD: usize = 96;

/// The default budget: what 1,000,000 lines/s of 200 bytes need on loopback, with room over.
pub const DEFAULT_MEMORY_BUDGET: usize = 4 * 1024 * 1024;

/// One part in this many of the budget is kept for the requests of calls in progress.
const REQUESTS_SHARE: usize = 4;

#[derive(Debug)]
pub struct MemoryBudget {
    /// The records' share.
    records: Pool,
    /// The share of the requests being encoded and sent.
    requests: Pool,
    total: usize,
}

/// One share of the budget.
#[derive(Debug)]
struct Pool {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl Pool {
    fn new(total: usize) -> Pool {
        // A semaphore counts at most `usize::MAX >> 3` permits.
        let total = total.min(Semaphore::MAX_PERMITS);
        Pool {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// A reservation larger than the whole pool takes the whole pool, so that one huge block
    /// still moves, alone.
    async fn reserve(&self, bytes: usize) -> Reservation {
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

    fn used(&self) -> usize {
        self.total - self.bytes.available_permits()
    }
}

impl MemoryBudget {
    pub fn new(total: usize) -> Arc<MemoryBudget> {
        let requests = total / REQUESTS_SHARE;
        Arc::new(MemoryBudget {
            records: Pool::new(total - requests),
            requests: Pool::new(requests),
            total,
        })
    }

    /// Waits until `bytes` of records fit in the records' share and reserves them. A
    /// reservation larger than the share takes all of it.
    pub async fn reserve(&self, bytes: usize) -> Reservation {
        self.records.reserve(bytes).await
    }

    /// Waits until a request of `bytes` fits in the requests' share and reserves it, for as
    /// long as the call is under way. Only calls hold this share, and a call holds nothing
    /// else of the budget while it waits for it, so calls never wait on each other in a cycle.
    pub async fn reserve_request(&self, bytes: usize) -> Reservation {
        self.requests.reserve(bytes).await
    }

    /// Bytes reserved now, records and requests.
    pub fn used(&self) -> usize {
        self.records.used() + self.requests.used()
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// The most bytes of records held at once.
    pub fn records_total(&self) -> usize {
        self.records.total
    }

    /// The most bytes of requests held at once (one larger request may take all of them).
    pub fn requests_total(&self) -> usize {
        self.requests.total
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
        assert_eq!(
            (budget.records_total(), budget.requests_total()),
            (750, 250)
        );
        let first = budget.reserve(600).await;
        assert_eq!(budget.used(), 600);
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.reserve(600).await.bytes() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "600 more do not fit in 750");
        drop(first);
        assert_eq!(waiting.await.ok(), Some(600));
        assert_eq!(budget.used(), 0, "dropped with the task");
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_larger_than_the_budget_takes_all_of_it() {
        let budget = MemoryBudget::new(100);
        let huge = budget.reserve(5000).await;
        assert_eq!(huge.bytes(), 75);
        assert_eq!(budget.used(), 75);
        let request = budget.reserve_request(5000).await;
        assert_eq!(request.bytes(), 25);
        assert_eq!(budget.used(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_have_a_share_of_their_own_that_records_cannot_take() {
        let budget = MemoryBudget::new(1000);
        let records = budget.reserve(750).await;
        // Every record's byte is held, yet a call can still encode its request.
        let request = budget.reserve_request(200).await;
        assert_eq!(budget.used(), 950);
        let second = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.reserve_request(200).await.bytes() }
        });
        tokio::task::yield_now().await;
        assert!(
            !second.is_finished(),
            "two requests of 200 do not fit in 250"
        );
        drop(request);
        assert_eq!(second.await.ok(), Some(200));
        drop(records);
        assert_eq!(budget.used(), 0);
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
