//! The whole-agent tests, one binary: each module below is a file of `tests/`.

#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "tests run real processes and servers, and wait for them by the wall clock"
)]

mod support;

mod agent_json;
mod aggregation;
mod architecture;
mod aws_emulated;
mod checkpoint_import;
mod checkpoints;
mod cli;
mod crash;
mod data_path;
mod delivery;
mod destinations;
mod ec2_metadata;
mod event_log;
mod fault_server_selftest;
mod faults;
mod harness_selftest;
mod journald;
mod metrics_endpoint;
mod moto_selftest;
mod ordering;
mod processing;
mod reload;
mod rotation;
mod secrets;
mod service;
mod shipped_files;
mod tailing;
mod tailing_model;
