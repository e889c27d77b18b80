//! A problem found in a configuration file, and how problems are shown: file, line, column
//! and key, with values that may be secrets never echoed.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::secrets::quoted;

/// One thing wrong with a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Path of the key, such as `flows[0].max_batch_age`; empty for the whole file.
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|problem| ProblemAt { path, problem }.to_string())
        .collect();
    lines.join("\n")
}

pub(super) struct ProblemAt<'a> {
    pub(super) path: &'a Path,
    pub(super) problem: &'a Problem,
}

impl fmt::Display for ProblemAt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.problem.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.problem.column {
                write!(f, ":{column}")?;
            }
        }
        if self.problem.key.is_empty() {
            write!(f, ": {}", self.problem.message)
        } else {
            write!(f, ": {}: {}", self.problem.key, self.problem.message)
        }
    }
}

/// `message` with every value serde quoted in it (`"..."` or `` `...` ``) shown as
/// [`quoted`] shows it, so that a secret in the wrong place is not echoed.
pub(super) fn quote_values_in(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let mark = &rest[open..open + 1];
        let Some(length) = rest[open + 1..].find(mark) else {
            break;
        };
        let inner = &rest[open + 1..open + 1 + length];
        out.push_str(&rest[..open + 1]);
        out.push_str(&quoted(inner));
        out.push_str(mark);
        rest = &rest[open + 2 + length..];
    }
    out.push_str(rest);
    out
}
