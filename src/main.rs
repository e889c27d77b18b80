//! The `kinship` binary: parses the command line, calls the library, prints, and maps the
//! outcome to an exit status.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use kinship::app::command::{self, CheckReport};
use kinship::checkpoint::import::Action;
use kinship::cli::{Cli, Command};
use kinship::config::{Config, ConfigError};
use kinship::secrets::mask;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for an invalid config (sysexits' EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// Exit status when `check --online` finds a destination unusable (sysexits' EX_UNAVAILABLE).
const EXIT_UNAVAILABLE: u8 = 69;
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Migrate {
            agent_json,
            checkpoints: Some(db),
            config,
        } => import_checkpoints(&config.unwrap_or(agent_json), &db),
        Command::Migrate { agent_json, .. } => match Config::migrate_agent_json(&agent_json) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(problem) => config_error(&problem),
        },
        Command::Check { config, online } => {
            let loaded = match Config::load(&config) {
                Ok(loaded) => loaded,
                Err(problem) => return config_error(&problem),
            };
            kinship::logging::register_known_secrets(&loaded);
            println!("{}: valid ({} flows)", config.display(), loaded.flows.len());
            for warning in &loaded.migration_warnings {
                eprintln!("kinship: warning: {}", mask(warning));
            }
            if let Some(warning) = command::secrets_readable_warning(&loaded) {
                eprintln!("kinship: warning: {warning}");
            }
            if !online {
                return ExitCode::SUCCESS;
            }
            if !init_logging(&loaded) {
                return ExitCode::from(EXIT_FAILURE);
            }
            check_online(&loaded)
        }
        Command::Run {
            config,
            dry_run,
            import_checkpoints,
        } => {
            let mut loaded = match Config::load(&config) {
                Ok(loaded) => loaded,
                Err(problem) => return config_error(&problem),
            };
            if !init_logging(&loaded) {
                return ExitCode::from(EXIT_FAILURE);
            }
            if let Some(warning) = command::secrets_readable_warning(&loaded) {
                warn!(path = %loaded.source.display(), "{warning}");
            }
            for warning in &loaded.migration_warnings {
                warn!(path = %loaded.source.display(), "Kinesis Agent key not carried over: {warning}");
            }
            if dry_run {
                command::dry_run_all(&mut loaded);
                info!("Dry run: batches are written, not sent; checkpoints advance.");
            }
            run(
                loaded,
                dry_run,
                import_checkpoints,
                CancellationToken::new(),
            )
        }
        Command::Service { action } => service(action),
    }
}

/// `kinship service …`: managing and running the Windows service.
#[cfg(windows)]
fn service(action: kinship::cli::ServiceAction) -> ExitCode {
    use kinship::service::windows::{self, ServiceError};
    match windows::command(action.into(), run_as_service) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ServiceError::Config(problem)) => config_error(&problem),
        Err(failure) => {
            eprintln!("kinship: {failure}");
            ExitCode::from(failure.exit_status())
        }
    }
}

#[cfg(not(windows))]
fn service(_action: kinship::cli::ServiceAction) -> ExitCode {
    eprintln!("kinship: {}", kinship::service::WINDOWS_ONLY);
    ExitCode::from(EXIT_CONFIG)
}

/// The agent as the Windows service runs it: as `kinship run`, stopped by the service's stop
/// request instead of a signal, and logging to a file.
#[cfg(windows)]
fn run_as_service(config: Config, shutdown: CancellationToken) -> u8 {
    if !init_logging(&config) {
        return EXIT_FAILURE;
    }
    info!(config = %config.source.display(), "Running as the Windows service.");
    if run(config, false, None, shutdown) == ExitCode::SUCCESS {
        0
    } else {
        EXIT_FAILURE
    }
}

fn run(
    config: Config,
    dry_run: bool,
    import: Option<PathBuf>,
    shutdown: CancellationToken,
) -> ExitCode {
    match command::run_agent(config, dry_run, import, shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            error!(%failure, "kinship stopped.");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `migrate --checkpoints`: seeds the checkpoints of `config`'s flows (a kinship YAML or an
/// agent.json) from the Kinesis Agent's database `db`, and prints a line per file: what was
/// seeded or kept on standard output, what was skipped and why as a warning.
fn import_checkpoints(config: &Path, db: &Path) -> ExitCode {
    let loaded = match Config::load(config) {
        Ok(loaded) => loaded,
        Err(problem) => return config_error(&problem),
    };
    match command::import_checkpoints(&loaded, db) {
        Ok(imported) => {
            for outcome in &imported.outcomes {
                match outcome.action {
                    Action::Skipped(_) => eprintln!("kinship: warning: {outcome}"),
                    _ => println!("{outcome}"),
                }
            }
            println!(
                "{} of the Kinesis Agent's checkpoints seeded into {}",
                imported.seeded(),
                loaded.state_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("kinship: {failure}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Runs every flow's start-up checks and prints one line per flow.
fn check_online(config: &Config) -> ExitCode {
    match command::check_online(config) {
        Ok(CheckReport {
            lines,
            checked,
            failed,
        }) => {
            for line in lines {
                println!("{line}");
            }
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                eprintln!("kinship: {failed} of {checked} destination check(s) failed");
                ExitCode::from(EXIT_UNAVAILABLE)
            }
        }
        Err(kinship::app::AppError::Runtime(failure)) => {
            eprintln!("kinship: cannot start the async runtime: {failure}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(failure) => {
            eprintln!("kinship: {}", mask(&failure.to_string()));
            ExitCode::from(EXIT_UNAVAILABLE)
        }
    }
}

/// Says what is wrong with the config; nothing was started.
fn config_error(problem: &ConfigError) -> ExitCode {
    match problem {
        ConfigError::Invalid { problems, .. } => {
            eprintln!("{problem}");
            eprintln!(
                "kinship: the config has {} problem(s); nothing was started",
                problems.len()
            );
        }
        ConfigError::Read { .. } => eprintln!("kinship: {problem}"),
    }
    ExitCode::from(EXIT_CONFIG)
}

/// Sets up logging (with every secret masked); false, once it said why, when the log file
/// cannot be opened.
fn init_logging(config: &Config) -> bool {
    match kinship::logging::init(config) {
        Ok(()) => true,
        Err(failure) => {
            eprintln!("kinship: {failure}");
            false
        }
    }
}
