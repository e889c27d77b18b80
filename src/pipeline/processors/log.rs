//! `log_to_json`: a log line parsed by a known format (the Kinesis Agent's LOGTOJSON formats,
//! with the same field names) or by a pattern of one's own, written as a JSON object of
//! strings. A line the pattern does not match whole cannot be parsed.

use std::sync::LazyLock;

use bytes::Bytes;
use regex::bytes::Regex;

use super::json::{Object, Value};
use super::{split_line_end, Outcome};
use crate::config::LineParser;
pub use crate::config::LogLineFormat as LogFormat;

impl LogFormat {
    fn regex(self) -> &'static Regex {
        static COMMON: LazyLock<Regex> = LazyLock::new(|| compile(&common(false)));
        static COMBINED: LazyLock<Regex> = LazyLock::new(|| compile(&common(true)));
        static ERROR: LazyLock<Regex> = LazyLock::new(|| {
            compile(&format!(
                r"\[({DAY}\s+{MONTH}\s+{MONTHDAY}\s+{TIME}\s+{YEAR})\] \[(?:(\w+):)?(\w+)\] \[pid ([0-9]+)(?::tid ([0-9]+))?\] \[client ({IPORHOST}(?::[1-9][0-9]*)?)\] (.*)"
            ))
        });
        static SYSLOG: LazyLock<Regex> =
            LazyLock::new(|| compile(&syslog(&format!(r"{MONTH}\s+{MONTHDAY}\s+{TIME}"))));
        static RFC3339: LazyLock<Regex> = LazyLock::new(|| {
            compile(&syslog(
                r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[-+][0-9]{2}:[0-9]{2})",
            ))
        });
        match self {
            LogFormat::CommonApache => &COMMON,
            LogFormat::CombinedApache => &COMBINED,
            LogFormat::ApacheError => &ERROR,
            LogFormat::Syslog => &SYSLOG,
            LogFormat::Rfc3339Syslog => &RFC3339,
        }
    }
}

// The building blocks of the formats, ASCII only, as the Kinesis Agent's patterns are.
/// A host name or an IP address.
const IPORHOST: &str = r"(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|[0-9.]+)";
const USER: &str = r"[a-zA-Z0-9._-]+";
const MONTH: &str = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?|Sep(?:tember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)";
const MONTHDAY: &str = r"(?:0[1-9]|[12][0-9]|3[01]|[1-9])";
const DAY: &str = r"(?:Mon(?:day)?|Tue(?:sday)?|Wed(?:nesday)?|Thu(?:rsday)?|Fri(?:day)?|Sat(?:urday)?|Sun(?:day)?)";
const YEAR: &str = r"[1-9][0-9]*";
const TIME: &str = r"(?:2[0123]|[01]?[0-9]):[0-5][0-9]:(?:(?:[0-5]?[0-9]|60)(?:[:.,][0-9]+)?)";
const INT: &str = r"[+-]?[0-9]+";

fn common(combined: bool) -> String {
    let tail = if combined {
        r#" "([^"]+)" "([^"]+)""#
    } else {
        ""
    };
    format!(
        r#"({IPORHOST}) ({USER}) ({USER}) \[({MONTHDAY}/{MONTH}/{YEAR}:{TIME}\s{INT})\] "([^"]+)" ({INT}|-) ({INT}|-){tail}.*"#
    )
}

fn syslog(timestamp: &str) -> String {
    format!(r"({timestamp}) (?:<[0-9]+.[0-9]+> )?({USER}) ([\w._/%-]+)(?:\[([1-9][0-9]*)\])?: (.*)")
}

/// Anchors `pattern` to the whole line; ASCII classes and no `.` across lines.
fn compile(pattern: &str) -> Regex {
    // The format patterns are fixed and tested; a failure here is a defect in this file.
    #[allow(clippy::expect_used)]
    Regex::new(&format!(r"(?-u)\A(?:{pattern})\z")).expect("a log format pattern compiles")
}

/// How a `log_to_json` processor parses lines.
#[derive(Clone, Debug)]
pub enum Parser {
    Format(LogFormat),
    /// A pattern of one's own, matched against the whole line, one field per group.
    Pattern {
        regex: Regex,
    },
}

impl Parser {
    /// A pattern of one's own, anchored to the whole line.
    #[cfg(test)]
    pub fn pattern(text: &str) -> Result<Parser, regex::Error> {
        LineParser::pattern(text).map(|spec| Parser::from_spec(&spec))
    }

