//! `filter`: keeps records that match any `include` pattern (all, when there is none) and no
//! `exclude` pattern. Patterns are searched anywhere in the record, as read.

use bytes::Bytes;

use super::Outcome;
use crate::pattern::Pattern;

#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    pub include: Vec<Pattern>,
    pub exclude: Vec<Pattern>,
}

impl Filter {
    pub fn apply(&self, record: Bytes) -> Outcome {
        let included = self.include.is_empty()
            || self
                .include
                .iter()
                .any(|pattern| pattern.regex.is_match(&record));
        let excluded = self
            .exclude
            .iter()
            .any(|pattern| pattern.regex.is_match(&record));
        if included && !excluded {
            Outcome::Keep(record)
        } else {
            Outcome::Filtered
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::processors::testing::pattern;

    fn kept(filter: &Filter, line: &'static str) -> bool {
        matches!(
            filter.apply(Bytes::from_static(line.as_bytes())),
            Outcome::Keep(_)
        )
    }

    #[test]
    fn include_then_exclude() {
        let filter = Filter {
            include: vec![pattern(" (ERROR|WARN) "), pattern("^audit")],
            exclude: vec![pattern("healthcheck")],
        };
        assert!(kept(&filter, "2024-01-01 ERROR disk full\n"));
        assert!(kept(&filter, "audit user=1\n"));
        assert!(!kept(&filter, "2024-01-01 INFO all fine\n"));
        assert!(!kept(&filter, "2024-01-01 WARN healthcheck slow\n"));
        let only_exclude = Filter {
            include: vec![],
            exclude: vec![pattern("^DEBUG")],
        };
        assert!(kept(&only_exclude, "INFO x\n"));
        assert!(!kept(&only_exclude, "DEBUG x\n"));
        // Not UTF-8: still filtered by bytes.
        assert!(matches!(
            only_exclude.apply(Bytes::from_static(b"INFO \xff\n")),
            Outcome::Keep(_)
        ));
    }
}
