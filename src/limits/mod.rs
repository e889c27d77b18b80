//! The limits every component shares: the memory budget of records in flight and the budget
//! of open files. Bottom layer: imports nothing of the crate.

mod memory;
mod open_files;

pub use memory::{MemoryBudget, Reservation, DEFAULT_MEMORY_BUDGET, RECORD_OVERHEAD};
pub use open_files::{FilePermit, OpenFiles};
