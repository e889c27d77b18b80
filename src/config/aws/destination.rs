//! A flow's destination: a Kinesis or Firehose stream, named by name or by ARN.

use std::fmt;

use super::arn::stream_arn_name;
use crate::config::Checker;
use crate::secrets::quoted;

/// Which service a flow sends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    /// Kinesis Data Streams, through `PutRecords`.
    Kinesis,
    /// Amazon Data Firehose, through `PutRecordBatch`.
    Firehose,
}

/// A flow's destination: a stream named by name or by ARN.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    pub kind: DestinationKind,
    /// The stream's name (taken from the ARN when an ARN is given).
    pub name: String,
    /// The ARN as written, when the config gives one (another account's stream, say).
    pub arn: Option<String>,
}

impl Destination {
    /// The service's word for the destination, for messages.
    fn noun(&self) -> &'static str {
        match self.kind {
            DestinationKind::Kinesis => "Kinesis stream",
            DestinationKind::Firehose => "Firehose stream",
        }
    }

    /// The config key that names it.
    pub fn key(&self) -> &'static str {
        match self.kind {
            DestinationKind::Kinesis => "kinesis_stream",
            DestinationKind::Firehose => "firehose_stream",
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}`",
            self.noun(),
            self.arn.as_deref().unwrap_or(&self.name)
        )
    }
}

impl Checker<'_> {
    /// `kinesis_stream` or `firehose_stream`, by name or ARN; exactly one of them.
    pub(in crate::config) fn destination(
        &mut self,
        key: &str,
        kinesis: Option<String>,
        firehose: Option<String>,
    ) -> Option<Destination> {
        let (kind, text) = match (kinesis, firehose) {
            (Some(text), None) => (DestinationKind::Kinesis, text),
            (None, Some(text)) => (DestinationKind::Firehose, text),
            (Some(_), Some(_)) => {
                self.problem(
                    &format!("{key}.firehose_stream"),
                    "is set together with kinesis_stream; a flow sends to one destination",
                );
                return None;
            }
            // A destination key written wrong was reported already.
            (None, None)
                if self.rejected(&format!("{key}.kinesis_stream"))
                    || self.rejected(&format!("{key}.firehose_stream")) =>
            {
                return None;
            }
            (None, None) => {
                self.problem(
                    &format!("{key}.kinesis_stream"),
                    "is missing; name the stream records go to (kinesis_stream or firehose_stream)",
                );
                return None;
            }
        };
        let field = match kind {
            DestinationKind::Kinesis => "kinesis_stream",
            DestinationKind::Firehose => "firehose_stream",
        };
        let (name, arn) = self.stream_name(&format!("{key}.{field}"), kind, text)?;
        Some(Destination { kind, name, arn })
    }

    /// The stream's name and, when `text` is an ARN, the ARN; `None`, a problem at `key`, when
    /// the ARN or the name is not a stream's.
    fn stream_name(
        &mut self,
        key: &str,
        kind: DestinationKind,
        text: String,
    ) -> Option<(String, Option<String>)> {
        let (name, arn) = if text.starts_with("arn:") {
            match stream_arn_name(&text, kind) {
                Some(name) => (name.to_owned(), Some(text.clone())),
                None => {
                    let example = match kind {
                        DestinationKind::Kinesis => {
                            "arn:aws:kinesis:us-east-1:123456789012:stream/NAME"
                        }
                        DestinationKind::Firehose => {
                            "arn:aws:firehose:us-east-1:123456789012:deliverystream/NAME"
                        }
                    };
                    self.problem(
                        key,
                        format!("`{}` is not a stream ARN such as {example}", quoted(&text)),
                    );
                    return None;
                }
            }
        } else {
            (text, None)
        };
        let longest = match kind {
            DestinationKind::Kinesis => 128,
            DestinationKind::Firehose => 64,
        };
        let valid = !name.is_empty()
            && name.len() <= longest
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            self.problem(
                key,
                format!(
                    "`{}` is not a stream name (1 to {longest} letters, digits, '-', '_' or '.')",
                    quoted(&name)
                ),
            );
            return None;
        }
        Some((name, arn))
    }
}
