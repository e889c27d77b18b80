//! The `kinship` binary: parses the command line, runs the agent, maps failures to exit codes.

use std::process::ExitCode;

use clap::Parser;
use kinship::cli::{Cli, Command};
use kinship::config::{Config, ConfigError};
use kinship::reload::Reloading;
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
        Command::Migrate { agent_json } => match Config::migrate_agent_json(&agent_json) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(problem) => {
                report_config_error(&problem);
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Check { config, online } => {
            let loaded = match Config::load(&config) {
                Ok(loaded) => loaded,
                Err(problem) => {
                    report_config_error(&problem);
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            kinship::logging::register_known_secrets(&loaded);
            println!("{}: valid ({} flows)", config.display(), loaded.flows.len());
            for warning in &loaded.migration_warnings {
                eprintln!("kinship: warning: {}", mask(warning));
            }
            warn_if_secrets_readable(&loaded, |message| eprintln!("kinship: warning: {message}"));
            if online {
                if !init_logging(&loaded) {
                    return ExitCode::from(EXIT_FAILURE);
                }
                check_online(&loaded)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Run { config, dry_run } => {
            let mut loaded = match Config::load(&config) {
                Ok(loaded) => loaded,
                Err(problem) => {
                    report_config_error(&problem);
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            if !init_logging(&loaded) {
                return ExitCode::from(EXIT_FAILURE);
            }
            warn_if_secrets_readable(
                &loaded,
                |message| warn!(path = %loaded.source.display(), "{message}"),
            );
            for warning in &loaded.migration_warnings {
                warn!(path = %loaded.source.display(), "Kinesis Agent key not carried over: {warning}");
            }
            if dry_run {
                all_dry_run(&mut loaded);
                info!("Dry run: batches are written, not sent; checkpoints advance.");
            }
            run(loaded, dry_run, CancellationToken::new())
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
        Err(ServiceError::Config(problem)) => {
            report_config_error(&problem);
            ExitCode::from(EXIT_CONFIG)
        }
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
    if run(config, false, shutdown) == ExitCode::SUCCESS {
        0
    } else {
        EXIT_FAILURE
    }
}

/// Warns when the config file holds a secret key and other users may read it.
fn warn_if_secrets_readable(config: &Config, warn_with: impl Fn(&str)) {
    if !config.holds_secret_keys {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(&config.source) {
            if metadata.permissions().mode() & 0o044 != 0 {
                warn_with("the config file holds a secret access key and other users may read it; make it readable by its owner only (chmod 600), or use a profile, an instance role or assume_role");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = warn_with;
    }
}

/// Runs every flow's start-up checks and prints one line per flow.
fn check_online(config: &Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(failure) => {
            eprintln!("kinship: cannot start the async runtime: {failure}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let outcomes = match runtime.block_on(kinship::app::check_online(config)) {
        Ok(outcomes) => outcomes,
        Err(failure) => {
            eprintln!("kinship: {}", mask(&failure.to_string()));
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    let mut failed = 0;
    for (flow, destination, outcome) in &outcomes {
        match outcome {
            Ok(passed) => {
                let who = passed.identity.as_ref().map_or_else(
                    || "identity not checked".to_owned(),
                    |identity| format!("account {}, {}", identity.account, identity.arn),
                );
                let what = match (&passed.status, &passed.describe_denied) {
                    (Some(status), _) => format!("status {}", status.status),
                    (None, Some(_)) => format!(
                        "warning: not allowed to describe it ({}); sending would still be tried",
                        kinship::sink::check::describe_call(destination.kind)
                    ),
                    (None, None) => "not described".to_owned(),
                };
                println!(
                    "{}",
                    mask(&format!("flow `{flow}`: {destination}: ok ({who}; {what})"))
                );
            }
            Err(failure) => {
                failed += 1;
                println!(
                    "{}",
                    mask(&format!("flow `{flow}`: {destination}: FAILED: {failure}"))
                );
            }
        }
    }
    let dry = config.flows.iter().filter(|flow| flow.dry_run).count();
    if dry > 0 {
        println!("{dry} flow(s) in dry-run mode need no AWS access and were not checked");
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "kinship: {failed} of {} destination check(s) failed",
            outcomes.len()
        );
        ExitCode::from(EXIT_UNAVAILABLE)
    }
}

fn report_config_error(problem: &ConfigError) {
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

/// Threads for blocking work: file reads, stats and opens, and name lookups. Each is short;
/// with thousands of files followed, more threads would only add switching between them.
const BLOCKING_THREADS: usize = 16;

/// `--dry-run`: every flow writes its batches instead of sending them.
/// Nothing is published to CloudWatch either.
fn all_dry_run(config: &mut Config) {
    for flow in &mut config.flows {
        flow.dry_run = true;
    }
    config.cloudwatch = None;
}

fn run(config: Config, dry_run: bool, shutdown: CancellationToken) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(failure) => {
            error!(%failure, "Cannot start the async runtime.");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let reloading = Reloading::new(move |config| {
        kinship::logging::register_known_secrets(config);
        if dry_run {
            all_dry_run(config);
        }
    });
    let outcome = runtime.block_on(async {
        tokio::spawn(watch_signals(shutdown.clone()));
        tokio::spawn(watch_hangups(reloading.trigger.clone()));
        kinship::app::run(config, shutdown, Some(reloading)).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            error!(%failure, "kinship stopped.");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The first SIGTERM or SIGINT starts a clean shutdown; a second one exits at once.
async fn watch_signals(shutdown: CancellationToken) {
    let Some(mut signals) = Signals::new() else {
        return;
    };
    let first = signals.next().await;
    info!(signal = first, "Signal received; shutting down.");
    shutdown.cancel();
    let second = signals.next().await;
    warn!(
        signal = second,
        "Second signal: exiting now; lines not yet acknowledged are read again at the next start."
    );
    std::process::exit(i32::from(EXIT_FAILURE));
}

/// Each SIGHUP asks for the config to be read again (a request already waiting covers it).
#[cfg(unix)]
async fn watch_hangups(reload: tokio::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(failure) => {
            error!(%failure, "Cannot listen for SIGHUP; the config cannot be reloaded.");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        info!(signal = "SIGHUP", "Signal received; reloading the config.");
        let _ = reload.try_send(());
    }
}

/// Windows has no SIGHUP: the config is reloaded with `watch_config` there.
#[cfg(not(unix))]
async fn watch_hangups(_reload: tokio::sync::mpsc::Sender<()>) {}

#[cfg(unix)]
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> Option<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(terminate), Ok(interrupt)) => Some(Self {
                terminate,
                interrupt,
            }),
            (Err(failure), _) | (_, Err(failure)) => {
                error!(%failure, "Cannot listen for signals; stop kinship with SIGKILL.");
                None
            }
        }
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> Option<Self> {
        Some(Self)
    }

    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
