//! A flow's `dataProcessingOptions` as kinship processors: SINGLELINE, CSVTOJSON, LOGTOJSON,
//! ADDMETADATA and ADDEC2METADATA. Any other option would change the records, so it is an
//! error, as is an option setting kinship cannot keep.

use serde_json::{Map, Value};

use super::jsonc::problem;
use super::values::{list, number, string};
use super::yaml_out::{json_quoted, quoted, yaml_list, Writer};
use super::Translation;
use crate::config::Problem;
use crate::secrets;

/// The shortest `refresh` of `add_ec2_metadata` kinship accepts, in seconds.
const MIN_EC2_METADATA_REFRESH_SECONDS: i64 = 60;

/// The `processors` list of one flow, written as its options are read.
pub(super) struct Processors<'a> {
    /// The flow's place among all the flows, for keys such as `flows[0].dataProcessingOptions[1]`.
    flow: usize,
    /// The text of the file the flow is written in, to locate problems.
    text: &'a str,
    /// The list's items, written under `processors:` once every option is read.
    items: Writer,
    /// Whether a LOGTOJSON option is among them: the Kinesis Agent drops a line it cannot match.
    drop_unmatched: bool,
}

impl<'a> Processors<'a> {
    pub(super) fn new(flow: usize, text: &'a str) -> Self {
        Self {
            flow,
            text,
            items: Writer::default(),
            drop_unmatched: false,
        }
    }

    /// Reads `options` and writes the flow's `on_error` and `processors`, if any.
    pub(super) fn write(mut self, options: &[Value], translation: &mut Translation) {
        for (index, option) in options.iter().enumerate() {
            let key = format!("flows[{}].dataProcessingOptions[{index}]", self.flow);
            let Value::Object(option) = option else {
                translation
                    .problems
                    .push(problem(self.text, &key, "must be an object"));
                continue;
            };
            self.option(&key, option, translation);
            warn_unknown_keys(&key, option, &mut translation.warnings);
        }
        if self.items.is_empty() {
            return;
        }
        let yaml = &mut translation.yaml;
        if self.drop_unmatched {
            yaml.comment(4, "The Kinesis Agent drops a line LOGTOJSON cannot match; it sends other unconvertible records as read, which kinship would do with send_raw.");
            yaml.key(4, "on_error", "drop");
        }
        yaml.line(4, "processors:");
        yaml.append(self.items);
    }

    /// One option, at `key`.
    fn option(&mut self, key: &str, option: &Map<String, Value>, translation: &mut Translation) {
        let problems = &mut translation.problems;
        if let Some(format) = string(option, "jsonFormat") {
            if format != "COMPACT" {
                problems.push(problem(
                    self.text,
                    &format!("{key}.jsonFormat"),
                    format!(
                        "`{}`: kinship writes compact JSON only; remove it or write COMPACT",
                        secrets::quoted(&format)
                    ),
                ));
            }
        }
        let name = string(option, "optionName").unwrap_or_default();
        match name.as_str() {
            "SINGLELINE" => self.single_line(option),
            "CSVTOJSON" => self.csv_to_json(key, option, problems),
            "LOGTOJSON" => self.log_to_json(key, option, problems),
            "ADDMETADATA" => self.add_metadata(key, option, problems),
            "ADDEC2METADATA" => {
                self.add_ec2_metadata(key, option, problems, &mut translation.warnings)
            }
            other => {
                problems.push(problem(self.text, &format!("{key}.optionName"), format!("`{}` has no kinship processor (kinship has SINGLELINE, CSVTOJSON, LOGTOJSON, ADDMETADATA, ADDEC2METADATA); remove it, or the records would change", secrets::quoted(other))));
            }
        }
    }

    fn single_line(&mut self, option: &Map<String, Value>) {
        let parse_options: Vec<String> = list(option, "parseOptions");
        self.items.line(6, "- type: single_line");
        if parse_options.iter().any(|o| o == "NO_TRIM") {
            self.items.key(8, "no_trim", "true");
        }
        if parse_options.iter().any(|o| o == "ESCAPE_NEW_LINE") {
            self.items.comment(
                8,
                "The three characters the Kinesis Agent's ESCAPE_NEW_LINE puts between lines.",
            );
            self.items.key(8, "separator", &quoted("\\\\n"));
        }
    }

    fn csv_to_json(&mut self, key: &str, option: &Map<String, Value>, problems: &mut Vec<Problem>) {
        let names: Vec<String> = list(option, "customFieldNames");
        if names.is_empty() {
            problems.push(problem(
                self.text,
                &format!("{key}.customFieldNames"),
                "is required",
            ));
            return;
        }
        self.items.line(6, "- type: csv_to_json");
        self.items.comment(8, "Quoted fields are read as CSV quoting says; the Kinesis Agent split them at every delimiter.");
        self.items.key(8, "field_names", &yaml_list(&names));
        if let Some(delimiter) = string(option, "delimiter") {
            match literal_delimiter(&delimiter) {
                Some(literal) => self.items.key(8, "delimiter", &quoted(&literal)),
                None => problems.push(problem(self.text, &format!("{key}.delimiter"), format!("`{}` is a regular expression to the Kinesis Agent; kinship takes one character", secrets::quoted(&delimiter)))),
            }
        }
    }

