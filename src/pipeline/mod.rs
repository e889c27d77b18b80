//! The pipeline between source and sink: partition keys and batching by the destination's limits.

pub mod batcher;
pub mod combine;
pub mod kpl;
pub mod pack;
pub mod partition_key;

pub use batcher::{BatchBuilder, BatchLimits};
pub use partition_key::KeyChooser;
