//! Shared helpers for the integration tests.
//!
//! Not every test uses every helper, so unused-item warnings are silenced for the whole module.
#![allow(dead_code)]

pub mod agent;
pub mod config;
pub mod emulator;
pub mod fault_kinesis;
pub mod files;
pub mod http;
pub mod imds;
pub mod inproc;
pub mod journal;
pub mod kinesalite;
pub mod kinesis_server;
pub mod lines;
pub mod moto;
pub mod stream;
pub mod wait;
