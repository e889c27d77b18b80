//! What the emulator harnesses ([`super::kinesalite`], [`super::moto`]) have in common: where
//! they keep things on disk, installing an emulator once per target directory, running an
//! install command with a deadline and its output logged, and starting a server process on a
//! free loopback port and waiting until it is up.
//!
//! Everything here is keyed by the emulator's name (`kinesalite`, `moto`), which names its
//! directory, lock file, staging directories, log directory and messages.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const START_ATTEMPTS: usize = 5;
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// `target/tmp`: cargo names it for tests and benches; anything else that includes this file
/// (the demo example) falls back to the same place.
pub fn tmp_dir() -> PathBuf {
    match option_env!("CARGO_TARGET_TMPDIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("tmp"),
    }
}

/// `target/`: everything the harnesses keep on disk lives below it.
pub fn target_dir() -> PathBuf {
    let tmp = tmp_dir();
    tmp.parent().map_or_else(|| tmp.clone(), Path::to_path_buf)
}

/// `target/emulators`: the installed emulators, their lock files and install logs.
pub fn emulators_dir() -> PathBuf {
    target_dir().join("emulators")
}

/// The outcome of installing one emulator in this process; see [`install_once`].
pub type Installed = OnceLock<Result<PathBuf, String>>;

/// Installs emulator `name` (once per target directory) and returns its directory,
/// `target/emulators/<name>`. Panics with the install's error message if it failed.
///
/// The directory counts as installed when its `.install-complete` file holds exactly `marker`
/// (which names the version) and `is_complete(dir)` holds. Otherwise `build(staging)` installs
/// into an empty staging directory `target/emulators/<name>.staging-<pid>`, which is renamed
/// into place, marker included, only after `build` succeeded; so an interrupted install is
/// never mistaken for a finished one.
///
/// Safe to call from many test threads and processes at once: `installed` (a `static` of the
/// caller) serialises the threads of this binary and remembers the outcome, and a file lock,
/// `target/emulators/<name>.lock`, serialises processes.
pub fn install_once(
    installed: &Installed,
    name: &str,
    marker: &str,
    is_complete: impl Fn(&Path) -> bool,
    build: impl FnOnce(&Path) -> Result<(), String>,
) -> PathBuf {
    match installed.get_or_init(|| install_locked(name, marker, is_complete, build)) {
        Ok(dir) => dir.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn install_locked(
    name: &str,
    marker: &str,
    is_complete: impl Fn(&Path) -> bool,
    build: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let root = emulators_dir();
    fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let lock_path = root.join(format!("{name}.lock"));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;

    let dir = root.join(name);
    let marker_path = dir.join(".install-complete");
    if fs::read_to_string(&marker_path).is_ok_and(|m| m == marker) && is_complete(&dir) {
        return Ok(dir);
    }

    // Holding the lock means no other process is installing: any staging directory left over
    // is from an install that was interrupted.
    let staging_prefix = format!("{name}.staging-");
    if let Ok(entries) = fs::read_dir(&root) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&staging_prefix)
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let staging = root.join(format!("{staging_prefix}{}", std::process::id()));
    fs::create_dir_all(&staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;

    if let Err(message) = build(&staging) {
        let _ = fs::remove_dir_all(&staging);
        return Err(message);
    }

    fs::write(staging.join(".install-complete"), marker).map_err(|e| {
        format!(
            "cannot write the install marker in {}: {e}",
            staging.display()
        )
    })?;
    match fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove stale {}: {e}", dir.display())),
    }
    fs::rename(&staging, &dir).map_err(|e| {
        format!(
            "cannot move {} to {}: {e}",
            staging.display(),
            dir.display()
        )
    })?;
    Ok(dir)
}

/// Runs `command` with its output appended to `log_path`, killing it once `deadline` has
/// passed. An error says what failed, carries the output and ends with `needs`: what the
/// tests need so that the command can succeed.
pub fn run_logged(
    mut command: Command,
    log_path: &Path,
    deadline: Duration,
    needs: &str,
) -> Result<(), String> {
    let command_line = format!("{command:?}");
    let mut log = File::options()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    let _ = writeln!(log, "$ {command_line}");
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot reopen {}: {e}", log_path.display()))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("could not run {command_line}: {e}; {needs}"))?;
    let status = wait_with_deadline(&mut child, deadline)
        .map_err(|e| format!("waiting for {command_line} failed: {e}"))?;
    let output = || fs::read_to_string(log_path).unwrap_or_default();
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!(
            "{command_line} failed ({status}); {needs}. Its output ({}):\n{}",
            log_path.display(),
            output()
        )),
        None => Err(format!(
            "{command_line} did not finish within {deadline:?} and was killed; {needs}. \
             Its output ({}):\n{}",
            log_path.display(),
            output()
        )),
    }
}

