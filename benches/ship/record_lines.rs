//! How many lines one service record carries. The agent may have combined lines into it (a KPL
//! aggregate, or lines joined by newlines) and compressed it; the endpoint undoes that, as a
//! consumer would, only in the modes that need it: a plain record is one line, never decoded.

use std::cell::RefCell;
use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use md5::{Digest, Md5};

/// How the agent combines lines into records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Combining {
    /// One line a record.
    #[default]
    None,
    /// `aggregation: kpl`: KPL aggregated records.
    Kpl,
    /// `pack_records: true`: whole lines, each ending in a newline.
    Pack,
}

/// How the agent compresses each record's data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn parse(text: &str) -> Option<Compression> {
        match text {
            "none" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The agent config's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// What the agent does to lines before they leave it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoding {
    pub combining: Combining,
    pub compression: Compression,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let combining = match self.combining {
            Combining::None => "one line a record",
            Combining::Kpl => "KPL aggregation",
            Combining::Pack => "lines packed into records",
        };
        match self.compression {
            Compression::None => write!(f, "{combining}"),
            other => write!(f, "{combining}, {} compression", other.name()),
        }
    }
}

/// The lines one record held, as a consumer would read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lines {
    pub count: u64,
    /// The record is not what the mode says it should be: it does not decode, or its KPL
    /// framing or digest is wrong, or a packed record does not end with a newline. It counts
    /// as the lines a consumer would then see (one, for a record that cannot be read).
    pub malformed: bool,
}

/// The KPL magic bytes, then the protobuf, then its 16-byte MD5 digest.
const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const KPL_DIGEST_LEN: usize = 16;
/// Checks that cost as much as the agent's own work on the record (an aggregate's MD5 digest; a
/// single compressed line's decompression) are made on one record in this many: enough to catch
/// a wrong encoding, while the endpoint stays out of the way of the agent it measures.
const SPOT_CHECK_EVERY: u64 = 16;
/// A decompressed record larger than this is not a record the agent could have sent.
const MAX_DECOMPRESSED: u64 = 64 * 1024 * 1024;

static SPOT_CHECKS: AtomicU64 = AtomicU64::new(0);

fn spot_check() -> bool {
    SPOT_CHECKS
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(SPOT_CHECK_EVERY)
}

/// Buffers kept per server thread, so that decoding allocates nothing per record.
#[derive(Default)]
struct Scratch {
    decoded: Vec<u8>,
    decompressed: Vec<u8>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

impl Encoding {
    /// Lines travel one a record, uncompressed: nothing needs decoding to count them.
    pub fn is_plain(self) -> bool {
        self == Encoding::default()
    }

