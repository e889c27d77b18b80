//! AWS JSON 1.1: the `PutRecords` and `PutRecordBatch` bodies, and a skimming reader for
//! answers that looks only at the members it is asked about ([`Reader`]).

mod reader;

use base64::Engine as _;

use super::{Entry, StreamRef};
pub(crate) use reader::{Kind, Reader};

/// What a byte becomes inside a JSON string: 0 stays as it is, `u` becomes `\u00XX`, any
/// other value `c` becomes `\c`.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0A] = b'n';
    table[0x0C] = b'f';
    table[0x0D] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether a byte must be escaped inside a JSON string (as [`ESCAPE`] says).
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// How many bytes of `text` must be escaped: counted without branches, so that the common
/// case, none, costs a pass the compiler turns into wide compares.
fn escapes_in(text: &[u8]) -> usize {
    text.iter().filter(|&&byte| needs_escape(byte)).count()
}

/// The size of `text` as a JSON string, quotes included.
fn string_len(text: &[u8]) -> usize {
    let mut len = text.len() + 2;
    if escapes_in(text) == 0 {
        return len;
    }
    for &byte in text {
        len += match ESCAPE[usize::from(byte)] {
            0 => 0,
            b'u' => 5,
            _ => 1,
        };
    }
    len
}

/// Writes `text` as a JSON string, copying each run of plain bytes with one call.
fn write_string(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    if escapes_in(text) == 0 {
        out.extend_from_slice(text);
        out.push(b'"');
        return;
    }
    let mut run_start = 0;
    for (at, &byte) in text.iter().enumerate() {
        let escape = ESCAPE[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&text[run_start..at]);
        if escape == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xF)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        run_start = at + 1;
    }
    out.extend_from_slice(&text[run_start..]);
    out.push(b'"');
}

/// The size of `data` in padded standard base64.
fn base64_len(data: &[u8]) -> usize {
    data.len().div_ceil(3) * 4
}

/// Writes `data` as a JSON string of padded standard base64, encoded in place.
fn write_base64(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'"');
    let start = out.len();
    out.resize(start + base64_len(data), 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .expect("the region is sized for the padded encoding of the data");
    debug_assert_eq!(written, base64_len(data));
    out.push(b'"');
}

const RECORDS_OPEN: &[u8] = b"{\"Records\":[";
const DATA_OPEN: &[u8] = b"{\"Data\":";
const HASH_KEY_MEMBER: &[u8] = b",\"ExplicitHashKey\":";
const PARTITION_KEY_MEMBER: &[u8] = b",\"PartitionKey\":";
const STREAM_NAME_MEMBER: &[u8] = b"],\"StreamName\":";
const STREAM_ARN_MEMBER: &[u8] = b"],\"StreamARN\":";

fn stream_member(stream: StreamRef<'_>) -> (&'static [u8], &[u8]) {
    match stream {
        StreamRef::Name(name) => (STREAM_NAME_MEMBER, name.as_bytes()),
        StreamRef::Arn(arn) => (STREAM_ARN_MEMBER, arn.as_bytes()),
    }
}

/// The exact size of the body [`put_records`] writes.
pub(crate) fn put_records_len(stream: StreamRef<'_>, entries: &[Entry<'_>]) -> usize {
    let (member, value) = stream_member(stream);
    // The commas between entries, the closing braces.
    let mut len =
        RECORDS_OPEN.len() + entries.len().saturating_sub(1) + member.len() + string_len(value) + 1;
    for entry in entries {
        len += DATA_OPEN.len() + base64_len(entry.data) + 2;
        if let Some(key) = entry.explicit_hash_key {
            len += HASH_KEY_MEMBER.len() + key.with_text(string_len);
        }
        len += PARTITION_KEY_MEMBER.len() + string_len(entry.partition_key.as_bytes()) + 1;
    }
    len
}

/// `{"Records":[{"Data":"…","ExplicitHashKey":"…","PartitionKey":"…"},…],"StreamName":"…"}`
pub(crate) fn put_records(stream: StreamRef<'_>, entries: &[Entry<'_>], out: &mut Vec<u8>) {
    out.clear();
    out.reserve_exact(put_records_len(stream, entries));
    out.extend_from_slice(RECORDS_OPEN);
    for (index, entry) in entries.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(DATA_OPEN);
        write_base64(out, entry.data);
        if let Some(key) = entry.explicit_hash_key {
            out.extend_from_slice(HASH_KEY_MEMBER);
            key.with_text(|text| write_string(out, text));
        }
        out.extend_from_slice(PARTITION_KEY_MEMBER);
        write_string(out, entry.partition_key.as_bytes());
        out.push(b'}');
    }
    let (member, value) = stream_member(stream);
    out.extend_from_slice(member);
    write_string(out, value);
    out.push(b'}');
}

const DELIVERY_STREAM_OPEN: &[u8] = b"{\"DeliveryStreamName\":";
const BATCH_RECORDS_MEMBER: &[u8] = b",\"Records\":[";

/// The exact size of the body [`put_record_batch`] writes.
pub(crate) fn put_record_batch_len(delivery_stream: &str, records: &[&[u8]]) -> usize {
    let mut len = DELIVERY_STREAM_OPEN.len()
        + string_len(delivery_stream.as_bytes())
        + BATCH_RECORDS_MEMBER.len()
        + records.len().saturating_sub(1)
        + 2;
    for record in records {
        len += DATA_OPEN.len() + base64_len(record) + 3;
    }
    len
}

/// `{"DeliveryStreamName":"…","Records":[{"Data":"…"},…]}`
pub(crate) fn put_record_batch(delivery_stream: &str, records: &[&[u8]], out: &mut Vec<u8>) {
    out.clear();
    out.reserve_exact(put_record_batch_len(delivery_stream, records));
    out.extend_from_slice(DELIVERY_STREAM_OPEN);
    write_string(out, delivery_stream.as_bytes());
    out.extend_from_slice(BATCH_RECORDS_MEMBER);
    for (index, record) in records.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(DATA_OPEN);
        write_base64(out, record);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
mod escape_tests {
    use super::*;

    #[test]
    fn the_quick_escape_check_agrees_with_the_table() {
        for byte in 0..=u8::MAX {
            assert_eq!(
                needs_escape(byte),
                ESCAPE[usize::from(byte)] != 0,
                "byte {byte:#04x}"
            );
        }
    }
}