/// Waits for `child` to exit; kills it and returns `None` once `deadline` has passed.
pub fn wait_with_deadline(
    child: &mut Child,
    deadline: Duration,
) -> std::io::Result<Option<ExitStatus>> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How to start one emulator's server and tell that it is up; [`ServerLaunch::start`] runs it.
pub struct ServerLaunch<'a> {
    /// The emulator's name, for the log directory `target/tmp/<name>-logs`, the log files in it
    /// and messages.
    pub name: &'static str,
    /// How long the server may take to come up.
    pub deadline: Duration,
    /// What the server does once it is up, for the message when it does not: "accept
    /// connections", "answer HTTP".
    pub ready_means: &'static str,
    /// Spawns the server on loopback port `port` with the given stdout and stderr (both its
    /// log file). The server's stdin should be piped, so that it can exit when the test
    /// process goes. An error says why it could not be run.
    pub spawn: &'a dyn Fn(u16, Stdio, Stdio) -> Result<Child, String>,
    /// Whether a server that exited during startup with this status and output did so because
    /// its port was taken; the launch is then retried on another port.
    pub port_taken: &'a dyn Fn(ExitStatus, &str) -> bool,
    /// Whether the server on `addr`, having written this output so far, is up and is the one
    /// just started (not another process that took the port in between).
    pub ready: &'a dyn Fn(SocketAddr, &str) -> bool,
}

impl ServerLaunch<'_> {
    /// Starts the server on a free loopback port and returns once it is up. Panics with the
    /// server's output if it cannot be started.
    pub fn start(&self) -> ServerProcess {
        let logs = tmp_dir().join(format!("{}-logs", self.name));
        fs::create_dir_all(&logs)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", logs.display()));

        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match self.try_start(&logs) {
                Ok(server) => return server,
                Err(StartError::PortTaken(port)) => failures.push(format!("port {port} was taken")),
                Err(StartError::Fatal(message)) => panic!("{message}"),
            }
        }
        panic!(
            "could not start {} after {START_ATTEMPTS} attempts: {}",
            self.name,
            failures.join("; ")
        );
    }

    fn try_start(&self, logs: &Path) -> Result<ServerProcess, StartError> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);

        let name = self.name;
        let port = free_port();
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let log_path = logs.join(format!("{name}-{}-{n}-{port}.log", std::process::id()));
        let log = File::create(&log_path)
            .map_err(|e| StartError::Fatal(format!("cannot create {}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| StartError::Fatal(format!("cannot reopen {}: {e}", log_path.display())))?;

        let child = (self.spawn)(port, log.into(), log_err.into()).map_err(StartError::Fatal)?;
        let mut server = ServerProcess {
            name,
            port,
            log_path,
            child,
            keep_log: false,
        };

        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let end = Instant::now() + self.deadline;
        loop {
            match server.child.try_wait() {
                Ok(Some(status)) => {
                    let output = server.output();
                    if (self.port_taken)(status, &output) {
                        return Err(StartError::PortTaken(port));
                    }
                    server.keep_log = true;
                    return Err(StartError::Fatal(format!(
                        "{name} exited during startup ({status}); its output ({}):\n{output}",
                        server.log_path.display()
                    )));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(StartError::Fatal(format!(
                        "cannot check on the {name} process: {e}"
                    )))
                }
            }
            if (self.ready)(addr, &server.output()) {
                return Ok(server);
            }
            if Instant::now() >= end {
                server.keep_log = true;
                return Err(StartError::Fatal(format!(
                    "{name} did not {} on {addr} within {:?}; its output ({}):\n{}",
                    self.ready_means,
                    self.deadline,
                    server.log_path.display(),
                    server.output()
                )));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

enum StartError {
    PortTaken(u16),
    Fatal(String),
}

/// A running emulator server on `127.0.0.1`, private to one test.
///
/// Dropping it kills the server; its log is removed then, unless startup failed or the thread
/// is panicking, in which case it is kept and named on stderr.
#[derive(Debug)]
pub struct ServerProcess {
    name: &'static str,
    port: u16,
    log_path: PathBuf,
    child: Child,
    /// Set when startup failed, so the log a panic message points to survives.
    keep_log: bool,
}

impl ServerProcess {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The file that holds the server's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The OS process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server has written to stdout and stderr so far.
    pub fn output(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.keep_log || std::thread::panicking() {
            eprintln!(
                "{} on port {} stopped; its output is in {}",
                self.name,
                self.port,
                self.log_path.display()
            );
        } else {
            let _ = fs::remove_file(&self.log_path);
        }
    }
}

/// A loopback port that was free a moment ago. Another process may take it before the server
/// binds it; [`ServerLaunch::start`] retries when that happens.
fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .expect("cannot bind a loopback port to find a free one");
    listener
        .local_addr()
        .expect("cannot read the address of a bound loopback socket")
        .port()
}
