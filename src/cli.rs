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
        /// Send nothing: write every batch as a JSON line to standard output (or the config's
        /// dry_run_output) instead. Checkpoints advance as if the batches were delivered, in
        /// this state_dir; point state_dir elsewhere to keep a real agent's checkpoints.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate a config file and exit: 0 when valid; 64 when not, printing every problem as
    /// FILE:LINE:COLUMN: KEY: MESSAGE.
    ///
    /// With --online, also run every flow's start-up checks against AWS (credentials through
    /// sts:GetCallerIdentity, the stream through a describe call): exit 69 when any fails.
    Check {
        /// The YAML config file.
        #[arg(short, long, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Also check credentials and destinations against AWS.
        #[arg(long)]
        online: bool,
    },
}
