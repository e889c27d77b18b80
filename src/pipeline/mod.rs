//! The pipeline between source and sink: processors, partition keys and batching by the
//! destination's limits.

pub mod batcher;
pub mod combine;
pub mod kpl;
pub mod pack;
pub mod partition_key;
pub mod processors;

pub use batcher::{BatchBuilder, BatchLimits};
pub use partition_key::KeyChooser;
