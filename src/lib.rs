//! kinship: tails log files and delivers every line to Amazon Kinesis Data Streams, at least
//! once and in order per file.
//!
//! Data flows one way, source → pipeline → sink, over bounded channels; acknowledgements flow
//! back to the checkpoint store. Only `app` knows every component.

pub mod app;
pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod cloudwatch;
pub mod compression;
pub mod config;
pub mod error_chain;
pub mod exporter;
pub mod limits;
pub mod log_limit;
pub mod logfile;
pub mod logging;
pub mod metrics;
pub mod pattern;
pub mod pipeline;
pub mod record;
pub mod reload;
pub mod secrets;
pub mod service;
pub mod shard_map;
pub mod sink;
pub mod source;
