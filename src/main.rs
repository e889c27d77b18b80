//! The `kinship` binary: parses the command line, runs the agent, maps failures to exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use kinship::cli::{Cli, Command};
use kinship::config::{Config, ConfigError};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for an invalid config (sysexits' EX_USAGE).
const EXIT_CONFIG: u8 = 64;
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(loaded) => {
                println!("{}: valid ({} flows)", config.display(), loaded.flows.len());
                ExitCode::SUCCESS
            }
            Err(problem) => {
                report_config_error(&problem);
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run { config } => {
            let loaded = match Config::load(&config) {
                Ok(loaded) => loaded,
                Err(problem) => {
                    report_config_error(&problem);
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            init_logging();
            run(loaded)
        }
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

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Threads for blocking work: file reads, stats and opens, and name lookups. Each is short;
/// with thousands of files followed, more threads would only add switching between them.
const BLOCKING_THREADS: usize = 16;

fn run(config: Config) -> ExitCode {
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
    let shutdown = CancellationToken::new();
    let outcome = runtime.block_on(async {
        tokio::spawn(watch_signals(shutdown.clone()));
        kinship::app::run(config, shutdown).await
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
