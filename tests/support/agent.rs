//! Runs the real `kinship` binary for whole-agent tests: writes its config, starts it with an
//! environment that reaches only the local emulator, reads its log, and stops it by signal.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use super::config::{AgentConfig, Flow};
use super::{kinesalite, wait};

pub const BINARY: &str = env!("CARGO_BIN_EXE_kinship");
const POLL: Duration = Duration::from_millis(20);

/// A config for one flow shipping `files` to `stream` at `endpoint`, with `extra` flow keys
/// (each a `key: value` line) and `top` top-level keys.
pub fn write_config(
    dir: &Path,
    endpoint: &str,
    stream: &str,
    files: &str,
    extra: &[&str],
    top: &[&str],
) -> PathBuf {
    AgentConfig::new(dir)
        .emulator(kinesalite::REGION, endpoint)
        .top("progress_interval: 1s")
        .tops(top)
        .flow(Flow::kinesis("app", files, stream).keys(extra))
        .write()
}

pub struct Agent {
    child: Child,
    pub log: PathBuf,
    /// Where its standard output goes (`<log>.stdout`).
    pub stdout: PathBuf,
}

impl Agent {
    /// Starts `kinship run --config <config>`; its log goes to `<dir>/agent-N.log`.
    pub fn start(config: &Path, dir: &Path) -> Agent {
        Agent::start_as(config, dir, None)
    }

    /// As [`Agent::start`], but as the user and group `uid` (through `setpriv`) when given.
    pub fn start_as(config: &Path, dir: &Path, uid: Option<u32>) -> Agent {
        Agent::start_with(config, dir, uid, &[], &[])
    }

    /// As [`Agent::start_as`], with `args` after `run --config <config>` and `env` set on top
    /// of the test environment.
    pub fn start_with(
        config: &Path,
        dir: &Path,
        uid: Option<u32>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let mut index = 0;
        let log = loop {
            let candidate = dir.join(format!("agent-{index}.log"));
            if !candidate.exists() {
                break candidate;
            }
            index += 1;
        };
        let mut command = match uid {
            None => Command::new(BINARY),
            Some(uid) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg(BINARY);
                command
            }
        };
        command.arg("run").arg("--config").arg(config).args(args);
        kinesalite::apply_agent_env(&mut command);
        command.env("RUST_LOG", "info").envs(env.iter().copied());
        let stderr = File::create(&log).expect("create agent log");
        let stdout_path = log.with_extension("stdout");
        let stdout = File::create(&stdout_path).expect("create agent stdout");
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start the kinship binary");
        Agent {
            child,
            log,
            stdout: stdout_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last value of `field` (such as `records_parsed`) in the agent's progress lines.
    pub fn progress(&self, field: &str) -> Option<u64> {
        let needle = format!("{field}=");
        self.output()
            .lines()
            .rev()
            .filter(|line| line.contains("Progress."))
            .find_map(|line| {
                let at = line.find(&needle)? + needle.len();
                let digits: String = line[at..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse().ok()
            })
    }

    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log after `deadline`.
    pub fn wait_for_log(&mut self, needle: &str, deadline: Duration) -> String {
        let found = wait::poll_every(POLL, deadline, || {
            let output = self.output();
            if output.contains(needle) {
                return Some(Ok(output));
            }
            match self.child.try_wait() {
                Ok(Some(status)) => Some(Err(format!(
                    "kinship exited ({status}) before logging {needle:?}:\n{output}"
                ))),
                _ => None,
            }
        });
        match found {
            Some(Ok(output)) => output,
            Some(Err(message)) => panic!("{message}"),
            None => panic!(
                "kinship did not log {needle:?} within {deadline:?}:\n{}",
                self.output()
            ),
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the agent to exit; panics with its log after `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let exited = wait::poll_every(POLL, deadline, || {
            self.child.try_wait().expect("wait for kinship")
        });
        exited.unwrap_or_else(|| {
            panic!(
                "kinship did not exit within {deadline:?}:\n{}",
                self.output()
            )
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary with `args` to completion.
pub fn run_command(args: &[&str]) -> Output {
    let mut command = Command::new(BINARY);
    command.args(args);
    kinesalite::apply_agent_env(&mut command);
    command.output().expect("run kinship")
}

/// Reads the offset saved for the only file in the state directory's checkpoints (the
/// snapshot and the journal's entries after it, as kinship reads them at start).
pub fn saved_offset(dir: &Path) -> Option<u64> {
    let saved = kinship::checkpoint::read_saved(&dir.join("state")).ok()?;
    saved.first().map(|checkpoint| checkpoint.offset)
}

/// Runs the binary with `args` to completion, with `env` on top of the test environment.
pub fn run_command_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BINARY);
    command.args(args);
    kinesalite::apply_agent_env(&mut command);
    command.envs(env.iter().copied());
    command.output().expect("run kinship")
}
