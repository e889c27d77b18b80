//! The answers to `PutRecords` and `PutRecordBatch`, skimmed in one pass for the counts, the
//! refused records and (when asked) the shard of each record, and the service's error answers
//! read for their code and message.
//!
//! No typed entry is built per record: a successful record costs a walk over its bytes and,
//! once the answer has said that nothing failed, not even a look at its member names.

use std::borrow::Cow;

use super::cbor::{self, Head};
use super::json::{self, Kind};
use super::WireFormat;

/// A record the service refused, by its index in the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// What an answer says about a call's records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutAnswer {
    /// How many result entries the answer listed; the caller checks it equals the records sent.
    pub results: usize,
    /// `FailedRecordCount` / `FailedPutCount` as the service said (the number of refused
    /// entries when the answer leaves it out).
    pub failed: usize,
    /// The index, `ErrorCode` and `ErrorMessage` of each refused record, in order; empty when
    /// `failed` is 0, whatever the entries say, so that the answer reads the same whatever
    /// order its members come in.
    pub refused: Vec<Refused>,
    /// The `ShardId` of every entry in order (empty for a refused one), only when asked for;
    /// else empty.
    pub shard_ids: Vec<String>,
}

/// Why an answer could not be read. The records' fate is then unknown.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScanError {
    #[error("the answer is not valid JSON at byte {offset}: {reason}")]
    InvalidJson { offset: usize, reason: &'static str },
    #[error("the answer is not valid CBOR at byte {offset}: {reason}")]
    InvalidCbor { offset: usize, reason: &'static str },
    #[error("the answer nests too deep at byte {offset}")]
    TooDeep { offset: usize },
    #[error(
        "the answer is valid {format} but not the answer expected, at byte {offset}: {reason}"
    )]
    Unexpected {
        format: &'static str,
        offset: usize,
        reason: &'static str,
    },
    #[error("the answer has no {member} member")]
    Missing { member: &'static str },
}

/// The member names of one call's answer.
struct Names {
    count: &'static str,
    list: &'static str,
    /// The member holding each entry's shard, when the answer has one.
    shard: Option<&'static str>,
}

const PUT_RECORDS: Names = Names {
    count: "FailedRecordCount",
    list: "Records",
    shard: Some("ShardId"),
};

const PUT_RECORD_BATCH: Names = Names {
    count: "FailedPutCount",
    list: "RequestResponses",
    shard: None,
};

const ERROR_CODE: &[u8] = b"ErrorCode";
const ERROR_MESSAGE: &[u8] = b"ErrorMessage";

/// The members of one result entry that matter.
#[derive(Default)]
struct EntryFields {
    code: Option<String>,
    message: Option<String>,
    shard_id: Option<String>,
}

/// The answer being put together as the scan goes.
struct Tally {
    want_shard_ids: bool,
    failed: Option<u64>,
    saw_list: bool,
    answer: PutAnswer,
}

impl Tally {
    fn new(want_shard_ids: bool) -> Self {
        Tally {
            want_shard_ids,
            failed: None,
            saw_list: false,
            answer: PutAnswer::default(),
        }
    }

    /// Whether an entry can be passed over unread: nothing failed and no shard is wanted.
    fn skims(&self) -> bool {
        self.failed == Some(0) && !self.want_shard_ids
    }

    fn skipped_entry(&mut self) {
        self.answer.results += 1;
    }

    fn entry(&mut self, fields: EntryFields) {
        let index = self.answer.results;
        self.answer.results += 1;
        if let Some(code) = fields.code.filter(|code| !code.is_empty()) {
            self.answer.refused.push(Refused {
                index,
                code,
                message: fields.message.unwrap_or_default(),
            });
        }
        if self.want_shard_ids {
            self.answer
                .shard_ids
                .push(fields.shard_id.unwrap_or_default());
        }
    }

    fn finish(mut self, names: &Names) -> Result<PutAnswer, ScanError> {
        if !self.saw_list {
            return Err(ScanError::Missing { member: names.list });
        }
        match self.failed {
            Some(0) => self.answer.refused.clear(),
            Some(failed) => self.answer.failed = usize::try_from(failed).unwrap_or(usize::MAX),
            None => self.answer.failed = self.answer.refused.len(),
        }
        Ok(self.answer)
    }
}