    fn log_to_json(&mut self, key: &str, option: &Map<String, Value>, problems: &mut Vec<Problem>) {
        let format = string(option, "logFormat").unwrap_or_default();
        let kinship_format = match format.as_str() {
            "COMMONAPACHELOG" => "common_apache",
            "COMBINEDAPACHELOG" => "combined_apache",
            "APACHEERRORLOG" => "apache_error",
            "SYSLOG" => "syslog",
            "RFC3339SYSLOG" => "rfc3339_syslog",
            other => {
                problems.push(problem(self.text, &format!("{key}.logFormat"), format!("`{}` is not COMMONAPACHELOG, COMBINEDAPACHELOG, APACHEERRORLOG, SYSLOG or RFC3339SYSLOG", secrets::quoted(other))));
                return;
            }
        };
        self.items.line(6, "- type: log_to_json");
        match string(option, "matchPattern") {
            Some(pattern) => {
                self.items.key(8, "pattern", &json_quoted(&pattern));
                // The agent parses a matchPattern with the parser of its logFormat: the Apache
                // one turns a `-` field into null, the syslog one keeps it.
                let apache = !matches!(format.as_str(), "SYSLOG" | "RFC3339SYSLOG");
                self.items
                    .key(8, "dash_as_null", if apache { "true" } else { "false" });
            }
            None => self.items.key(8, "format", kinship_format),
        }
        let names: Vec<String> = list(option, "customFieldNames");
        if !names.is_empty() {
            self.items.key(8, "field_names", &yaml_list(&names));
        }
        self.drop_unmatched = true;
    }

    fn add_metadata(
        &mut self,
        key: &str,
        option: &Map<String, Value>,
        problems: &mut Vec<Problem>,
    ) {
        self.items.line(6, "- type: add_metadata");
        self.items.key(8, "envelope", "true");
        if string(option, "timestamp").is_some_and(|t| t.eq_ignore_ascii_case("true")) {
            self.items.key(8, "timestamp", "true");
        }
        match option.get("metadata") {
            None => {}
            Some(Value::Object(fields)) => {
                self.items.line(8, "fields:");
                for (field, value) in fields {
                    self.items.key(10, &quoted(field), &value.to_string());
                }
            }
            Some(_) => problems.push(problem(
                self.text,
                &format!("{key}.metadata"),
                "kinship takes an object of fields",
            )),
        }
    }

    fn add_ec2_metadata(
        &mut self,
        key: &str,
        option: &Map<String, Value>,
        problems: &mut Vec<Problem>,
        warnings: &mut Vec<String>,
    ) {
        self.items.line(6, "- type: add_ec2_metadata");
        self.items.comment(8, "Tags are read with ec2:DescribeTags as with the Kinesis Agent, but with the flow's credentials (allow it to them); if that fails, from the instance metadata.");
        self.items.key(8, "tags", "true");
        let seconds = number(option, "metadataTTL", self.text, problems).unwrap_or(3600);
        if seconds < MIN_EC2_METADATA_REFRESH_SECONDS {
            warnings.push(format!(
                "{key}.metadataTTL: {seconds} s is below kinship's shortest refresh of the instance metadata; it is read again every {MIN_EC2_METADATA_REFRESH_SECONDS} s instead"
            ));
        }
        self.items.key(
            8,
            "refresh",
            &format!("{}s", seconds.max(MIN_EC2_METADATA_REFRESH_SECONDS)),
        );
    }
}

/// The keys the Kinesis Agent reads in an option of each kind, besides `optionName` and the
/// `jsonFormat` its JSON printer reads.
fn option_keys(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "SINGLELINE" => &["parseOptions"],
        "CSVTOJSON" => &["customFieldNames", "delimiter"],
        "LOGTOJSON" => &["logFormat", "matchPattern", "customFieldNames"],
        "ADDMETADATA" => &["metadata", "timestamp"],
        "ADDEC2METADATA" => &["metadataTTL"],
        _ => return None,
    })
}

/// A warning naming each key of an option that its kind does not read: the Kinesis Agent
/// ignores it silently, which hides a misspelt key.
fn warn_unknown_keys(key: &str, option: &Map<String, Value>, warnings: &mut Vec<String>) {
    let name = string(option, "optionName").unwrap_or_default();
    // An option kinship does not have is an error already.
    let Some(known) = option_keys(&name) else {
        return;
    };
    for field in option.keys() {
        if field == "optionName" || field == "jsonFormat" || known.contains(&field.as_str()) {
            continue;
        }
        warnings.push(format!(
            "{key}.{field}: not a key of {name} (the Kinesis Agent ignores it too; misspelt?); ignored"
        ));
    }
}

/// A CSVTOJSON delimiter (a regular expression to the Kinesis Agent) as the one character it
/// matches: a tab, a character with no special meaning, or an escaped punctuation mark.
/// `None` for any other regular expression.
fn literal_delimiter(delimiter: &str) -> Option<String> {
    match delimiter {
        "\\t" | "\t" => Some("\\t".to_owned()),
        one if one.chars().count() == 1 && !".$|()[{^?*+\\".contains(one) => Some(one.to_owned()),
        escaped
            if escaped.len() == 2
                && escaped.starts_with('\\')
                && !escaped[1..].chars().all(char::is_alphanumeric) =>
        {
            Some(escaped[1..].to_owned())
        }
        _ => None,
    }
}
