//! Checks each flow's `processors` list into the plain specs the pipeline builds from: one
//! check per processor type.

use std::time::Duration;

use super::checker::Checker;
use super::raw::{OneOrMany, RawProcessor, RawRedactPattern};
use crate::secrets::quoted;

use super::processor_spec::{
    BuiltinRedaction, Ec2Settings, LineParser, LogLineFormat, OnError, ProcessorSpec, RedactRule,
};

/// What a redaction writes in place of what it found, unless told otherwise.
const DEFAULT_REPLACEMENT: &str = "[REDACTED]";
/// How often `add_ec2_metadata` reads the metadata again, unless told: hourly, at most every
/// minute.
const DEFAULT_EC2_METADATA_REFRESH: Duration = Duration::from_secs(3600);
const MIN_EC2_METADATA_REFRESH: Duration = Duration::from_secs(60);

impl Checker<'_> {
    pub(super) fn processors(
        &mut self,
        flow_key: &str,
        raw: Option<Vec<Option<RawProcessor>>>,
        on_error: Option<String>,
        allow_insecure_http: bool,
    ) -> (Vec<ProcessorSpec>, OnError) {
        let on_error = match on_error.as_deref() {
            None | Some("send_raw") => OnError::SendRaw,
            Some("drop") => OnError::Drop,
            Some(other) => {
                self.problem(
                    &format!("{flow_key}.on_error"),
                    format!("`{}` is not one of send_raw, drop", quoted(other)),
                );
                OnError::SendRaw
            }
        };
        let processors = raw
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            // A hole is a processor the schema's pass reported (no type, or an unknown one).
            .filter_map(|(index, raw)| {
                self.processor(
                    &format!("{flow_key}.processors[{index}]"),
                    raw?,
                    allow_insecure_http,
                )
            })
            .collect();
        (processors, on_error)
    }

    fn processor(
        &mut self,
        key: &str,
        raw: RawProcessor,
        allow_insecure_http: bool,
    ) -> Option<ProcessorSpec> {
        match raw {
            RawProcessor::SingleLine {
                no_trim,
                escape_newlines,
                separator,
            } => self.single_line(key, no_trim, escape_newlines, separator),
            RawProcessor::CsvToJson {
                field_names,
                delimiter,
            } => self.csv_to_json(key, field_names, delimiter),
            RawProcessor::LogToJson {
                format,
                pattern,
                field_names,
                dash_as_null,
            } => self.log_to_json(key, format, pattern, field_names, dash_as_null),
            RawProcessor::Filter { include, exclude } => self.filter(key, include, exclude),
            RawProcessor::Redact {
                builtin,
                replacement,
                patterns,
            } => self.redact(key, builtin, replacement, patterns),
            RawProcessor::AddEc2Metadata {
                refresh,
                tags,
                endpoint,
                ec2_endpoint,
            } => self.add_ec2_metadata(
                key,
                refresh,
                tags,
                endpoint,
                (ec2_endpoint, allow_insecure_http),
            ),
            RawProcessor::AddMetadata {
                timestamp,
                fields,
                host,
                file,
                record_id,
                envelope,
            } => Some(self.add_metadata(
                key,
                timestamp,
                fields,
                MetadataSwitches {
                    host,
                    file,
                    record_id,
                    envelope,
                },
            )),
        }
    }

    /// `single_line`: `separator` or `escape_newlines`, not both.
    fn single_line(
        &mut self,
        key: &str,
        no_trim: Option<bool>,
        escape_newlines: Option<bool>,
        separator: Option<String>,
    ) -> Option<ProcessorSpec> {
        let separator = match (escape_newlines, separator) {
            (Some(true), Some(_)) => {
                self.problem(
                    &format!("{key}.separator"),
                    "give separator or escape_newlines, not both",
                );
                return None;
            }
            (Some(true), None) => "\\n".to_owned(),
            (_, separator) => separator.unwrap_or_default(),
        };
        Some(ProcessorSpec::SingleLine {
            trim: !no_trim.unwrap_or(false),
            separator,
        })
    }

    /// `csv_to_json`: field names, and a one-character delimiter.
    fn csv_to_json(
        &mut self,
        key: &str,
        field_names: Option<Vec<String>>,
        delimiter: Option<String>,
    ) -> Option<ProcessorSpec> {
        let field_names = self.field_names(key, field_names)?;
        let delimiter = match delimiter.as_deref() {
            None => b',',
            Some("\\t") => b'\t',
            Some(text) if text.len() == 1 && text != "\"" && text != "\n" => text.as_bytes()[0],
            Some(text) => {
                self.problem(
                    &format!("{key}.delimiter"),
                    format!(
                        "`{}` is not one character (such as , ; | or \\t for a tab), other than a quote or a newline",
                        quoted(text)
                    ),
                );
                return None;
            }
        };
        Some(ProcessorSpec::CsvToJson {
            field_names,
            delimiter,
        })
    }

    /// `log_to_json`: a known format or a pattern, with one field name per group.
    fn log_to_json(
        &mut self,
        key: &str,
        format: Option<String>,
        pattern: Option<String>,
        field_names: Option<Vec<String>>,
        dash_as_null: Option<bool>,
    ) -> Option<ProcessorSpec> {
        let (parser, default_names) = self.log_parser(key, format, pattern)?;
        let dash_as_null = dash_as_null.unwrap_or(match &parser {
            LineParser::Format(format) => format.dash_as_null(),
            LineParser::Pattern(_) => false,
        });
        let field_names = match (field_names, default_names) {
            (Some(names), _) => names,
            (None, Some(defaults)) => defaults.iter().map(|name| (*name).to_owned()).collect(),
            (None, None) => {
                self.problem(
                    &format!("{key}.field_names"),
                    "is required with a pattern, one name per group",
                );
                return None;
            }
        };
        if field_names.len() != parser.groups() {
            self.problem(
                &format!("{key}.field_names"),
                format!(
                    "names {} fields, but the pattern has {} groups",
                    field_names.len(),
                    parser.groups()
                ),
            );
            return None;
        }
        Some(ProcessorSpec::LogToJson {
            parser,
            field_names,
            dash_as_null,
        })
    }

    /// `log_to_json`'s `format` or `pattern`, exactly one; with a format, its field names.
    fn log_parser(
        &mut self,
        key: &str,
        format: Option<String>,
        pattern: Option<String>,
    ) -> Option<(LineParser, Option<&'static [&'static str]>)> {
        let parser = match (format, pattern) {
            (Some(_), Some(_)) => {
                self.problem(key, "give format or pattern, not both");
                return None;
            }
            (None, None) => {
                let reported = self.rejected(&format!("{key}.format"))
                    || self.rejected(&format!("{key}.pattern"));
                if !reported {
                    self.problem(
                        &format!("{key}.format"),
                        "is required (or a pattern with field_names)",
                    );
                }
                return None;
            }
            (Some(name), None) => match LogLineFormat::named(&name) {
                Some(known) => (LineParser::Format(known), Some(known.field_names())),
                None => {
                    let known: Vec<&str> =
                        LogLineFormat::ALL.iter().map(|(name, _)| *name).collect();
                    self.problem(
                        &format!("{key}.format"),
                        format!("`{}` is not one of {}", quoted(&name), known.join(", ")),
                    );
                    return None;
                }
            },
            (None, Some(text)) => match LineParser::pattern(&text) {
                Ok(parser) => (parser, None),
                Err(error) => {
                    let message = error.to_string();
                    let reason = message.lines().last().unwrap_or_default().trim().to_owned();
                    self.problem(
                        &format!("{key}.pattern"),
                        format!(
                            "`{}` is not a valid regular expression: {}",
                            quoted(&text),
                            reason.strip_prefix("error: ").unwrap_or(&reason)
                        ),
                    );
                    return None;
                }
            },
        };
        Some(parser)
    }

    /// `filter`: include or exclude patterns, or both.
    fn filter(
        &mut self,
        key: &str,
        include: Option<OneOrMany>,
        exclude: Option<OneOrMany>,
    ) -> Option<ProcessorSpec> {
        if include.is_none() && exclude.is_none() {
            let reported = self.rejected(&format!("{key}.include"))
                || self.rejected(&format!("{key}.exclude"));
            if !reported {
                self.problem(key, "a filter needs include or exclude patterns");
            }
            return None;
        }
        let mut compile = |name: &str, list: Option<OneOrMany>| {
            list.map(OneOrMany::into_vec)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .filter_map(|(index, text)| self.pattern(&format!("{key}.{name}[{index}]"), text))
                .collect::<Vec<_>>()
        };
        let include = compile("include", include);
        let exclude = compile("exclude", exclude);
        Some(ProcessorSpec::Filter { include, exclude })
    }

    /// `redact`: built-in detectors and patterns of one's own, at least one.
    fn redact(
        &mut self,
        key: &str,
        builtin: Option<OneOrMany>,
        replacement: Option<String>,
        patterns: Option<Vec<Option<RawRedactPattern>>>,
    ) -> Option<ProcessorSpec> {
        let replacement = replacement.unwrap_or_else(|| DEFAULT_REPLACEMENT.to_owned());
        let mut rules = Vec::new();
        for (index, name) in builtin
            .map(OneOrMany::into_vec)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            match BuiltinRedaction::named(&name) {
                Some(kind) => rules.push(RedactRule::Builtin {
                    kind,
                    replacement: replacement.clone(),
                }),
                None => {
                    let known: Vec<&str> = BuiltinRedaction::ALL
                        .iter()
                        .map(|(name, _)| *name)
                        .collect();
                    self.problem(
                        &format!("{key}.builtin[{index}]"),
                        format!("`{}` is not one of {}", quoted(&name), known.join(", ")),
                    );
                }
            }
        }
        let patterns = patterns.unwrap_or_default();
        // A hole is a pattern the schema's pass reported (not a mapping).
        let mut reported = patterns.iter().any(Option::is_none)
            || self.rejected(&format!("{key}.builtin"))
            || self.rejected(&format!("{key}.patterns"));
        for (index, raw_pattern) in patterns.into_iter().enumerate() {
            let Some(RawRedactPattern {
                pattern,
                replacement: own,
            }) = raw_pattern
            else {
                continue;
            };
            let pattern_key = format!("{key}.patterns[{index}]");
            let Some(pattern) = pattern else {
                reported = true;
                self.problem(
                    &format!("{pattern_key}.pattern"),
                    "is missing; give the regular expression to redact",
                );
                continue;
            };
            if let Some(pattern) = self.pattern(&format!("{pattern_key}.pattern"), pattern) {
                rules.push(RedactRule::Custom {
                    pattern,
                    replacement: own.unwrap_or_else(|| replacement.clone()),
                });
            }
        }
        if rules.is_empty() {
            if !reported {
                self.problem(key, "a redact processor needs builtin or patterns");
            }
            return None;
        }
        Some(ProcessorSpec::Redact { rules })
    }

    /// `add_ec2_metadata`: read again every `refresh`, at least a minute; `DescribeTags` sent
    /// over https://, or plain http:// to this machine or where the flow's aws block allows it.
    fn add_ec2_metadata(
        &mut self,
        key: &str,
        refresh: Option<String>,
        tags: Option<bool>,
        endpoint: Option<String>,
        (ec2_endpoint, allow_insecure_http): (Option<String>, bool),
    ) -> Option<ProcessorSpec> {
        let refresh = self.long_duration(
            &format!("{key}.refresh"),
            refresh,
            DEFAULT_EC2_METADATA_REFRESH,
        );
        if refresh < MIN_EC2_METADATA_REFRESH {
            self.problem(&format!("{key}.refresh"), "must be at least 1m");
        }
        if let Some(url) = &ec2_endpoint {
            self.endpoint(&format!("{key}.ec2_endpoint"), url, allow_insecure_http);
        }
        Some(ProcessorSpec::AddEc2Metadata(Ec2Settings {
            refresh,
            tags: tags.unwrap_or(false),
            endpoint,
            ec2_endpoint,
        }))
    }

    /// `add_metadata`: fixed fields must be written as JSON; the rest are switches.
    fn add_metadata(
        &mut self,
        key: &str,
        timestamp: Option<bool>,
        fields: Option<serde_yaml::Mapping>,
        switches: MetadataSwitches,
    ) -> ProcessorSpec {
        let mut converted = Vec::new();
        for (name, value) in fields.unwrap_or_default() {
            let Some(name) = name.as_str().map(ToOwned::to_owned) else {
                self.problem(&format!("{key}.fields"), "field names must be strings");
                continue;
            };
            match serde_json::to_value(&value) {
                Ok(value) => converted.push((name, value)),
                Err(error) => self.problem(
                    &format!("{key}.fields.{}", quoted(&name)),
                    format!("cannot be written as JSON: {error}"),
                ),
            }
        }
        ProcessorSpec::AddMetadata {
            timestamp: timestamp.unwrap_or(false),
            fields: converted,
            host: switches.host.unwrap_or(false),
            file: switches.file.unwrap_or(false),
            record_id: switches.record_id.unwrap_or(false),
            envelope: switches.envelope.unwrap_or(false),
        }
    }

    /// A converter's `field_names`: required, not empty, each unique.
    fn field_names(&mut self, key: &str, names: Option<Vec<String>>) -> Option<Vec<String>> {
        let names = names.unwrap_or_default();
        if names.is_empty() {
            self.problem(
                &format!("{key}.field_names"),
                "is required: one name per column",
            );
            return None;
        }
        for (index, name) in names.iter().enumerate() {
            if names[..index].contains(name) {
                self.problem(
                    &format!("{key}.field_names[{index}]"),
                    format!("`{}` is named twice", quoted(name)),
                );
                return None;
            }
        }
        Some(names)
    }
}

/// `add_metadata`'s switches, as written (unset is off).
struct MetadataSwitches {
    host: Option<bool>,
    file: Option<bool>,
    record_id: Option<bool>,
    envelope: Option<bool>,
}
