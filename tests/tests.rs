mod support;

mod cli;
mod delivery;
mod fault_server_selftest;
mod faults;
mod harness_selftest;
mod rotation;
mod tailing;
mod tailing_model;
