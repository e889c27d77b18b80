//! `redact`: replaces what patterns match, the user's own and built-in ones for common
//! secrets and personal data. A record with nothing to redact is passed on without a copy.

use std::sync::LazyLock;

use bytes::Bytes;
use regex::bytes::{Captures, Regex, RegexSet};

pub use crate::config::{BuiltinRedaction as Builtin, RedactRule as Rule};

impl Builtin {
    fn regex(self) -> &'static Regex {
        static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
            compile(
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}",
            )
        });
        static SSN: LazyLock<Regex> =
            LazyLock::new(|| compile(r"\b([0-9]{3})-([0-9]{2})-([0-9]{4})\b"));
        static CARD: LazyLock<Regex> = LazyLock::new(|| compile(r"\b[0-9](?:[ -]?[0-9]){12,18}\b"));
        static ACCESS_KEY: LazyLock<Regex> = LazyLock::new(|| {
            compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA)[A-Z0-9]{16}\b")
        });
        static SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
            compile(
                r#"(?i)(secret_?access_?key|aws_?secret(?:_?key)?)(["']?\s*[:=]\s*["']?)([A-Za-z0-9/+]{40})\b"#,
            )
        });
        static BEARER: LazyLock<Regex> =
            LazyLock::new(|| compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9\-._~+/]+=*"));
        match self {
            Builtin::Email => &EMAIL,
            Builtin::UsSsn => &SSN,
            Builtin::CardNumber => &CARD,
            Builtin::AwsAccessKeyId => &ACCESS_KEY,
            Builtin::AwsSecretKey => &SECRET_KEY,
            Builtin::BearerToken => &BEARER,
        }
    }

    /// The text to put in place of `found`, or `None` to leave it (a number that is not a
    /// real SSN or card number).
    fn replace(self, found: &Captures<'_>, replacement: &str) -> Option<Vec<u8>> {
        let whole = found.get(0)?.as_bytes();
        match self {
            Builtin::UsSsn => {
                let area = found.get(1)?.as_bytes();
                let group = found.get(2)?.as_bytes();
                let serial = found.get(3)?.as_bytes();
                let never_issued = area == b"000"
                    || area == b"666"
                    || area.first() == Some(&b'9')
                    || group == b"00"
                    || serial == b"0000";
                (!never_issued).then(|| replacement.as_bytes().to_vec())
            }
            Builtin::CardNumber => {
                let digits: Vec<u8> = whole
                    .iter()
                    .filter(|byte| byte.is_ascii_digit())
                    .map(|byte| byte - b'0')
                    .collect();
                ((13..=19).contains(&digits.len()) && luhn_valid(&digits))
                    .then(|| replacement.as_bytes().to_vec())
            }
            Builtin::AwsSecretKey | Builtin::BearerToken => {
                // Keep the name and separator; replace the value.
                let mut kept = found.get(1)?.as_bytes().to_vec();
                kept.extend_from_slice(found.get(2)?.as_bytes());
                kept.extend_from_slice(replacement.as_bytes());
                Some(kept)
            }
            Builtin::Email | Builtin::AwsAccessKeyId => Some(replacement.as_bytes().to_vec()),
        }
    }
}

fn compile(pattern: &str) -> Regex {
    // The built-in patterns are fixed and tested; a failure here is a defect in this file.
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("a built-in redaction pattern compiles")
}