/// Reads a `PutRecords` answer (a 2xx body).
pub fn scan_put_records(
    format: WireFormat,
    body: &[u8],
    want_shard_ids: bool,
) -> Result<PutAnswer, ScanError> {
    match format {
        WireFormat::Json => scan_json(body, &PUT_RECORDS, want_shard_ids),
        WireFormat::Cbor => scan_cbor(body, &PUT_RECORDS, want_shard_ids),
    }
}

/// Reads a `PutRecordBatch` answer (a 2xx body, always JSON): `FailedPutCount` and
/// `RequestResponses`, each with `RecordId` or `ErrorCode` and `ErrorMessage`.
pub fn scan_put_record_batch(body: &[u8]) -> Result<PutAnswer, ScanError> {
    scan_json(body, &PUT_RECORD_BATCH, false)
}

fn json_unexpected(reader: &json::Reader<'_>, reason: &'static str) -> ScanError {
    ScanError::Unexpected {
        format: "JSON",
        offset: reader.offset(),
        reason,
    }
}

/// A string member's value, or `None` for null.
fn json_text(
    reader: &mut json::Reader<'_>,
    reason: &'static str,
) -> Result<Option<String>, ScanError> {
    match reader.peek_kind()? {
        Kind::Null => reader.null().map(|_| None),
        Kind::String => Ok(Some(lossy(reader.string()?))),
        _ => Err(json_unexpected(reader, reason)),
    }
}

fn lossy(text: Cow<'_, [u8]>) -> String {
    match text {
        Cow::Borrowed(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Cow::Owned(bytes) => String::from_utf8(bytes)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned()),
    }
}

fn scan_json(body: &[u8], names: &Names, want_shard_ids: bool) -> Result<PutAnswer, ScanError> {
    let mut reader = json::Reader::new(body);
    if reader.peek_kind()? != Kind::Object {
        return Err(json_unexpected(&reader, "the answer is not an object"));
    }
    reader.begin_object()?;
    let mut tally = Tally::new(want_shard_ids);
    let mut first = true;
    while let Some(name) = reader.next_member(&mut first)? {
        if *name == *names.count.as_bytes() {
            match reader.peek_kind()? {
                Kind::Null => {
                    reader.null()?;
                }
                Kind::Number => match reader.count()? {
                    Some(count) => tally.failed = Some(count),
                    None => {
                        return Err(json_unexpected(
                            &reader,
                            "the failed count is not a whole number",
                        ))
                    }
                },
                _ => return Err(json_unexpected(&reader, "the failed count is not a number")),
            }
        } else if *name == *names.list.as_bytes() {
            if tally.saw_list {
                return Err(json_unexpected(
                    &reader,
                    "the list of results appears twice",
                ));
            }
            tally.saw_list = true;
            if reader.null()? {
                continue;
            }
            if reader.peek_kind()? != Kind::Array {
                return Err(json_unexpected(
                    &reader,
                    "the list of results is not an array",
                ));
            }
            json_entries(&mut reader, names, &mut tally)?;
        } else {
            reader.skip_value()?;
        }
    }
    reader.end()?;
    tally.finish(names)
}

fn json_entries(
    reader: &mut json::Reader<'_>,
    names: &Names,
    tally: &mut Tally,
) -> Result<(), ScanError> {
    let shard = names
        .shard
        .filter(|_| tally.want_shard_ids)
        .map(str::as_bytes);
    reader.begin_array()?;
    let mut first = true;
    while reader.next_element(&mut first)? {
        if reader.peek_kind()? != Kind::Object {
            return Err(json_unexpected(reader, "a result entry is not an object"));
        }
        if tally.skims() {
            reader.skim_value()?;
            tally.skipped_entry();
            continue;
        }
        reader.begin_object()?;
        let mut fields = EntryFields::default();
        let mut first_member = true;
        while let Some(member) = reader.next_member(&mut first_member)? {
            if *member == *ERROR_CODE {
                fields.code = json_text(reader, "an error code is not a string")?;
            } else if *member == *ERROR_MESSAGE {
                fields.message = json_text(reader, "an error message is not a string")?;
            } else if Some(&*member) == shard {
                fields.shard_id = json_text(reader, "a shard id is not a string")?;
            } else {
                reader.skip_value()?;
            }
        }
        tally.entry(fields);
    }
    Ok(())
}

fn cbor_unexpected(offset: usize, reason: &'static str) -> ScanError {
    ScanError::Unexpected {
        format: "CBOR",
        offset,
        reason,
    }
}

