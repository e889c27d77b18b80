//! What a flow's `processors` list says, checked: plain settings the pipeline builds its
//! processors from. Patterns are compiled here (a bad one is a config error), nothing else is
//! prepared: no caches, no resolved host names.

use std::time::Duration;

use crate::pattern::Pattern;

/// One entry of a flow's `processors` list.
#[derive(Clone, Debug, PartialEq)]
pub enum ProcessorSpec {
    /// `single_line`: joins the lines of a multi-line record.
    SingleLine {
        /// Trim each line of spaces and control characters at both ends.
        trim: bool,
        /// What goes between the lines.
        separator: String,
    },
    /// `csv_to_json`: a CSV line as a JSON object.
    CsvToJson {
        field_names: Vec<String>,
        delimiter: u8,
    },
    /// `log_to_json`: a log line parsed by a known format or a pattern, as a JSON object.
    LogToJson {
        parser: LineParser,
        /// One per group of the parser.
        field_names: Vec<String>,
        /// A field that is exactly `-` becomes `null`.
        dash_as_null: bool,
    },
    /// `filter`: keeps records that match any `include` pattern and no `exclude` pattern.
    Filter {
        include: Vec<Pattern>,
        exclude: Vec<Pattern>,
    },
    /// `redact`: replaces what the rules find, in order.
    Redact { rules: Vec<RedactRule> },
    /// `add_metadata`: adds fields to each record.
    AddMetadata {
        /// Add the time the record was processed.
        timestamp: bool,
        /// Fixed fields, in the order written.
        fields: Vec<(String, serde_json::Value)>,
        /// Add this host's name.
        host: bool,
        /// Add the path of the file the record was read from.
        file: bool,
        /// Add the record's stable id.
        record_id: bool,
        /// Wrap the record instead of adding keys to it.
        envelope: bool,
    },
    /// `add_ec2_metadata`: adds the EC2 instance's identity.
    AddEc2Metadata(Ec2Settings),
}

/// What a converter does with a record it cannot parse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// Send the record as it was read (the Kinesis Agent's behaviour).
    #[default]
    SendRaw,
    Drop,
}

/// The log formats `log_to_json` knows (the Kinesis Agent's LOGTOJSON formats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLineFormat {
    CommonApache,
    CombinedApache,
    ApacheError,
    Syslog,
    Rfc3339Syslog,
}

impl LogLineFormat {
    pub const ALL: [(&'static str, LogLineFormat); 5] = [
        ("common_apache", LogLineFormat::CommonApache),
        ("combined_apache", LogLineFormat::CombinedApache),
        ("apache_error", LogLineFormat::ApacheError),
        ("syslog", LogLineFormat::Syslog),
        ("rfc3339_syslog", LogLineFormat::Rfc3339Syslog),
    ];

    pub fn named(name: &str) -> Option<LogLineFormat> {
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, format)| *format)
    }

    /// Whether a field that is exactly `-` becomes `null` unless `dash_as_null` says otherwise:
    /// the Kinesis Agent's Apache parser does this (for its own patterns and for a
    /// `matchPattern` given with an Apache `logFormat`), its syslog parser does not.
    pub fn dash_as_null(self) -> bool {
        matches!(
            self,
            LogLineFormat::CommonApache
                | LogLineFormat::CombinedApache
                | LogLineFormat::ApacheError
        )
    }

    /// The field names, in order, as the Kinesis Agent writes them: one per group of the
    /// format's pattern.
    pub fn field_names(self) -> &'static [&'static str] {
        const COMMON: &[&str] = &[
            "host", "ident", "authuser", "datetime", "request", "response", "bytes",
        ];
        const COMBINED: &[&str] = &[
            "host", "ident", "authuser", "datetime", "request", "response", "bytes", "referer",
            "agent",
        ];
        const ERROR: &[&str] = &[
            "timestamp",
            "module",
            "severity",
            "processid",
            "threadid",
            "client",
            "message",
        ];
        const SYSLOG: &[&str] = &["timestamp", "hostname", "program", "processid", "message"];
        match self {
            LogLineFormat::CommonApache => COMMON,
            LogLineFormat::CombinedApache => COMBINED,
            LogLineFormat::ApacheError => ERROR,
            LogLineFormat::Syslog | LogLineFormat::Rfc3339Syslog => SYSLOG,
        }
    }
}

/// How `log_to_json` parses lines.
#[derive(Clone, Debug, PartialEq)]
pub enum LineParser {
    Format(LogLineFormat),
    /// A pattern of one's own, anchored to the whole line (its text as written), one field per
    /// group.
    Pattern(Pattern),
}

impl LineParser {
    /// A pattern of one's own, anchored to the whole line.
    pub fn pattern(text: &str) -> Result<LineParser, regex::Error> {
        let regex = regex::bytes::Regex::new(&format!(r"\A(?:{text})\z"))?;
        Ok(LineParser::Pattern(Pattern {
            text: text.to_owned(),
            regex,
        }))
    }

    /// How many fields a match gives.
    pub fn groups(&self) -> usize {
        match self {
            LineParser::Format(format) => format.field_names().len(),
            LineParser::Pattern(pattern) => pattern.regex.captures_len() - 1,
        }
    }
}

/// The detectors `redact` has built in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinRedaction {
    Email,
    /// US social security numbers written `AAA-GG-SSSS`, with the numbers never issued left
    /// alone (area 000, 666 or 9xx, group 00, serial 0000).
    UsSsn,
    /// Payment card numbers: 13 to 19 digits, optionally grouped by spaces or dashes, that
    /// pass the Luhn check.
    CardNumber,
    /// AWS access key ids (`AKIA…`, `ASIA…` and the other principal prefixes).
    AwsAccessKeyId,
    /// AWS secret access keys: 40 characters of base64 after a name that says so
    /// (`aws_secret_access_key=`, `SecretAccessKey":"`); only the key is replaced.
    AwsSecretKey,
    /// `Bearer <token>` (an `Authorization` header's value); `Bearer` is kept.
    BearerToken,
}

impl BuiltinRedaction {
    pub const ALL: [(&'static str, BuiltinRedaction); 6] = [
        ("email", BuiltinRedaction::Email),
        ("us_ssn", BuiltinRedaction::UsSsn),
        ("card_number", BuiltinRedaction::CardNumber),
        ("aws_access_key_id", BuiltinRedaction::AwsAccessKeyId),
        ("aws_secret_key", BuiltinRedaction::AwsSecretKey),
        ("bearer_token", BuiltinRedaction::BearerToken),
    ];

    pub fn named(name: &str) -> Option<BuiltinRedaction> {
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, builtin)| *builtin)
    }
}

/// One thing to redact.
#[derive(Clone, Debug, PartialEq)]
pub enum RedactRule {
    Builtin {
        kind: BuiltinRedaction,
        replacement: String,
    },
    /// The user's pattern; `replacement` may name groups (`$1`, `${name}`).
    Custom {
        pattern: Pattern,
        replacement: String,
    },
}

/// How a flow's `add_ec2_metadata` reads the metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ec2Settings {
    /// How long the metadata is kept before it is read again (the agent's metadataTTL).
    pub refresh: Duration,
    /// Add the instance's tags: from `ec2:DescribeTags`, else from the instance metadata.
    pub tags: bool,
    /// The metadata service's address; the AWS SDK's default (or
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT`) when `None`.
    pub endpoint: Option<String>,
    /// Where `DescribeTags` is sent; the EC2 endpoint of the instance's region when `None`.
    pub ec2_endpoint: Option<String>,
}
