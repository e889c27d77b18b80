//! Where kinship keeps its files when the config does not say: `/etc/kinship` and
//! `/var/lib/kinship` on Linux, `%ProgramData%\kinship` on Windows.

use std::path::PathBuf;

/// Where the packaged service looks for its configuration on Linux.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/kinship/kinship.yaml";
const UNIX_STATE_DIR: &str = "/var/lib/kinship";
/// `%ProgramData%` when the environment does not say (a service always has it set).
const WINDOWS_PROGRAM_DATA: &str = r"C:\ProgramData";

/// The default paths of one platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultPaths {
    /// The config file `run`, `check` and `service install` read.
    pub config: PathBuf,
    /// Where checkpoints live, unless the config sets `state_dir`.
    pub state_dir: PathBuf,
    /// Where the Windows service logs, unless the config sets `log_file`; a console process
    /// logs to standard error.
    pub service_log_file: Option<PathBuf>,
}

/// The defaults for this platform.
pub fn default_paths() -> DefaultPaths {
    if cfg!(windows) {
        let program_data = std::env::var("ProgramData")
            .ok()
            .filter(|dir| !dir.trim().is_empty())
            .unwrap_or_else(|| WINDOWS_PROGRAM_DATA.to_owned());
        windows_paths(&program_data)
    } else {
        unix_paths()
    }
}

pub fn unix_paths() -> DefaultPaths {
    DefaultPaths {
        config: PathBuf::from(DEFAULT_CONFIG_PATH),
        state_dir: PathBuf::from(UNIX_STATE_DIR),
        service_log_file: None,
    }
}

/// The defaults below `program_data` (`%ProgramData%`, usually `C:\ProgramData`). Built with
/// backslashes whatever the build platform, so the Windows layout is tested on Linux too.
pub fn windows_paths(program_data: &str) -> DefaultPaths {
    let base = format!(r"{}\kinship", program_data.trim_end_matches(['\\', '/']));
    DefaultPaths {
        config: PathBuf::from(format!(r"{base}\kinship.yaml")),
        state_dir: PathBuf::from(format!(r"{base}\state")),
        service_log_file: Some(PathBuf::from(format!(r"{base}\logs\kinship.log"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_defaults_live_under_program_data() {
        let expected = DefaultPaths {
            config: PathBuf::from(r"C:\ProgramData\kinship\kinship.yaml"),
            state_dir: PathBuf::from(r"C:\ProgramData\kinship\state"),
            service_log_file: Some(PathBuf::from(r"C:\ProgramData\kinship\logs\kinship.log")),
        };
        assert_eq!(windows_paths(r"C:\ProgramData"), expected);
        assert_eq!(windows_paths(r"C:\ProgramData\"), expected);
        assert_eq!(
            windows_paths(r"D:\Data").state_dir,
            PathBuf::from(r"D:\Data\kinship\state")
        );
    }

    #[test]
    fn linux_defaults_are_unchanged() {
        let paths = unix_paths();
        assert_eq!(paths.config, PathBuf::from("/etc/kinship/kinship.yaml"));
        assert_eq!(paths.state_dir, PathBuf::from("/var/lib/kinship"));
        assert_eq!(paths.service_log_file, None);
        if cfg!(not(windows)) {
            assert_eq!(default_paths(), paths);
        }
    }
}