/// A text member's value, or `None` for null or undefined.
fn cbor_text(
    reader: &mut cbor::Reader<'_>,
    reason: &'static str,
) -> Result<Option<String>, ScanError> {
    let at = reader.offset();
    match reader.head()? {
        Head::Null => Ok(None),
        Head::Text(len) => Ok(Some(lossy(reader.string_body(cbor::MAJOR_TEXT, len)?))),
        _ => Err(cbor_unexpected(at, reason)),
    }
}

fn scan_cbor(body: &[u8], names: &Names, want_shard_ids: bool) -> Result<PutAnswer, ScanError> {
    let mut reader = cbor::Reader::new(body);
    let Head::Map(len) = reader.head()? else {
        return Err(cbor_unexpected(0, "the answer is not a map"));
    };
    let mut members = reader.items(len, 2)?;
    let mut tally = Tally::new(want_shard_ids);
    while reader.next(&mut members)? {
        let Some(name) = reader.text_or_skip()? else {
            reader.skip()?;
            continue;
        };
        let at = reader.offset();
        if *name == *names.count.as_bytes() {
            match reader.head()? {
                Head::Null => {}
                Head::Unsigned(count) => tally.failed = Some(count),
                Head::Float(count) if count >= 0.0 && count.fract() == 0.0 && count < 1.8e19 => {
                    tally.failed = Some(count as u64)
                }
                _ => {
                    return Err(cbor_unexpected(
                        at,
                        "the failed count is not a whole number",
                    ))
                }
            }
        } else if *name == *names.list.as_bytes() {
            if tally.saw_list {
                return Err(cbor_unexpected(at, "the list of results appears twice"));
            }
            tally.saw_list = true;
            match reader.head()? {
                Head::Null => {}
                // Every record accepted, and the list says how many results it holds: that
                // is all the answer has to say, so the rest is not read (an all-accepted
                // answer of 500 results is otherwise most of the cost of reading answers).
                Head::Array(Some(len)) if tally.skims() => {
                    tally.answer.results = usize::try_from(len)
                        .map_err(|_| cbor_unexpected(at, "the list of results is too long"))?;
                    return tally.finish(names);
                }
                Head::Array(len) => cbor_entries(&mut reader, len, names, &mut tally)?,
                _ => return Err(cbor_unexpected(at, "the list of results is not an array")),
            }
        } else {
            reader.skip()?;
        }
    }
    reader.end()?;
    tally.finish(names)
}

fn cbor_entries(
    reader: &mut cbor::Reader<'_>,
    len: Option<u64>,
    names: &Names,
    tally: &mut Tally,
) -> Result<(), ScanError> {
    let shard = names
        .shard
        .filter(|_| tally.want_shard_ids)
        .map(str::as_bytes);
    let mut entries = reader.items(len, 1)?;
    while reader.next(&mut entries)? {
        if tally.skims() {
            reader.skip()?;
            tally.skipped_entry();
            continue;
        }
        let at = reader.offset();
        let Head::Map(len) = reader.head()? else {
            return Err(cbor_unexpected(at, "a result entry is not a map"));
        };
        let mut members = reader.items(len, 2)?;
        let mut fields = EntryFields::default();
        while reader.next(&mut members)? {
            let Some(member) = reader.text_or_skip()? else {
                reader.skip()?;
                continue;
            };
            if *member == *ERROR_CODE {
                fields.code = cbor_text(reader, "an error code is not text")?;
            } else if *member == *ERROR_MESSAGE {
                fields.message = cbor_text(reader, "an error message is not text")?;
            } else if Some(&*member) == shard {
                fields.shard_id = cbor_text(reader, "a shard id is not text")?;
            } else {
                reader.skip()?;
            }
        }
        tally.entry(fields);
    }
    Ok(())
}

/// A service's error answer (a non-2xx status).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    /// The error's name without namespace or suffix, such as
    /// `ProvisionedThroughputExceededException`; [`UNKNOWN_ERROR_CODE`] when the answer
    /// names none.
    pub code: String,
    /// The service's message; for a body that is neither JSON nor CBOR, a short description
    /// of it.
    pub message: String,
}

/// The code of a [`ServiceError`] whose answer names none.
pub const UNKNOWN_ERROR_CODE: &str = "Unknown";

