//! The `journalctl` command lines a journald flow runs: one that follows the journal from a
//! cursor (or from its start) and prints each entry in the export format, and one that names
//! the journal's last entry now.

use std::ffi::OsString;

use crate::config::{journald_priority_name, JournaldSource};

/// The arguments that follow the journal from the entry `from` on (from its first entry, when
/// `None`), with the flow's filters, printing every field of every entry in full in the
/// journal export format.
///
/// `--cursor` (which prints the cursor's own entry too, to be left out by the reader) rather
/// than `--after-cursor`: systemd before 255 skips the first matching entry after a cursor
/// whose own entry does not match the filters (systemd issue 30288).
pub fn follow(source: &JournaldSource, from: Option<&str>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--follow".into(),
        "--output=export".into(),
        // Every entry after the start point, not the last ten.
        "--no-tail".into(),
        "--no-pager".into(),
    ];
    args.extend(journal(source));
    for unit in &source.units {
        args.push(format!("--unit={unit}").into());
    }
    if let Some(priority) = source.max_priority {
        args.push(format!("--priority={}", journald_priority_name(priority)).into());
    }
    if let Some(cursor) = from {
        args.push(format!("--cursor={cursor}").into());
    }
    args
}

/// The arguments that print the journal's last entry (any unit, any priority).
pub fn last_entry(source: &JournaldSource) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--lines=1".into(),
        "--output=export".into(),
        "--no-pager".into(),
    ];
    args.extend(journal(source));
    args
}

/// Which journal is read: the directory given, else the system's.
fn journal(source: &JournaldSource) -> Option<OsString> {
    source.directory.as_ref().map(|directory| {
        let mut arg = OsString::from("--directory=");
        arg.push(directory);
        arg
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn source(units: &[&str], max_priority: Option<u8>) -> JournaldSource {
        JournaldSource {
            directory: Some(PathBuf::from("/var/log/journal")),
            units: units.iter().map(|unit| (*unit).to_owned()).collect(),
            max_priority,
            journalctl: PathBuf::from("journalctl"),
        }
    }

    fn text(args: Vec<OsString>) -> Vec<String> {
        args.into_iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn following_carries_the_filters_and_the_cursor() {
        let args = text(follow(
            &source(&["nginx.service", "sshd.service"], Some(6)),
            Some("s=1;i=2"),
        ));
        assert_eq!(
            args,
            [
                "--follow",
                "--output=export",
                "--no-tail",
                "--no-pager",
                "--directory=/var/log/journal",
                "--unit=nginx.service",
                "--unit=sshd.service",
                "--priority=info",
                "--cursor=s=1;i=2",
            ]
        );
        let system = JournaldSource {
            directory: None,
            ..source(&[], None)
        };
        assert_eq!(
            text(follow(&system, None)),
            ["--follow", "--output=export", "--no-tail", "--no-pager"]
        );
    }

    #[test]
    fn the_last_entry_is_asked_of_the_whole_journal() {
        assert_eq!(
            text(last_entry(&source(&["nginx.service"], Some(3)))),
            [
                "--lines=1",
                "--output=export",
                "--no-pager",
                "--directory=/var/log/journal"
            ]
        );
    }
}
