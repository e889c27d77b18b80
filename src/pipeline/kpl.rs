//! The KPL aggregated record format (what KCL and the Lambda deaggregators read): the magic bytes
//! `F3 89 9A C2`, a protobuf `AggregatedRecord`, and the MD5 digest of the protobuf. Many user
//! records share one Kinesis record, each keeping its own partition key in the key table.
//!
//! ```text
//! AggregatedRecord { repeated string partition_key_table = 1;
//!                    repeated string explicit_hash_key_table = 2;
//!                    repeated Record records = 3; }
//! Record { required uint64 partition_key_index = 1; optional uint64 explicit_hash_key_index = 2;
//!          required bytes data = 3; repeated Tag tags = 4; }
//! ```
//!
//! The builder knows its exact encoded size before each record is added, so an aggregate never
//! exceeds the record limit.

use std::collections::HashMap;

use bytes::Bytes;
use md5::{Digest, Md5};

pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;
/// Protobuf tags: field number << 3 | wire type (0 varint, 2 length-delimited).
const TAG_PARTITION_KEY_TABLE: u8 = 1 << 3 | 2;
const TAG_RECORDS: u8 = 3 << 3 | 2;
const TAG_RECORD_KEY_INDEX: u8 = 1 << 3;
const TAG_RECORD_DATA: u8 = 3 << 3 | 2;

/// Bytes of `value` as a protobuf varint.
pub fn varint_len(value: u64) -> usize {
    let bits = 64 - value.max(1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited field's bytes: tag, length, payload.
fn field_len(payload: usize) -> usize {
    1 + varint_len(payload as u64) + payload
}

/// The encoded size of a `Record` message with key index `index` and `data_len` bytes of data.
fn record_message_len(index: u64, data_len: usize) -> usize {
    1 + varint_len(index) + field_len(data_len)
}

/// An aggregated record being filled.
#[derive(Debug, Default)]
pub struct Aggregate {
    keys: Vec<String>,
    key_index: HashMap<String, u64>,
    records: Vec<(u64, Bytes)>,
    /// Bytes of the protobuf so far.
    protobuf_len: usize,
}

impl Aggregate {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The first user record's partition key: the aggregate's own key.
    #[cfg(test)]
    pub fn first_key(&self) -> Option<&str> {
        self.keys.first().map(String::as_str)
    }

    /// Size of the encoded aggregate: magic, protobuf, digest.
    pub fn encoded_len(&self) -> usize {
        MAGIC.len() + self.protobuf_len + DIGEST_LEN
    }

    /// [`Self::encoded_len`] once a record with `key` and `data_len` bytes is added.
    pub fn encoded_len_with(&self, key: &str, data_len: usize) -> usize {
        let (index, table_growth) = match self.key_index.get(key) {
            Some(index) => (*index, 0),
            None => (self.keys.len() as u64, field_len(key.len())),
        };
        self.encoded_len() + table_growth + field_len(record_message_len(index, data_len))
    }

    /// Size of an aggregate holding only a record with `key` and `data_len` bytes.
    pub fn encoded_len_alone(key: &str, data_len: usize) -> usize {
        MAGIC.len() + field_len(key.len()) + field_len(record_message_len(0, data_len)) + DIGEST_LEN
    }

    pub fn add(&mut self, key: &str, data: Bytes) {
        let index = match self.key_index.get(key) {
            Some(index) => *index,
            None => {
                let index = self.keys.len() as u64;
                self.keys.push(key.to_owned());
                self.key_index.insert(key.to_owned(), index);
                self.protobuf_len += field_len(key.len());
                index
            }
        };
        self.protobuf_len += field_len(record_message_len(index, data.len()));
        self.records.push((index, data));
    }

    /// The user records' data, in order.
    pub fn into_records(self) -> Vec<(u64, Bytes)> {
        self.records
    }

    /// The aggregated record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        for key in &self.keys {
            out.push(TAG_PARTITION_KEY_TABLE);
            put_varint(&mut out, key.len() as u64);
            out.extend_from_slice(key.as_bytes());
        }
        for (index, data) in &self.records {
            out.push(TAG_RECORDS);
            put_varint(&mut out, record_message_len(*index, data.len()) as u64);
            out.push(TAG_RECORD_KEY_INDEX);
            put_varint(&mut out, *index);
            out.push(TAG_RECORD_DATA);
            put_varint(&mut out, data.len() as u64);
            out.extend_from_slice(data);
        }
        let digest = Md5::digest(&out[MAGIC.len()..]);
        out.extend_from_slice(&digest);
        out
    }
}