/// How much of an unreadable body a message quotes.
const QUOTED_CHARS: usize = 60;

/// A service error answer (non-2xx): the code from the `x-amzn-errortype` header if given
/// (anything after ':' stripped), else the body's `__type` (a namespace prefix up to '#'
/// stripped), else its `code`; the message from `message`, `Message` or `errorMessage`.
/// Works for JSON and CBOR bodies whatever `format` says, and for empty or garbage bodies (then
/// the code is [`UNKNOWN_ERROR_CODE`] unless the header gives one, and the message says what
/// the body was).
pub fn scan_error(
    format: WireFormat,
    error_type_header: Option<&str>,
    body: &[u8],
) -> ServiceError {
    let header_code = error_type_header
        .map(bare_error_code)
        .filter(|code| !code.is_empty());
    let fields = match format {
        WireFormat::Json => json_error(body).or_else(|| cbor_error(body)),
        WireFormat::Cbor => cbor_error(body).or_else(|| json_error(body)),
    };
    let (body_code, message) = match fields {
        Some(fields) => (
            fields
                .type_name
                .or(fields.code)
                .map(|code| bare_error_code(&code).to_owned()),
            fields.message.unwrap_or_default(),
        ),
        None => (None, describe_unreadable(body)),
    };
    let code = header_code
        .map(str::to_owned)
        .or(body_code.filter(|code| !code.is_empty()))
        .unwrap_or_else(|| UNKNOWN_ERROR_CODE.to_owned());
    ServiceError { code, message }
}

/// `aws.namespace#Name:http://…` → `Name`.
fn bare_error_code(code: &str) -> &str {
    let code = code.split(':').next().unwrap_or(code);
    let code = code.rsplit('#').next().unwrap_or(code);
    code.trim()
}

fn describe_unreadable(body: &[u8]) -> String {
    if body.iter().all(u8::is_ascii_whitespace) {
        return "the answer has no body".to_owned();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTED_CHARS * 4)]);
    let mut quoted: String = text
        .chars()
        .take(QUOTED_CHARS)
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect();
    if text.chars().count() > QUOTED_CHARS || body.len() > QUOTED_CHARS * 4 {
        quoted.push('…');
    }
    format!(
        "the answer is neither JSON nor CBOR ({} bytes): {:?}",
        body.len(),
        quoted.trim()
    )
}

#[derive(Default)]
struct ErrorFields {
    type_name: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

impl ErrorFields {
    /// Where the member `name` belongs, if it matters.
    fn slot(&mut self, name: &[u8]) -> Option<&mut Option<String>> {
        match name {
            b"__type" => Some(&mut self.type_name),
            b"code" | b"Code" => Some(&mut self.code),
            b"message" | b"Message" | b"errorMessage" => Some(&mut self.message),
            _ => None,
        }
    }
}

/// The error members of a JSON object body, or `None` when the body is not one.
fn json_error(body: &[u8]) -> Option<ErrorFields> {
    let mut reader = json::Reader::new(body);
    if reader.peek_kind().ok()? != Kind::Object {
        return None;
    }
    reader.begin_object().ok()?;
    let mut fields = ErrorFields::default();
    let mut first = true;
    while let Some(name) = reader.next_member(&mut first).ok()? {
        match fields.slot(&name) {
            Some(slot) if reader.peek_kind().ok()? == Kind::String => {
                *slot = Some(lossy(reader.string().ok()?));
            }
            _ => reader.skip_value().ok()?,
        }
    }
    reader.end().ok()?;
    Some(fields)
}

/// The error members of a CBOR map body, or `None` when the body is not one.
fn cbor_error(body: &[u8]) -> Option<ErrorFields> {
    let mut reader = cbor::Reader::new(body);
    let Head::Map(len) = reader.head().ok()? else {
        return None;
    };
    let mut members = reader.items(len, 2).ok()?;
    let mut fields = ErrorFields::default();
    while reader.next(&mut members).ok()? {
        let Some(name) = reader.text_or_skip().ok()? else {
            reader.skip().ok()?;
            continue;
        };
        match (fields.slot(&name), reader.head().ok()?) {
            (Some(slot), Head::Text(len)) => {
                *slot = Some(lossy(reader.string_body(cbor::MAJOR_TEXT, len).ok()?))
            }
            (_, other) => reader.skip_after(other, 0).ok()?,
        }
    }
    reader.end().ok()?;
    Some(fields)
}
