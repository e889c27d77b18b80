mod support;

mod aggregation;
mod aws_emulated;
mod cli;
mod delivery;
mod destinations;
mod fault_server_selftest;
mod faults;
mod harness_selftest;
mod metrics_endpoint;
mod moto_selftest;
mod processing;
mod reload;
mod rotation;
mod service;
mod tailing;
mod tailing_model;