/// A partition key's place in the 128-bit hash key space, as Kinesis computes it.
pub fn key_hash(key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(key.as_bytes()).into())
}

/// Reads the format back, to check the encoding from the other side.
#[cfg(test)]
pub mod testing {
    use super::*;

    /// A small protobuf reader for the format, to check the encoding from the other side.
    pub fn decode(bytes: &[u8]) -> (Vec<String>, Vec<(u64, Vec<u8>)>) {
        assert_eq!(&bytes[..4], &MAGIC);
        let body = &bytes[4..bytes.len() - 16];
        assert_eq!(&bytes[bytes.len() - 16..], Md5::digest(body).as_slice());
        fn varint(bytes: &[u8], at: &mut usize) -> u64 {
            let mut value = 0u64;
            let mut shift = 0;
            loop {
                let byte = bytes[*at];
                *at += 1;
                value |= u64::from(byte & 0x7F) << shift;
                if byte < 0x80 {
                    return value;
                }
                shift += 7;
            }
        }
        let (mut keys, mut records) = (Vec::new(), Vec::new());
        let mut at = 0;
        while at < body.len() {
            let tag = body[at];
            at += 1;
            let len = varint(body, &mut at) as usize;
            let payload = &body[at..at + len];
            at += len;
            match tag {
                TAG_PARTITION_KEY_TABLE => {
                    keys.push(String::from_utf8(payload.to_vec()).expect("utf-8"))
                }
                TAG_RECORDS => {
                    let mut inner = 0;
                    assert_eq!(payload[inner], TAG_RECORD_KEY_INDEX);
                    inner += 1;
                    let index = varint(payload, &mut inner);
                    assert_eq!(payload[inner], TAG_RECORD_DATA);
                    inner += 1;
                    let data_len = varint(payload, &mut inner) as usize;
                    records.push((index, payload[inner..inner + data_len].to_vec()));
                    assert_eq!(inner + data_len, payload.len());
                }
                other => panic!("unexpected tag {other}"),
            }
        }
        (keys, records)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::decode;
    use super::*;

    #[test]
    fn varints_have_the_right_length() {
        for (value, len) in [
            (0u64, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), len, "{value}");
            assert_eq!(varint_len(value), len, "{value}");
        }
    }

    #[test]
    fn the_encoding_round_trips_with_shared_keys_and_exact_sizes() {
        let mut aggregate = Aggregate::default();
        let records = [
            ("a", vec![b'x'; 10]),
            ("bb", vec![b'y'; 200]),
            ("a", vec![0xFF; 130]),
            ("ccc", Vec::new()),
        ];
        for (key, data) in &records {
            let predicted = aggregate.encoded_len_with(key, data.len());
            if aggregate.is_empty() {
                assert_eq!(predicted, Aggregate::encoded_len_alone(key, data.len()));
            }
            aggregate.add(key, Bytes::from(data.clone()));
            assert_eq!(aggregate.encoded_len(), predicted);
        }
        let bytes = aggregate.encode();
        assert_eq!(bytes.len(), aggregate.encoded_len());
        let (keys, decoded) = decode(&bytes);
        assert_eq!(keys, ["a", "bb", "ccc"]);
        let expected: Vec<(u64, Vec<u8>)> = vec![
            (0, vec![b'x'; 10]),
            (1, vec![b'y'; 200]),
            (0, vec![0xFF; 130]),
            (2, Vec::new()),
        ];
        assert_eq!(decoded, expected);
        assert_eq!(aggregate.first_key(), Some("a"));
    }

    #[test]
    fn key_hashes_are_kinesis_md5_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(key_hash(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }
}
