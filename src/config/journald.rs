//! The checks of a flow's `journald` block: which journal is read, and which of its entries.

use std::path::PathBuf;

use super::checker::Checker;
use super::model::JournaldSource;
use super::raw::{self, RawFlow};
use crate::secrets::quoted;

/// The journal's priorities, most urgent first: a priority's number is its index.
const PRIORITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Names `journalctl` also takes for some priorities.
const PRIORITY_ALIASES: [(&str, u8); 4] =
    [("emergency", 0), ("critical", 2), ("error", 3), ("warn", 4)];

/// A unit name's longest form, as systemd allows it.
const MAX_UNIT_NAME_BYTES: usize = 256;

impl Checker<'_> {
    /// `journald`: the flow reads the systemd journal instead of files. Keys that only say how
    /// files are read are mistakes beside it.
    pub(super) fn journald(&mut self, key: &str, raw: &mut RawFlow) -> Option<JournaldSource> {
        let block = raw.journald.take()?;
        let block_key = format!("{key}.journald");
        if raw.files.is_some() {
            self.problem(
                &format!("{key}.files"),
                "a flow reads files or the journal, not both; give each its own flow",
            );
        }
        if raw.windows_event_log.take().is_some() {
            self.problem(
                &format!("{key}.windows_event_log"),
                "a flow reads the journal or the Windows Event Log, not both; give each its own flow",
            );
        }
        self.no_file_keys(
            key,
            raw,
            "applies to lines of files; this flow reads the journal (a long entry's largest fields are cut to the record limit)",
        );
        let before = self.problems.len();
        let directory = block.directory.and_then(|directory| {
            let path = PathBuf::from(&directory);
            if path.is_absolute() {
                Some(path)
            } else {
                self.problem(
                    &format!("{block_key}.directory"),
                    format!("`{}` must be an absolute path", quoted(&directory)),
                );
                None
            }
        });
        let units = self.units(&block_key, block.units);
        let max_priority = block
            .max_priority
            .and_then(|priority| self.priority(&block_key, priority));
        let journalctl = match block.journalctl {
            None => PathBuf::from("journalctl"),
            Some(program) if program.is_empty() => {
                self.problem(
                    &format!("{block_key}.journalctl"),
                    "is empty; give the journalctl program's path (or leave the key out to find it on PATH)",
                );
                PathBuf::new()
            }
            Some(program) => PathBuf::from(program),
        };
        if self.problems.len() != before {
            return None;
        }
        Some(JournaldSource {
            directory,
            units,
            max_priority,
            journalctl,
        })
    }

    /// `units`: one unit or a list; a name without a type is a service, as `journalctl -u`
    /// takes it.
    fn units(&mut self, block_key: &str, raw: Option<raw::OneOrMany>) -> Vec<String> {
        let units = raw.map(raw::OneOrMany::into_vec).unwrap_or_default();
        for (index, unit) in units.iter().enumerate() {
            let unit_key = if units.len() == 1 {
                format!("{block_key}.units")
            } else {
                format!("{block_key}.units[{index}]")
            };
            let well_formed = !unit.is_empty()
                && unit.len() <= MAX_UNIT_NAME_BYTES
                && unit
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b":-_.\\@*?[]".contains(&byte));
            if !well_formed {
                self.problem(
                    &unit_key,
                    format!(
                        "`{}` is not a unit name (such as nginx.service)",
                        quoted(unit)
                    ),
                );
            }
        }
        units
    }

    /// `max_priority`: a name (emerg … debug), or its number ("0" … "7").
    fn priority(&mut self, block_key: &str, written: String) -> Option<u8> {
        let name = written.to_ascii_lowercase();
        let found = PRIORITIES
            .iter()
            .position(|known| *known == name)
            .and_then(|index| u8::try_from(index).ok())
            .or_else(|| {
                PRIORITY_ALIASES
                    .iter()
                    .find(|(alias, _)| *alias == name)
                    .map(|(_, number)| *number)
            })
            .or_else(|| name.parse::<u8>().ok().filter(|number| *number <= 7));
        if found.is_none() {
            self.problem(
                &format!("{block_key}.max_priority"),
                format!(
                    "`{}` is not a priority: give one of {} (or its number, \"0\" to \"7\")",
                    quoted(&written),
                    PRIORITIES.join(", ")
                ),
            );
        }
        found
    }
}

/// A priority's name, as `journalctl --priority` takes it.
pub fn journald_priority_name(priority: u8) -> &'static str {
    PRIORITIES
        .get(usize::from(priority))
        .copied()
        .unwrap_or("debug")
}

#[cfg(test)]
mod tests;
