//! Journal files for the journald tests, written by systemd's own `systemd-journal-remote`
//! from entries in the journal export format, as a host's journal would hold them.
//!
//! `systemd-journal-remote` comes from Debian's package of that name, installed on first use
//! like the emulators: the package and the library it needs besides systemd's are downloaded
//! with `apt-get download` and unpacked into `target/emulators/journal-remote`, so nothing is
//! installed system-wide. The package of the machine's own systemd version is taken, which
//! uses the machine's systemd library; if the archive no longer has that version, the current
//! one is taken with its own systemd library (`libsystemd-shared`) beside it. Only when the
//! package lists lack the package is `apt-get update` run, which needs root.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::emulator::{self, Installed};

const NEEDS: &str = "the journald tests need Debian's apt-get and dpkg-deb, journalctl (systemd), and access to Debian's package archive";
const DOWNLOAD_DEADLINE: Duration = Duration::from_secs(300);
/// The journal's boot id in every entry written here.
const BOOT_ID: &str = "6b1d3e0a5c7f4e2b9a8d1c0e3f5a7b9c";
/// Where the program may be within the unpacked packages (Debian 12, and later releases).
const PROGRAMS: [&str; 2] = [
    "lib/systemd/systemd-journal-remote",
    "usr/lib/systemd/systemd-journal-remote",
];

/// One journal entry: its fields, in order. A field's value may be any bytes.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// An entry of `unit` at `priority` saying `message`, written at `realtime_us`.
    pub fn new(message: &str, unit: &str, priority: u8, realtime_us: u64) -> Entry {
        Entry::default()
            .field("__REALTIME_TIMESTAMP", &realtime_us.to_string())
            .field(
                "__MONOTONIC_TIMESTAMP",
                &(realtime_us - 1_700_000_000_000_000).to_string(),
            )
            .field("_BOOT_ID", BOOT_ID)
            .field("MESSAGE", message)
            .field("PRIORITY", &priority.to_string())
            .field("_SYSTEMD_UNIT", unit)
            .field("SYSLOG_IDENTIFIER", unit.trim_end_matches(".service"))
            .field("_HOSTNAME", "web-1")
    }

    pub fn field(self, name: &str, value: &str) -> Entry {
        self.bytes_field(name, value.as_bytes())
    }

    pub fn bytes_field(mut self, name: &str, value: &[u8]) -> Entry {
        self.fields.push((name.to_owned(), value.to_vec()));
        self
    }

    /// The entry in the journal export format: `NAME=value` lines, or, for a value with a
    /// line break or other control bytes, the name, its length as 64-bit little-endian and the
    /// bytes; then an empty line.
    fn export(&self, out: &mut Vec<u8>) {
        for (name, value) in &self.fields {
            let plain = value.iter().all(|byte| *byte >= 0x20 && *byte != 0x7f);
            if plain {
                out.extend_from_slice(name.as_bytes());
                out.push(b'=');
                out.extend_from_slice(value);
            } else {
                out.extend_from_slice(name.as_bytes());
                out.push(b'\n');
                out.extend_from_slice(&(value.len() as u64).to_le_bytes());
                out.extend_from_slice(value);
            }
            out.push(b'\n');
        }
        out.push(b'\n');
    }
}

/// The unpacked `systemd-journal-remote` package (and the libraries it needs), installed
/// once per target directory.
pub fn install() -> PathBuf {
    static INSTALLED: Installed = Installed::new();
    let version = systemd_version();
    emulator::install_once(
        &INSTALLED,
        "journal-remote",
        &format!("systemd-journal-remote for systemd {version}\n"),
        |dir| program_in(dir).is_some(),
        |staging| download_and_unpack(staging, &version),
    )
}

/// The program within the unpacked packages.
fn program_in(dir: &Path) -> Option<PathBuf> {
    PROGRAMS
        .iter()
        .map(|program| dir.join(program))
        .find(|program| program.is_file())
}

/// The machine's systemd version.
fn systemd_version() -> String {
    let output = Command::new("dpkg-query")
        .args(["--show", "--showformat=${Version}", "systemd"])
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot ask dpkg-query for systemd's version: {error}; {NEEDS}")
        });
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        output.status.success() && !version.is_empty(),
        "systemd is not installed ({}); {NEEDS}",
        String::from_utf8_lossy(&output.stderr)
    );
    version
}

fn download_and_unpack(staging: &Path, version: &str) -> Result<(), String> {
    let log_path = emulator::emulators_dir().join("journal-remote-apt.log");
    let _ = fs::remove_file(&log_path);
    let downloads = staging.join("debs");
    fs::create_dir_all(&downloads)
        .map_err(|e| format!("cannot create {}: {e}", downloads.display()))?;
    let download = |packages: &[&str]| {
        let mut apt = Command::new("apt-get");
        apt.current_dir(&downloads).arg("download").args(packages);
        emulator::run_logged(apt, &log_path, DOWNLOAD_DEADLINE, NEEDS)
    };
    let same_version = format!("systemd-journal-remote={version}");
    let matching = [same_version.as_str(), "libmicrohttpd12"];
    // The current version, with its own systemd library.
    let current = [
        "systemd-journal-remote",
        "libsystemd-shared",
        "libmicrohttpd12",
    ];
    let downloaded = download(&matching).or_else(|_| download(&current));
    if downloaded.is_err() {
        // The package lists may be missing or stale on a fresh machine.
        let mut update = Command::new("apt-get");
        update.arg("update");
        emulator::run_logged(update, &log_path, DOWNLOAD_DEADLINE, NEEDS)?;
        download(&matching).or_else(|_| download(&current))?;
    }
    let debs = fs::read_dir(&downloads)
        .map_err(|e| format!("cannot list {}: {e}", downloads.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "deb"));
    for deb in debs {
        let mut unpack = Command::new("dpkg-deb");
        unpack.arg("--extract").arg(&deb).arg(staging);
        emulator::run_logged(unpack, &log_path, DOWNLOAD_DEADLINE, NEEDS)?;
    }
    let _ = fs::remove_dir_all(&downloads);
    if program_in(staging).is_some() {
        Ok(())
    } else {
        Err(format!(
            "the packages unpacked, but systemd-journal-remote is not in {}; {NEEDS}",
            staging.display()
        ))
    }
}

/// The directories of the unpacked packages that hold shared libraries, for
/// `LD_LIBRARY_PATH`: libmicrohttpd's, and, when the current version was taken, systemd's.
fn library_path(installed: &Path) -> std::ffi::OsString {
    let mut dirs = Vec::new();
    let mut pending = vec![installed.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut holds_library = false;
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pending.push(path);
            } else {
                let name = entry.file_name().to_string_lossy().into_owned();
                holds_library |= name.ends_with(".so") || name.contains(".so.");
            }
        }
        if holds_library {
            dirs.push(dir);
        }
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// Appends `entries` to the journal file `journal` (a `.journal` file, created if missing),
/// through `systemd-journal-remote`.
pub fn write(journal: &Path, entries: &[Entry]) {
    let installed = install();
    let program = program_in(&installed).expect("systemd-journal-remote installed");
    let mut export = Vec::new();
    for entry in entries {
        entry.export(&mut export);
    }
    let mut child = Command::new(&program)
        .arg(format!("--output={}", journal.display()))
        .arg("-")
        .env("LD_LIBRARY_PATH", library_path(&installed))
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&export));
    let output = child.wait_with_output().expect("systemd-journal-remote");
    let written = writer.join().expect("writer");
    assert!(
        output.status.success() && written.is_ok(),
        "systemd-journal-remote failed ({}; writing its input: {written:?}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
