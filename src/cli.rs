//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

/// Tails log files and delivers every line to Amazon Kinesis Data Streams, at least once and in
/// order per file.
#[derive(Debug, Parser)]
#[command(name = "kinship", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent until SIGTERM or SIGINT (a second signal exits at once).
    ///
    /// Exit status: 0 after a clean shutdown, 64 when the config is invalid, 1 on any other
    /// failure.
    Run {
        /// The YAML config file.
        #[arg(short, long, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Validate a config file and exit: 0 when valid; 64 when not, printing every problem as
    /// FILE:LINE:COLUMN: KEY: MESSAGE.
    Check {
        /// The YAML config file.
        #[arg(short, long, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
}