/// The Luhn check of a card number's digits (most significant first).
fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(index, &digit)| {
            let digit = u32::from(digit);
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[derive(Clone, Debug)]
pub struct Redact {
    pub rules: Vec<Rule>,
    /// Every built-in rule's pattern, tried in one pass over the record: a record none of them
    /// matches (most records) skips the built-in rules.
    builtins: Option<RegexSet>,
}

impl Redact {
    pub fn new(rules: Vec<Rule>) -> Self {
        let patterns: Vec<&str> = rules
            .iter()
            .filter_map(|rule| match rule {
                Rule::Builtin { kind, .. } => Some(kind.regex().as_str()),
                Rule::Custom { .. } => None,
            })
            .collect();
        let builtins = (!patterns.is_empty())
            .then(|| RegexSet::new(patterns).ok())
            .flatten();
        Self { rules, builtins }
    }

    pub fn apply(&self, record: Bytes) -> Bytes {
        let any_builtin = self
            .builtins
            .as_ref()
            .is_none_or(|set| set.is_match(&record));
        let mut current = record;
        for rule in &self.rules {
            if !any_builtin && matches!(rule, Rule::Builtin { .. }) {
                continue;
            }
            if let Some(changed) = apply_rule(rule, &current) {
                current = Bytes::from(changed);
            }
        }
        current
    }
}

/// The record with `rule` applied, or `None` if nothing changed.
fn apply_rule(rule: &Rule, record: &[u8]) -> Option<Vec<u8>> {
    match rule {
        Rule::Custom {
            pattern,
            replacement,
        } => {
            if !pattern.regex.is_match(record) {
                return None;
            }
            Some(
                pattern
                    .regex
                    .replace_all(record, replacement.as_bytes())
                    .into_owned(),
            )
        }
        Rule::Builtin { kind, replacement } => {
            let regex = kind.regex();
            let mut out: Option<Vec<u8>> = None;
            let mut copied = 0;
            for found in regex.captures_iter(record) {
                let Some(whole) = found.get(0) else { continue };
                let Some(replaced) = kind.replace(&found, replacement) else {
                    continue;
                };
                let buffer = out.get_or_insert_with(|| Vec::with_capacity(record.len()));
                buffer.extend_from_slice(&record[copied..whole.start()]);
                buffer.extend_from_slice(&replaced);
                copied = whole.end();
            }
            let mut buffer = out?;
            buffer.extend_from_slice(&record[copied..]);
            Some(buffer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::Pattern;

    fn builtin(kind: Builtin, line: &str) -> String {
        let redact = Redact::new(vec![Rule::Builtin {
            kind,
            replacement: "[REDACTED]".into(),
        }]);
        String::from_utf8(redact.apply(Bytes::from(line.to_owned())).to_vec()).expect("utf-8")
    }

    #[test]
    fn emails() {
        assert_eq!(
            builtin(
                Builtin::Email,
                "from=jane.doe+logs@mail.example.co.uk to=x@y\n"
            ),
            "from=[REDACTED] to=x@y\n"
        );
    }

    #[test]
    fn ssns_that_could_be_issued() {
        assert_eq!(
            builtin(Builtin::UsSsn, "ssn 123-45-6789 id 000-12-3456 v 666-10-1000 9 900-10-1000 g 123-00-4567 s 123-45-0000 x 1234-56-7890\n"),
            "ssn [REDACTED] id 000-12-3456 v 666-10-1000 9 900-10-1000 g 123-00-4567 s 123-45-0000 x 1234-56-7890\n"
        );
    }

    #[test]
    fn card_numbers_that_pass_the_luhn_check() {
        assert_eq!(
            builtin(
                Builtin::CardNumber,
                "visa 4111 1111 1111 1111 amex 3782-822463-10005 bad 4111111111111112 order 1234567890123\n"
            ),
            "visa [REDACTED] amex [REDACTED] bad 4111111111111112 order 1234567890123\n"
        );
        assert!(luhn_valid(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
    }

    #[test]
    fn aws_keys() {
        assert_eq!(
            builtin(
                Builtin::AwsAccessKeyId,
                "key AKIAIOSFODNN7EXAMPLE temp ASIAY34FZKBOKMUTVV7A not AKIAshort\n"
            ),
            "key [REDACTED] temp [REDACTED] not AKIAshort\n"
        );
        assert_eq!(
            builtin(
                Builtin::AwsSecretKey,
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY and {\"SecretAccessKey\":\"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"}\n"
            ),
            "aws_secret_access_key = [REDACTED] and {\"SecretAccessKey\":\"[REDACTED]\"}\n"
        );
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(
            builtin(
                Builtin::BearerToken,
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_-x== next\n"
            ),
            "Authorization: Bearer [REDACTED] next\n"
        );
    }

    #[test]
    fn custom_patterns_with_groups_and_untouched_records() {
        let redact = Redact::new(vec![Rule::Custom {
            pattern: Pattern {
                text: "(user)=\\w+".into(),
                regex: Regex::new("(user)=\\w+").expect("regex"),
            },
            replacement: "$1=<hidden>".into(),
        }]);
        assert_eq!(
            redact.apply(Bytes::from_static(b"user=jane ok\n")),
            Bytes::from_static(b"user=<hidden> ok\n")
        );
        let untouched = Bytes::from_static(b"nothing here\n");
        let out = redact.apply(untouched.clone());
        assert_eq!(
            out.as_ptr(),
            untouched.as_ptr(),
            "no copy when nothing matches"
        );
    }
}
