//! kinship: tails log files and delivers every line to Amazon Kinesis Data Streams, at least
//! once and in order per file.
//!
//! Data flows one way, source → pipeline → sink, over bounded channels; acknowledgements flow
//! back to the checkpoint store. Only `app` knows every component.

pub mod app;
pub mod checkpoint;
pub mod cli;
pub(crate) mod clock;
pub(crate) mod cloudwatch;
pub mod compression;
pub mod config;
pub(crate) mod error_chain;
pub(crate) mod exporter;
pub mod limits;
pub(crate) mod log_limit;
pub(crate) mod logfile;
pub mod logging;
pub mod metrics;
pub mod pattern;
pub(crate) mod pipeline;
pub mod record;
pub(crate) mod reload;
pub mod secrets;
pub mod service;
pub(crate) mod shard_map;
pub mod sink;
pub(crate) mod source;
