//! The binary's commands as library calls, so that each is testable in-process: running the
//! agent (its runtime, signals and reloads), the online check and what it prints, and the
//! warnings given before anything starts. The binary only parses the command line, calls
//! these, prints, and maps the outcome to an exit status.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::signals::{watch_hangups, watch_signals};
use super::AppError;
use crate::checkpoint::import::{import_into, ImportError, Imported};
use crate::config::{Config, Destination};
use crate::reload::Reloading;
use crate::secrets::mask;
use crate::sink::check::{describe_call, CheckFailed, CheckPassed};

/// Threads for blocking work: file reads, stats and opens, and name lookups. Each is short;
/// with thousands of files followed, more threads would only add switching between them.
const BLOCKING_THREADS: usize = 16;

/// The exit status of a second stop signal, which exits at once.
const EXIT_ON_SECOND_SIGNAL: i32 = 1;

/// What the config's file permissions give away: a warning when the file holds a secret key
/// and other users may read it.
pub fn secrets_readable_warning(config: &Config) -> Option<&'static str> {
    if !config.holds_secret_keys {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::metadata(&config.source).ok()?;
        if metadata.permissions().mode() & 0o044 != 0 {
            return Some("the config file holds a secret access key and other users may read it; make it readable by its owner only (chmod 600), or use a profile, an instance role or assume_role");
        }
    }
    None
}

/// `--dry-run`: every flow writes its batches instead of sending them, and nothing is
/// published to CloudWatch either.
pub fn dry_run_all(config: &mut Config) {
    for flow in &mut config.flows {
        flow.dry_run = true;
    }
    config.cloudwatch = None;
}

/// Runs the agent on a runtime of its own until `shutdown` fires or a stop signal comes;
/// SIGHUP reloads the config (read again as a dry run if `dry_run`). With `import`, the
/// Kinesis Agent's checkpoint database, its checkpoints are first given to the files that
/// have none.
pub fn run_agent(
    config: Config,
    dry_run: bool,
    import: Option<PathBuf>,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .map_err(AppError::Runtime)?;
    let reloading = Reloading::new(move |config| {
        crate::logging::register_known_secrets(config);
        if dry_run {
            dry_run_all(config);
        }
    });
    let outcome = runtime.block_on(async {
        tokio::spawn(watch_signals(shutdown.clone(), EXIT_ON_SECOND_SIGNAL));
        tokio::spawn(watch_hangups(reloading.trigger.clone()));
        super::run_importing(config, import, shutdown, Some(reloading)).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    outcome
}

/// `kinship migrate --checkpoints`: seeds the checkpoint store of `config` (its `state_dir`,
/// for its flows) from the Kinesis Agent's checkpoint database at `db`. kinship must not be
/// running on that state directory.
pub fn import_checkpoints(config: &Config, db: &Path) -> Result<Imported, ImportError> {
    import_into(&config.state_dir, &config.flows, db)
}

/// What `check --online` prints: one line per flow checked, and how many failed.
#[derive(Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// For standard output, secrets masked.
    pub lines: Vec<String>,
    pub checked: usize,
    pub failed: usize,
}

/// Runs every flow's start-up checks, on a runtime of its own.
pub fn check_online(config: &Config) -> Result<CheckReport, AppError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::Runtime)?;
    let outcomes = runtime.block_on(super::check_online(config))?;
    let dry_run = config.flows.iter().filter(|flow| flow.dry_run).count();
    Ok(check_report(&outcomes, dry_run))
}

type Outcome = (String, Destination, Result<CheckPassed, CheckFailed>);

