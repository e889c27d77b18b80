//! Opt-in compression of each record's payload (after aggregation or packing), and the room
//! kept for it. Bottom layer: imports only the record types. Compressed data can be a little
//! larger than the input when the input does not compress, so records are built that much
//! under the record limit.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;

use crate::record::OutRecord;

/// How record payloads are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    /// gzip (RFC 1952), level 1: most of the saving for a fraction of the CPU of level 6.
    Gzip,
    /// Zstandard frames, level 3.
    Zstd,
}

const ZSTD_LEVEL: i32 = 3;

impl Compression {
    /// Bytes kept free under the record limit so that the compressed payload still fits:
    /// both formats grow incompressible input by well under 1/128 plus a header.
    pub fn margin(self, record_limit: usize) -> usize {
        match self {
            Compression::None => 0,
            Compression::Gzip | Compression::Zstd => record_limit / 128 + 256,
        }
    }

    /// `data`, compressed; a copy of it when compression is off.
    pub fn apply(self, data: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut encoder = GzEncoder::new(
                    Vec::with_capacity(data.len() / 4 + 64),
                    flate2::Compression::fast(),
                );
                // Writing to a Vec cannot fail.
                match encoder.write_all(data).and_then(|()| encoder.finish()) {
                    Ok(compressed) => compressed,
                    Err(_) => data.to_vec(),
                }
            }
            Compression::Zstd => {
                zstd::bulk::compress(data, ZSTD_LEVEL).unwrap_or_else(|_| data.to_vec())
            }
        }
    }
}

/// Compresses the data of each of `records` (in place); nothing when compression is off.
pub fn compress_records(records: &mut [OutRecord], compression: Compression) {
    if compression == Compression::None {
        return;
    }
    for record in records {
        record.data = Bytes::from(compression.apply(&record.data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn lines() -> Vec<u8> {
        (0..2000)
            .map(|i| {
                format!(
                    "10.0.0.{} - - \"GET /item/{i} HTTP/1.1\" 200 {}\n",
                    i % 250,
                    i * 7
                )
            })
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn both_formats_round_trip_and_shrink_log_lines() {
        let data = lines();
        let gzip = Compression::Gzip.apply(&data);
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gzip[..])
            .read_to_end(&mut unzipped)
            .expect("gunzip");
        assert_eq!(unzipped, data);
        assert!(
            gzip.len() * 4 < data.len(),
            "{} of {}",
            gzip.len(),
            data.len()
        );
        let zstd = Compression::Zstd.apply(&data);
        assert_eq!(zstd::stream::decode_all(&zstd[..]).expect("unzstd"), data);
        assert!(
            zstd.len() * 4 < data.len(),
            "{} of {}",
            zstd.len(),
            data.len()
        );
        assert_eq!(Compression::None.apply(&data), data);
    }

    #[test]
    fn incompressible_data_stays_within_the_margin() {
        let mut random = fastrand::Rng::with_seed(7);
        for size in [1usize, 100, 5000, 1024 * 1024] {
            let data: Vec<u8> = (0..size).map(|_| random.u8(..)).collect();
            for kind in [Compression::Gzip, Compression::Zstd] {
                let compressed = kind.apply(&data);
                assert!(
                    compressed.len() <= size + kind.margin(size.max(1024 * 1024)),
                    "{kind:?} {size}: {}",
                    compressed.len()
                );
            }
        }
    }
}
