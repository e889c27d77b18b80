//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::default_paths;
use crate::service::ServiceRequest;

/// What `kinship --version` prints after the name: the version, the git commit the binary was
/// built from (`unknown` outside a git checkout) and the target it was built for, so a report
/// from a host says exactly which build runs there.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KINSHIP_GIT_COMMIT"),
    ", ",
    env!("KINSHIP_TARGET"),
    ")"
);

/// Tails log files and delivers every line to Amazon Kinesis Data Streams, at least once and in
/// order per file.
#[derive(Debug, Parser)]
#[command(name = "kinship", version = VERSION, about, long_about = None)]
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
        #[arg(short, long, value_name = "PATH", default_value_os_t = default_paths().config)]
        config: PathBuf,
        /// Send nothing: write every batch as a JSON line to standard output (or the config's
        /// dry_run_output) instead. Checkpoints advance as if the batches were delivered, in
        /// this state_dir; point state_dir elsewhere to keep a real agent's checkpoints.
        #[arg(long)]
        dry_run: bool,
        /// Before any file is opened, give each file kinship has no checkpoint for the
        /// checkpoint the Kinesis Agent saved for it in this database (its checkpointFile, by
        /// default /var/run/aws-kinesis-agent/checkpoints), if the file is still the one it
        /// recorded. Files kinship has a checkpoint for keep kinship's.
        #[arg(long, value_name = "AGENT_DB")]
        import_checkpoints: Option<PathBuf>,
    },
    /// Validate a config file and exit: 0 when valid; 64 when not, printing every problem as
    /// FILE:LINE:COLUMN: KEY: MESSAGE.
    ///
    /// With --online, also run every flow's start-up checks against AWS (credentials through
    /// sts:GetCallerIdentity, the stream through a describe call): exit 69 when any fails.
    Check {
        /// The YAML config file, or a Kinesis Agent agent.json.
        #[arg(short, long, value_name = "PATH", default_value_os_t = default_paths().config)]
        config: PathBuf,
        /// Also check credentials and destinations against AWS.
        #[arg(long)]
        online: bool,
    },
    /// Print the YAML config equivalent to a Kinesis Agent agent.json (and the flows of agent.d/
    /// beside it), with a comment wherever kinship's meaning differs and the keys it does
    /// without listed first. `kinship run --config agent.json` reads it the same way.
    ///
    /// With --checkpoints, print no YAML: seed kinship's checkpoints from the Kinesis Agent's
    /// checkpoint database instead, for the flows and state_dir of the agent.json as
    /// translated (or of --config), and print what became of each file. Run it with both
    /// agents stopped, before kinship first starts.
    ///
    /// Exit status: 0 when printed (or seeded); 64 when the agent.json has a key kinship cannot
    /// honour (each printed as FILE:LINE: KEY: MESSAGE); 1 when the checkpoints cannot be read
    /// or written.
    Migrate {
        /// The Kinesis Agent's config file.
        #[arg(
            value_name = "AGENT_JSON",
            default_value = "/etc/aws-kinesis/agent.json"
        )]
        agent_json: PathBuf,
        /// The Kinesis Agent's checkpoint database (its checkpointFile, by default
        /// /var/run/aws-kinesis-agent/checkpoints) to seed kinship's checkpoints from.
        #[arg(long, value_name = "AGENT_DB")]
        checkpoints: Option<PathBuf>,
        /// With --checkpoints: the kinship YAML config whose flows and state_dir receive the
        /// checkpoints, instead of the agent.json's translation.
        #[arg(short, long, value_name = "PATH", requires = "checkpoints")]
        config: Option<PathBuf>,
    },
    /// Manage the Windows service (Windows only): install, uninstall, start, stop.
    ///
    /// Exit status: 0 on success, 64 when the config is invalid or this is not Windows, 1 on any
    /// other failure. Hidden elsewhere; on Linux, use the systemd unit in packaging/systemd.
    #[command(hide = cfg!(not(windows)))]
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Register kinship with the Service Control Manager: started at boot, restarted on failure.
    /// The config is checked first.
    Install {
        /// The YAML config file the service runs with.
        #[arg(short, long, value_name = "PATH", default_value_os_t = default_paths().config)]
        config: PathBuf,
        /// The account the service runs as: the virtual account `NT SERVICE\kinship` (grant it
        /// read access to the logs it tails), or LocalSystem, LocalService.
        #[arg(long, value_name = "NAME", default_value = DEFAULT_SERVICE_ACCOUNT)]
        account: String,
    },
    /// Stop the service if it runs, and remove it.
    Uninstall,
    /// Start the service and wait until it runs.
    Start,
    /// Stop the service and wait until it has sent what it read.
    Stop,
    /// Run as the service: the command line the Service Control Manager starts.
    #[command(hide = true)]
    Run {
        #[arg(short, long, value_name = "PATH", default_value_os_t = default_paths().config)]
        config: PathBuf,
    },
}

/// The account `service install` registers the service with.
impl From<ServiceAction> for ServiceRequest {
    fn from(action: ServiceAction) -> Self {
        match action {
            ServiceAction::Install { config, account } => {
                ServiceRequest::Install { config, account }
            }
            ServiceAction::Uninstall => ServiceRequest::Uninstall,
            ServiceAction::Start => ServiceRequest::Start,
            ServiceAction::Stop => ServiceRequest::Stop,
            ServiceAction::Run { config } => ServiceRequest::Run { config },
        }
    }
}

pub const DEFAULT_SERVICE_ACCOUNT: &str = r"NT SERVICE\kinship";