/// The printout of the checks' `outcomes`, `dry_run` flows having been left out.
fn check_report(outcomes: &[Outcome], dry_run: usize) -> CheckReport {
    let mut lines = Vec::new();
    let mut failed = 0;
    for (flow, destination, outcome) in outcomes {
        let line = match outcome {
            Ok(passed) => {
                let who = passed.identity.as_ref().map_or_else(
                    || "identity not checked".to_owned(),
                    |identity| format!("account {}, {}", identity.account, identity.arn),
                );
                let what = match (&passed.status, &passed.describe_denied) {
                    (Some(status), _) => format!("status {}", status.status),
                    (None, Some(_)) => format!(
                        "warning: not allowed to describe it ({}); sending would still be tried",
                        describe_call(destination.kind)
                    ),
                    (None, None) => "not described".to_owned(),
                };
                format!("flow `{flow}`: {destination}: ok ({who}; {what})")
            }
            Err(failure) => {
                failed += 1;
                format!("flow `{flow}`: {destination}: FAILED: {failure}")
            }
        };
        lines.push(mask(&line).into_owned());
    }
    if dry_run > 0 {
        lines.push(format!(
            "{dry_run} flow(s) in dry-run mode need no AWS access and were not checked"
        ));
    }
    CheckReport {
        lines,
        checked: outcomes.len(),
        failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DestinationKind;
    use crate::sink::check::Identity;
    use crate::sink::{PutError, StreamStatus};

    fn stream(name: &str) -> Destination {
        Destination {
            kind: DestinationKind::Kinesis,
            name: name.to_owned(),
            arn: None,
        }
    }

    #[test]
    fn the_check_printout_has_a_line_per_flow_and_counts_failures() {
        let outcomes = vec![
            (
                "web".to_owned(),
                stream("logs"),
                Ok(CheckPassed {
                    identity: Some(Identity {
                        account: "123456789012".into(),
                        arn: "arn:aws:iam::123456789012:user/shipper".into(),
                    }),
                    status: Some(StreamStatus {
                        status: "ACTIVE".into(),
                        open_shards: Some(2),
                        max_record_bytes: None,
                    }),
                    describe_denied: None,
                }),
            ),
            (
                "audit".to_owned(),
                stream("audit"),
                Ok(CheckPassed {
                    identity: None,
                    status: None,
                    describe_denied: Some("AccessDenied".into()),
                }),
            ),
            (
                "app".to_owned(),
                stream("missing"),
                Err(CheckFailed {
                    call: "kinesis:DescribeStreamSummary",
                    cause: PutError::Configuration {
                        message: "no such stream".into(),
                        hint: "create it".into(),
                    },
                }),
            ),
        ];
        let report = check_report(&outcomes, 1);
        assert_eq!(report.checked, 3);
        assert_eq!(report.failed, 1);
        assert_eq!(report.lines.len(), 4, "{:?}", report.lines);
        assert!(
            report.lines[0].starts_with("flow `web`: ")
                && report.lines[0].ends_with(": ok (account 123456789012, arn:aws:iam::123456789012:user/shipper; status ACTIVE)"),
            "{}",
            report.lines[0]
        );
        assert!(
            report.lines[1].ends_with("ok (identity not checked; warning: not allowed to describe it (kinesis:DescribeStreamSummary); sending would still be tried)"),
            "{}",
            report.lines[1]
        );
        assert!(
            report.lines[2].contains(
                ": FAILED: kinesis:DescribeStreamSummary failed: no such stream; create it"
            ),
            "{}",
            report.lines[2]
        );
        assert_eq!(
            report.lines[3],
            "1 flow(s) in dry-run mode need no AWS access and were not checked"
        );
    }

    #[test]
    fn dry_run_sends_nothing_and_publishes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kinship.yaml");
        let yaml = format!(
            "state_dir: {}\ncloudwatch:\n  namespace: Kinship\nflows:\n  - name: web\n    files: [/var/log/web.log]\n    kinesis_stream: logs\n",
            dir.path().display()
        );
        std::fs::write(&path, yaml).expect("write config");
        let mut config = Config::load(&path).expect("valid config");
        assert!(config.cloudwatch.is_some());
        dry_run_all(&mut config);
        assert!(config.flows.iter().all(|flow| flow.dry_run));
        assert!(config.cloudwatch.is_none());
    }
}
