mod support;

mod cli;
mod delivery;
mod harness_selftest;
mod rotation;
mod tailing;
mod tailing_model;