    /// The lines in a record whose data is `base64`.
    pub fn lines(self, base64: &[u8]) -> Lines {
        let one = Lines {
            count: 1,
            malformed: false,
        };
        if self.combining == Combining::None
            && (self.compression == Compression::None || !spot_check())
        {
            return one;
        }
        SCRATCH.with_borrow_mut(|scratch| {
            let Scratch {
                decoded,
                decompressed,
                zstd,
            } = scratch;
            decoded.clear();
            if base64::engine::general_purpose::STANDARD
                .decode_vec(base64, decoded)
                .is_err()
            {
                return malformed(1);
            }
            let data = match self.compression {
                Compression::None => &decoded[..],
                Compression::Gzip => match gunzip(decoded, decompressed) {
                    Ok(()) => &decompressed[..],
                    Err(()) => return malformed(1),
                },
                Compression::Zstd => match unzstd(decoded, decompressed, zstd) {
                    Ok(()) => &decompressed[..],
                    Err(()) => return malformed(1),
                },
            };
            match self.combining {
                // A spot check of a compressed line: it must hold exactly one line.
                Combining::None => Lines {
                    count: 1,
                    malformed: newlines(data) > 1 || !data.ends_with(b"\n"),
                },
                Combining::Kpl => kpl_lines(data),
                Combining::Pack => Lines {
                    count: newlines(data) + u64::from(!data.ends_with(b"\n")),
                    malformed: !data.ends_with(b"\n"),
                },
            }
        })
    }
}

fn malformed(count: u64) -> Lines {
    Lines {
        count,
        malformed: true,
    }
}

fn newlines(data: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', data).count() as u64
}

/// Every gzip member of `compressed`, as `gzip -d` reads a multi-member file.
fn gunzip(compressed: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    out.clear();
    flate2::bufread::MultiGzDecoder::new(compressed)
        .take(MAX_DECOMPRESSED)
        .read_to_end(out)
        .map(drop)
        .map_err(drop)
}

/// Zstandard frames, into `out` at one go when the frame gives its size (as the agent's do),
/// with a decompression context kept from record to record; streamed otherwise (no size, or
/// more than one frame).
fn unzstd(
    compressed: &[u8],
    out: &mut Vec<u8>,
    context: &mut Option<zstd::bulk::Decompressor<'static>>,
) -> Result<(), ()> {
    out.clear();
    let size = zstd::zstd_safe::get_frame_content_size(compressed)
        .ok()
        .flatten();
    if let Some(size) = size.filter(|&size| size <= MAX_DECOMPRESSED) {
        if context.is_none() {
            *context = zstd::bulk::Decompressor::new().ok();
        }
        if let Some(decompressor) = context {
            out.reserve(size as usize);
            if decompressor.decompress_to_buffer(compressed, out).is_ok() {
                return Ok(());
            }
            out.clear();
        }
    }
    zstd::stream::read::Decoder::with_buffer(compressed)
        .map_err(drop)?
        .take(MAX_DECOMPRESSED)
        .read_to_end(out)
        .map(drop)
        .map_err(drop)
}

/// The user records of a KPL aggregate (field 3 of the protobuf); a record without the magic
/// bytes is a plain one-line record, as deaggregators take it.
fn kpl_lines(data: &[u8]) -> Lines {
    if data.len() < KPL_MAGIC.len() + KPL_DIGEST_LEN || data[..KPL_MAGIC.len()] != KPL_MAGIC {
        return Lines {
            count: 1,
            malformed: false,
        };
    }
    let (protobuf, digest) =
        data[KPL_MAGIC.len()..].split_at(data.len() - KPL_MAGIC.len() - KPL_DIGEST_LEN);
    if spot_check() && Md5::digest(protobuf).as_slice() != digest {
        // Deaggregators pass a record whose digest is wrong through as one record.
        return malformed(1);
    }
    match walk_aggregate(protobuf) {
        Some(records) if records > 0 => Lines {
            count: records,
            malformed: false,
        },
        _ => malformed(1),
    }
}

/// Counts the `records` (field 3) of an `AggregatedRecord` and checks the framing: known fields
/// only, lengths within bounds, and every record's partition key index within the key table.
fn walk_aggregate(protobuf: &[u8]) -> Option<u64> {
    let (mut at, mut keys, mut records, mut highest_key_index) = (0, 0u64, 0u64, None);
    while at < protobuf.len() {
        let tag = varint(protobuf, &mut at)?;
        let payload = length_delimited(protobuf, &mut at, tag)?;
        match tag >> 3 {
            1 => keys += 1,
            2 => {}
            3 => {
                let key_index = record_key_index(payload)?;
                highest_key_index = highest_key_index.max(Some(key_index));
                records += 1;
            }
            _ => return None,
        }
    }
    match highest_key_index {
        Some(index) if index >= keys => None,
        _ => Some(records),
    }
}

/// A `Record`'s `partition_key_index` (field 1), after checking it has `data` (field 3).
fn record_key_index(record: &[u8]) -> Option<u64> {
    let (mut at, mut key_index, mut has_data) = (0, None, false);
    while at < record.len() {
        let tag = varint(record, &mut at)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => key_index = Some(varint(record, &mut at)?),
            (2, 0) => {
                varint(record, &mut at)?;
            }
            (3, 2) => {
                length_delimited(record, &mut at, tag)?;
                has_data = true;
            }
            (4, 2) => {
                length_delimited(record, &mut at, tag)?;
            }
            _ => return None,
        }
    }
    key_index.filter(|_| has_data)
}

/// The payload of a length-delimited field whose tag has just been read.
fn length_delimited<'a>(bytes: &'a [u8], at: &mut usize, tag: u64) -> Option<&'a [u8]> {
    if tag & 7 != 2 {
        return None;
    }
    let len = usize::try_from(varint(bytes, at)?).ok()?;
    let end = at.checked_add(len).filter(|&end| end <= bytes.len())?;
    let payload = &bytes[*at..end];
    *at = end;
    Some(payload)
}

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7F) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}
