//! The agent binary as a child process, and what `/proc` says about it.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub use crate::proc_usage::cpu_seconds;
use crate::proc_usage::peak_rss_bytes;
use crate::{wait, Context};

/// A running `kinship run`. Dropping it kills the process, so a failed run leaves nothing behind.
pub struct Agent {
    child: Child,
    pub log_path: PathBuf,
}

/// How the agent ended once asked to stop.
#[derive(Clone, Debug)]
pub struct Ending {
    pub description: String,
    /// It exited by itself, with success, after SIGTERM.
    pub clean: bool,
}

/// CPU and memory the agent had used by some moment.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
}

impl Agent {
    pub fn spawn(binary: &Path, config: &Path, log_path: PathBuf) -> Result<Agent, String> {
        let log = File::create(&log_path).context(format!("creating {}", log_path.display()))?;
        let log_for_stdout = log
            .try_clone()
            .context("duplicating the agent log's handle")?;
        let mut command = Command::new(binary);
        command
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log_for_stdout)
            .stderr(log);
        isolate_aws_environment(&mut command);
        let child = command
            .spawn()
            .context(format!("starting the agent {}", binary.display()))?;
        Ok(Agent { child, log_path })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>, String> {
        self.child
            .try_wait()
            .context("checking whether the agent is still running")
    }

    pub fn usage(&self) -> Result<Usage, String> {
        let pid = self.pid();
        Ok(Usage {
            cpu_seconds: cpu_seconds(&format!("/proc/{pid}/stat"))?,
            peak_rss_bytes: peak_rss_bytes(pid)?,
        })
    }

    /// Sends SIGTERM and waits up to `grace` for the agent to exit; kills it after that.
    pub fn terminate(&mut self, grace: Duration) -> Result<Ending, String> {
        if let Some(status) = self.exited()? {
            return Ok(Ending {
                description: format!("had exited before SIGTERM: {status}"),
                clean: false,
            });
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("running kill -TERM")?;
        if !sent.success() {
            return Err(format!("kill -TERM {} failed: {sent}", self.pid()));
        }
        let exited = wait::poll_every(Duration::from_millis(10), grace, || {
            self.exited().transpose()
        });
        if let Some(status) = exited.transpose()? {
            return Ok(Ending {
                description: status.to_string(),
                clean: status.success(),
            });
        }
        self.child.kill().context("killing the agent")?;
        let status = self.child.wait().context("waiting for the killed agent")?;
        Ok(Ending {
            description: format!("did not exit within {grace:?} of SIGTERM; killed: {status}"),
            clean: false,
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

/// The agent must talk to the null endpoint with fixed credentials whatever the shell running
/// the bench has set up: a profile, a session token or an endpoint override would change what
/// is measured.
fn isolate_aws_environment(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            command.env_remove(&name);
        }
    }
    let fixed: [(&str, &str); 6] = [
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
    ];
    command.envs(
        fixed
            .iter()
            .map(|(name, value)| (OsStr::new(name), OsStr::new(value))),
    );
}

/// The last `count` lines of a log, for error messages.
pub fn log_tail(path: &Path, count: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(count)..].join("\n");
            if tail.is_empty() {
                "(the log is empty)".to_owned()
            } else {
                tail
            }
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}
