//! The checking pass's state: where each key is written, which keys the schema's pass
//! reported already, and the problems found so far; with the readers of values (durations,
//! numbers, regular expressions) every other check uses.

use std::time::Duration;

use super::locate::KeyPositions;
use super::problem::Problem;
use super::schema::Rejected;
use crate::pattern::Pattern;
use crate::secrets::quoted;

/// Durations such as `ignore_older` and `checkpoint_expiry` may be this long.
const LONGEST_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);
/// Other durations may be up to a day long.
const LONGEST_SHORT_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Validates raw settings, collecting every problem with the place it is written.
pub(super) struct Checker<'a> {
    pub(super) positions: &'a KeyPositions,
    /// Keys the schema's pass reported: nothing more is said of them or of their absence.
    pub(super) rejected: &'a Rejected,
    pub(super) problems: Vec<Problem>,
}

impl Checker<'_> {
    pub(super) fn problem(&mut self, key: &str, message: impl Into<String>) {
        if self.rejected.covers(key) {
            return;
        }
        let position = self.positions.find(key);
        self.problems.push(Problem {
            line: position.map(|p| p.line),
            column: position.map(|p| p.column),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Whether `key` was written but reported already (a wrong type, or a misspelling of it):
    /// checks that weigh it against other keys are skipped rather than guess its value.
    pub(super) fn rejected(&self, key: &str) -> bool {
        self.rejected.covers(key)
    }

    pub(super) fn pattern(&mut self, key: &str, text: String) -> Option<Pattern> {
        match regex::bytes::Regex::new(&text) {
            Ok(regex) => Some(Pattern { text, regex }),
            Err(error) => {
                // The parser's message draws a caret under the pattern over several
                // lines; its last line says what is wrong.
                let message = error.to_string();
                let last_line = message.lines().last().unwrap_or_default().trim();
                let reason = last_line.strip_prefix("error: ").unwrap_or(last_line);
                self.problem(
                    key,
                    format!(
                        "`{}` is not a valid regular expression: {reason}",
                        quoted(&text)
                    ),
                );
                None
            }
        }
    }

    /// A duration that may be longer than a day (up to a year); `default` when absent.
    pub(super) fn long_duration(
        &mut self,
        key: &str,
        raw: Option<String>,
        default: Duration,
    ) -> Duration {
        self.bounded_duration(key, raw, default, LONGEST_DURATION, "366 days")
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        raw: Option<String>,
        default: Duration,
    ) -> Duration {
        self.bounded_duration(key, raw, default, LONGEST_SHORT_DURATION, "24h")
    }

    pub(super) fn bounded_duration(
        &mut self,
        key: &str,
        raw: Option<String>,
        default: Duration,
        longest: Duration,
        longest_text: &str,
    ) -> Duration {
        let Some(text) = raw else {
            return default;
        };
        match humantime::parse_duration(text.trim()) {
            Ok(duration) if duration.is_zero() => {
                self.problem(key, "must be longer than zero");
                default
            }
            Ok(duration) if duration > longest => {
                self.problem(
                    key,
                    format!(
                        "`{}` is longer than the {longest_text} this setting allows",
                        quoted(&text)
                    ),
                );
                default
            }
            Ok(duration) => duration,
            Err(error) => {
                self.problem(
                    key,
                    format!(
                        "`{}` is not a duration ({error}); write a number and a unit, such as 500ms, 5s or 1m",
                        quoted(&text)
                    ),
                );
                default
            }
        }
    }

    pub(super) fn number(
        &mut self,
        key: &str,
        raw: Option<u64>,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> usize {
        let Some(value) = raw else {
            return default;
        };
        match usize::try_from(value) {
            Ok(value) if range.contains(&value) => value,
            _ => {
                self.problem(
                    key,
                    format!(
                        "{value} is out of range; it must be from {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        }
    }
}