    /// The parser a flow's `log_to_json` spec names.
    pub fn from_spec(spec: &LineParser) -> Parser {
        match spec {
            LineParser::Format(format) => Parser::Format(*format),
            LineParser::Pattern(pattern) => Parser::Pattern {
                regex: pattern.regex.clone(),
            },
        }
    }

    /// How many fields a match gives.
    #[cfg(test)]
    pub fn groups(&self) -> usize {
        match self {
            Parser::Format(format) => format.regex().captures_len() - 1,
            Parser::Pattern { regex } => regex.captures_len() - 1,
        }
    }
}

#[derive(Clone, Debug)]
pub struct LogToJson {
    pub parser: Parser,
    /// One per group of the parser's pattern.
    pub field_names: Vec<String>,
    /// A field that is exactly `-` becomes `null` (Apache logs write `-` for a missing value).
    pub dash_as_null: bool,
}

impl LogToJson {
    pub fn apply(&self, record: Bytes) -> Outcome {
        let (body, line_end) = split_line_end(&record);
        let regex = match &self.parser {
            Parser::Format(format) => format.regex(),
            Parser::Pattern { regex } => regex,
        };
        let Some(found) = regex.captures(body) else {
            return Outcome::Unparsable("log_to_json: the line does not match the format".into());
        };
        let Ok(_) = std::str::from_utf8(body) else {
            return Outcome::Unparsable("log_to_json: the line is not UTF-8".into());
        };
        let mut object = Object::default();
        for (index, name) in self.field_names.iter().enumerate() {
            let text = found
                .get(index + 1)
                .and_then(|group| std::str::from_utf8(group.as_bytes()).ok());
            let value = match text {
                Some("-") if self.dash_as_null => Value::Null,
                Some(text) => Value::Text(text),
                None => Value::Null,
            };
            object.push(name, value);
        }
        Outcome::Keep(object.into_record(line_end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(format: LogFormat) -> LogToJson {
        LogToJson {
            parser: Parser::Format(format),
            field_names: format
                .field_names()
                .iter()
                .map(|name| name.to_string())
                .collect(),
            dash_as_null: format.dash_as_null(),
        }
    }

    fn kept(outcome: Outcome) -> String {
        match outcome {
            Outcome::Keep(bytes) => String::from_utf8(bytes.to_vec()).expect("utf-8"),
            other => panic!("{other:?}"),
        }
    }

    fn parse(converter: &LogToJson, line: &'static str) -> Outcome {
        converter.apply(Bytes::from_static(line.as_bytes()))
    }

    #[test]
    fn every_format_has_as_many_groups_as_fields() {
        for (_, known) in LogFormat::ALL {
            assert_eq!(
                Parser::Format(known).groups(),
                known.field_names().len(),
                "{known:?}"
            );
        }
    }

    #[test]
    fn apache_common_and_combined_with_dashes_as_null() {
        let line = "123.45.67.89 - - [27/Oct/2000:09:27:09 -0400] \"GET /java/javaResources.html HTTP/1.0\" 200 10450 \"-\" \"Mozilla/4.6 [en] (X11; U; OpenBSD 2.8 i386; Nav)\"\n";
        assert_eq!(
            kept(format(LogFormat::CombinedApache).apply(Bytes::from_static(line.as_bytes()))),
            "{\"host\":\"123.45.67.89\",\"ident\":null,\"authuser\":null,\"datetime\":\"27/Oct/2000:09:27:09 -0400\",\"request\":\"GET /java/javaResources.html HTTP/1.0\",\"response\":\"200\",\"bytes\":\"10450\",\"referer\":null,\"agent\":\"Mozilla/4.6 [en] (X11; U; OpenBSD 2.8 i386; Nav)\"}\n"
        );
        // A combined line is also a common one (anything may follow).
        assert_eq!(
            kept(format(LogFormat::CommonApache).apply(Bytes::from_static(line.as_bytes()))),
            "{\"host\":\"123.45.67.89\",\"ident\":null,\"authuser\":null,\"datetime\":\"27/Oct/2000:09:27:09 -0400\",\"request\":\"GET /java/javaResources.html HTTP/1.0\",\"response\":\"200\",\"bytes\":\"10450\"}\n"
        );
        assert_eq!(
            kept(parse(
                &format(LogFormat::CommonApache),
                "web-1.example.com frank alice [10/Oct/2000:13:55:36 -0700] \"GET /a.gif HTTP/1.0\" 304 -\n"
            )),
            "{\"host\":\"web-1.example.com\",\"ident\":\"frank\",\"authuser\":\"alice\",\"datetime\":\"10/Oct/2000:13:55:36 -0700\",\"request\":\"GET /a.gif HTTP/1.0\",\"response\":\"304\",\"bytes\":null}\n"
        );
        // An empty request or referer does not match.
        assert!(matches!(
            parse(
                &format(LogFormat::CommonApache),
                "1.2.3.4 - - [27/Oct/2000:09:27:09 -0400] \"\" 400 0\n"
            ),
            Outcome::Unparsable(_)
        ));
        assert!(matches!(
            parse(
                &format(LogFormat::CombinedApache),
                "1.2.3.4 - - [27/Oct/2000:09:27:09 -0400] \"GET / HTTP/1.1\" 200 5 \"\" \"curl\"\n"
            ),
            Outcome::Unparsable(_)
        ));
        assert!(matches!(
            parse(&format(LogFormat::CommonApache), "not a log line\n"),
            Outcome::Unparsable(_)
        ));
    }

    #[test]
    fn apache_error_log() {
        assert_eq!(
            kept(parse(
                &format(LogFormat::ApacheError),
                "[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187:12345] File does not exist: /usr/local/apache2/htdocs/favicon.ico\n"
            )),
            "{\"timestamp\":\"Fri Sep 09 10:42:29.902022 2011\",\"module\":\"core\",\"severity\":\"error\",\"processid\":\"35708\",\"threadid\":\"4328636416\",\"client\":\"72.15.99.187:12345\",\"message\":\"File does not exist: /usr/local/apache2/htdocs/favicon.ico\"}\n"
        );
        assert_eq!(
            kept(parse(
                &format(LogFormat::ApacheError),
                "[Mon Dec 01 10:00:00 2014] [error] [pid 12] [client 10.0.0.1] boom\n"
            )),
            "{\"timestamp\":\"Mon Dec 01 10:00:00 2014\",\"module\":null,\"severity\":\"error\",\"processid\":\"12\",\"threadid\":null,\"client\":\"10.0.0.1\",\"message\":\"boom\"}\n"
        );
    }

    #[test]
    fn syslog_and_rfc3339_syslog_keep_dashes() {
        assert_eq!(
            kept(parse(
                &format(LogFormat::Syslog),
                "Mar 12 12:01:02 server4 snort: Ports to scan - 22  \n"
            )),
            "{\"timestamp\":\"Mar 12 12:01:02\",\"hostname\":\"server4\",\"program\":\"snort\",\"processid\":null,\"message\":\"Ports to scan - 22  \"}\n"
        );
        assert_eq!(
            kept(parse(
                &format(LogFormat::Rfc3339Syslog),
                "2024-02-03T04:05:06.789+01:00 web-1 sshd[4242]: -\n"
            )),
            "{\"timestamp\":\"2024-02-03T04:05:06.789+01:00\",\"hostname\":\"web-1\",\"program\":\"sshd\",\"processid\":\"4242\",\"message\":\"-\"}\n"
        );
    }

    #[test]
    fn a_pattern_of_ones_own() {
        let custom = LogToJson {
            parser: Parser::pattern(r"(\w+)=(\d+)(?: (.*))?").expect("pattern"),
            field_names: vec!["key".into(), "value".into(), "rest".into()],
            dash_as_null: false,
        };
        assert_eq!(custom.parser.groups(), 3);
        assert_eq!(
            kept(parse(&custom, "size=42\r\n")),
            "{\"key\":\"size\",\"value\":\"42\",\"rest\":null}\r\n"
        );
        assert!(matches!(
            parse(&custom, "size=42x\n"),
            Outcome::Unparsable(_)
        ));
    }

    #[test]
    fn a_pattern_turns_dashes_into_null_when_asked() {
        let pattern = r"(\S+) (\S+) (.*)";
        let mut custom = LogToJson {
            parser: Parser::pattern(pattern).expect("pattern"),
            field_names: vec!["a".into(), "b".into(), "c".into()],
            dash_as_null: true,
        };
        // Only a field that is exactly `-`.
        assert_eq!(
            kept(parse(&custom, "x - -1 -\n")),
            "{\"a\":\"x\",\"b\":null,\"c\":\"-1 -\"}\n"
        );
        custom.dash_as_null = false;
        assert_eq!(
            kept(parse(&custom, "x - -\n")),
            "{\"a\":\"x\",\"b\":\"-\",\"c\":\"-\"}\n"
        );
    }
}
