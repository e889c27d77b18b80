//! Checks the kinesalite harness itself: that bytes written with the SDK come back unchanged,
//! complete and in order through `read_all`, so whole-agent tests can trust what it reports.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::kinesalite::{self, Kinesalite, StoredRecord};

const RECORDS: usize = 1_200;

/// Sequence numbers are decimal strings of up to 128+ bits: compare them as numbers.
fn sequence_cmp(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn assert_increasing(records: &[StoredRecord]) {
    for pair in records.windows(2) {
        assert_eq!(
            sequence_cmp(&pair[0].sequence_number, &pair[1].sequence_number),
            Ordering::Less,
            "sequence numbers out of order in {}: {} then {}",
            pair[0].shard_id,
            pair[0].sequence_number,
            pair[1].sequence_number
        );
    }
}

/// Record `i`'s payload: not UTF-8, with NUL, CR LF, a lone CR and LF, and a varying length.
fn payload(i: usize) -> Vec<u8> {
    let mut data = format!("line {i:05} ").into_bytes();
    data.extend_from_slice(&[0x00, 0xff, 0xfe, b'\r', b'\n', 0xc3, 0x28, 0x80, b'\r']);
    data.extend_from_slice(&(i as u32).to_le_bytes());
    data.extend((0..i % 41).map(|j| (i * 31 + j * 7) as u8));
    data.push(b'\n');
    data
}

#[tokio::test]
async fn kinesalite_round_trips_bytes_in_order_on_one_shard() {
    let server = Kinesalite::start();
    let client = kinesalite::client(&server.endpoint).await;
    kinesalite::create_stream(&client, "selftest-one", 1).await;

    let sent: Vec<(String, Vec<u8>)> = (0..RECORDS)
        .map(|i| (format!("pk-{}", i % 13), payload(i)))
        .collect();
    let placed = kinesalite::put_records(&client, "selftest-one", &sent).await;

    let stored =
        kinesalite::read_all(&client, "selftest-one", RECORDS, Duration::from_secs(30)).await;

    assert_eq!(stored.len(), RECORDS, "records read back");
    for (i, (record, (key, data))) in stored.iter().zip(&sent).enumerate() {
        assert_eq!(&record.data, data, "data of record {i}");
        assert_eq!(&record.partition_key, key, "partition key of record {i}");
        assert_eq!(record.shard_id, placed[i].0, "shard of record {i}");
        assert_eq!(
            record.sequence_number, placed[i].1,
            "sequence number of record {i}"
        );
    }
    assert_increasing(&stored);
}

#[tokio::test]
async fn kinesalite_returns_every_record_of_a_four_shard_stream() {
    let server = Kinesalite::start();
    let client = kinesalite::client(&server.endpoint).await;
    kinesalite::create_stream(&client, "selftest-four", 4).await;
    assert_eq!(
        kinesalite::list_shards(&client, "selftest-four")
            .await
            .len(),
        4,
        "shards listed"
    );

    let sent: Vec<(String, Vec<u8>)> = (0..RECORDS)
        .map(|i| (format!("host-{}.example/{}", i % 97, i % 5), payload(i)))
        .collect();
    let placed = kinesalite::put_records(&client, "selftest-four", &sent).await;

    let stored =
        kinesalite::read_all(&client, "selftest-four", RECORDS, Duration::from_secs(30)).await;
    assert_eq!(stored.len(), RECORDS, "records read back");

    let mut expected: Vec<(&str, &[u8])> = sent
        .iter()
        .map(|(key, data)| (key.as_str(), data.as_slice()))
        .collect();
    let mut actual: Vec<(&str, &[u8])> = stored
        .iter()
        .map(|r| (r.partition_key.as_str(), r.data.as_slice()))
        .collect();
    expected.sort_unstable();
    actual.sort_unstable();
    assert!(
        expected == actual,
        "the records read back are not the records sent"
    );

    // Within each shard, records come back in the order they were written.
    let mut by_shard: BTreeMap<&str, Vec<StoredRecord>> = BTreeMap::new();
    for record in &stored {
        by_shard
            .entry(record.shard_id.as_str())
            .or_default()
            .push(record.clone());
    }
    assert!(
        by_shard.len() > 1,
        "1,200 records over 97 hosts all landed on one shard: {:?}",
        by_shard.keys().collect::<Vec<_>>()
    );
    for (shard, records) in &by_shard {
        assert_increasing(records);
        let written: Vec<(&str, &[u8], &str)> = sent
            .iter()
            .zip(&placed)
            .filter(|(_, (placed_shard, _))| placed_shard == shard)
            .map(|((key, data), (_, seq))| (key.as_str(), data.as_slice(), seq.as_str()))
            .collect();
        let read: Vec<(&str, &[u8], &str)> = records
            .iter()
            .map(|r| {
                (
                    r.partition_key.as_str(),
                    r.data.as_slice(),
                    r.sequence_number.as_str(),
                )
            })
            .collect();
        assert!(
            written == read,
            "shard {shard}: {} records written, {} read, not the same sequence",
            written.len(),
            read.len()
        );
    }

    // A partition key maps to one shard.
    let mut shard_of_key: BTreeMap<&str, &str> = BTreeMap::new();
    for record in &stored {
        let shard = shard_of_key
            .entry(record.partition_key.as_str())
            .or_insert(record.shard_id.as_str());
        assert_eq!(
            *shard, record.shard_id,
            "partition key {} found on two shards",
            record.partition_key
        );
    }
}
