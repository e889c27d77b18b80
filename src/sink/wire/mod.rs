//! The bodies of the two data calls, `PutRecords` (Kinesis Data Streams) and `PutRecordBatch`
//! (Data Firehose), written straight from the records' bytes, and their answers skimmed for
//! what the sender needs.
//!
//! This is the bottom layer of the send path and depends on nothing else in the crate but the
//! [`WireFormat`] setting, which the config defines and this module gives its methods. Every
//! body is written into one buffer whose size is computed exactly before the first byte is
//! written, so a batch of 500 records costs one allocation at most (none when the buffer is
//! reused).

pub mod cbor;
pub mod json;
pub mod response;

#[cfg(test)]
mod tests;

pub use crate::config::WireFormat;

impl WireFormat {
    /// The `Content-Type` header of a request in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            WireFormat::Cbor => "application/x-amz-cbor-1.1",
            WireFormat::Json => "application/x-amz-json-1.1",
        }
    }

    /// The format's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            WireFormat::Cbor => "CBOR",
            WireFormat::Json => "JSON",
        }
    }
}

/// The `X-Amz-Target` header of a Kinesis `PutRecords` call.
pub const PUT_RECORDS_TARGET: &str = "Kinesis_20131202.PutRecords";
/// The `X-Amz-Target` header of a Firehose `PutRecordBatch` call.
pub const PUT_RECORD_BATCH_TARGET: &str = "Firehose_20150804.PutRecordBatch";

/// The stream a `PutRecords` call writes to: the `StreamName` or the `StreamARN` member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamRef<'a> {
    Name(&'a str),
    Arn(&'a str),
}

/// A record's `ExplicitHashKey`, which picks the shard instead of the partition key's hash.
/// The service takes it as a decimal string in 0..2^128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashKey<'a> {
    /// Written as given (it is JSON-escaped, never checked).
    Text(&'a str),
    /// Written in decimal.
    Number(u128),
}

/// One record of a `PutRecords` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry<'a> {
    pub data: &'a [u8],
    pub partition_key: &'a str,
    pub explicit_hash_key: Option<HashKey<'a>>,
}

/// The exact size in bytes of the `PutRecords` body [`put_records_body`] writes.
pub fn put_records_body_len(
    format: WireFormat,
    stream: StreamRef<'_>,
    entries: &[Entry<'_>],
) -> usize {
    match format {
        WireFormat::Cbor => cbor::put_records_len(stream, entries),
        WireFormat::Json => json::put_records_len(stream, entries),
    }
}

/// The PutRecords body for `entries`, written into `out` (cleared first, capacity reserved up front).
pub fn put_records_body(
    format: WireFormat,
    stream: StreamRef<'_>,
    entries: &[Entry<'_>],
    out: &mut Vec<u8>,
) {
    match format {
        WireFormat::Cbor => cbor::put_records(stream, entries, out),
        WireFormat::Json => json::put_records(stream, entries, out),
    }
}

/// The exact size in bytes of the `PutRecordBatch` body [`put_record_batch_body`] writes.
pub fn put_record_batch_body_len(delivery_stream: &str, records: &[&[u8]]) -> usize {
    json::put_record_batch_len(delivery_stream, records)
}

/// The Firehose PutRecordBatch body (AWS JSON 1.1 only), written into `out` (cleared first,
/// capacity reserved up front).
pub fn put_record_batch_body(delivery_stream: &str, records: &[&[u8]], out: &mut Vec<u8>) {
    json::put_record_batch(delivery_stream, records, out)
}

/// Writes `n` in decimal at the end of `buf` and returns the digits.
fn decimal(mut n: u128, buf: &mut [u8; 39]) -> &[u8] {
    let mut start = buf.len();
    // Peel off 19 digits at a time with one 128-bit division, then finish in 64 bits.
    const TEN_POW_19: u128 = 10_000_000_000_000_000_000;
    while n >= TEN_POW_19 {
        let mut low = (n % TEN_POW_19) as u64;
        n /= TEN_POW_19;
        for _ in 0..19 {
            start -= 1;
            buf[start] = b'0' + (low % 10) as u8;
            low /= 10;
        }
    }
    let mut low = n as u64;
    loop {
        start -= 1;
        buf[start] = b'0' + (low % 10) as u8;
        low /= 10;
        if low == 0 {
            break;
        }
    }
    &buf[start..]
}

impl HashKey<'_> {
    /// Calls `f` with the key's text, without allocating.
    fn with_text<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            HashKey::Text(text) => f(text.as_bytes()),
            HashKey::Number(n) => {
                let mut digits = [0u8; 39];
                f(decimal(n, &mut digits))
            }
        }
    }
}
