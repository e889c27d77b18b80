use std::path::PathBuf;

use super::*;
use crate::record::FileId;

fn exported(count: usize, first: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for n in first..first + count {
        out.extend_from_slice(
            format!("__CURSOR=s=1;i={n:x}\n__REALTIME_TIMESTAMP=1700000000000000\nMESSAGE=entry {n}\n\n")
                .as_bytes(),
        );
    }
    out
}

fn settings(max_record_bytes: usize) -> ReadSettings {
    ReadSettings {
        flow: Arc::from("system"),
        max_record_bytes,
        metrics: Arc::new(FlowMetrics::default()),
        resumed_at: None,
    }
}

fn journal() -> Arc<SourceFile> {
    Arc::new(SourceFile {
        key: 1,
        flow: Arc::from("system"),
        id: FileId {
            device: u64::MAX,
            inode: 7,
        },
        head: None,
        path: PathBuf::from("system journal"),
    })
}

/// Reads `output` to its end; the blocks handed over.
async fn blocks_of(output: Vec<u8>, position: u64, settings: ReadSettings) -> Vec<Block> {
    let (sender, mut receiver) = mpsc::channel(1024);
    read(&output[..], position, settings, sender)
        .await
        .expect("read");
    let mut blocks = Vec::new();
    while let Ok(block) = receiver.try_recv() {
        blocks.push(block);
    }
    blocks
}

#[tokio::test]
async fn entries_get_positions_from_where_reading_starts_and_blocks_carry_their_last_cursor() {
    let blocks = blocks_of(exported(1200, 0), 40, settings(4096)).await;
    assert!(blocks.len() >= 3, "{} blocks", blocks.len());
    let mut position = 40;
    for block in blocks {
        assert_eq!(block.start, position);
        let last = block.position - 1 - 40;
        assert_eq!(block.last_cursor, Some(format!("s=1;i={last:x}")));
        let lines = block.into_lines(&journal(), Reservation::none());
        for (at, span) in lines.spans.iter().enumerate() {
            let n = lines.file_start + at as u64 - 40;
            let record = &lines.data[span.data_start as usize..span.data_end as usize];
            let record: serde_json::Value = serde_json::from_slice(record).expect("JSON");
            assert_eq!(record["MESSAGE"], format!("entry {n}"));
            assert_eq!(span.file_end, lines.file_start + at as u64 + 1);
        }
        position = lines.spans.last().map_or(position, |span| span.file_end);
    }
    assert_eq!(position, 1240);
}

#[tokio::test]
async fn an_entry_that_cannot_fit_takes_a_position_but_no_record() {
    let mut output = exported(1, 0);
    let many_fields: String = (0..200).map(|n| format!("F{n}=\n")).collect();
    output.extend_from_slice(format!("__CURSOR=s=1;i=1\n{many_fields}\n").as_bytes());
    output.extend_from_slice(&exported(1, 2));
    let settings = settings(512);
    let metrics = Arc::clone(&settings.metrics);
    let blocks = blocks_of(output, 0, settings).await;
    let entries: u64 = blocks.iter().map(Block::entries).sum();
    let records: usize = blocks.iter().map(|block| block.records).sum();
    assert_eq!((entries, records), (3, 2));
    assert_eq!(
        metrics
            .records_truncated
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn the_entry_reading_resumed_at_is_left_out_when_it_comes_first() {
    let resumed = ReadSettings {
        resumed_at: Some("s=1;i=0".into()),
        ..settings(4096)
    };
    let blocks = blocks_of(exported(3, 0), 10, resumed).await;
    let entries: u64 = blocks.iter().map(Block::entries).sum();
    assert_eq!(entries, 2);
    assert_eq!(
        blocks.last().and_then(|b| b.last_cursor.clone()).as_deref(),
        Some("s=1;i=2")
    );
    // Another entry first (the resumed one filtered out, or gone): nothing is left out.
    let elsewhere = ReadSettings {
        resumed_at: Some("s=1;i=9".into()),
        ..settings(4096)
    };
    let blocks = blocks_of(exported(3, 0), 10, elsewhere).await;
    assert_eq!(blocks.iter().map(Block::entries).sum::<u64>(), 3);
}
