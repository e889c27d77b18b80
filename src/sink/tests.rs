//! The sink's retry and acknowledgement rules, against a scripted destination.

use std::sync::Mutex;

use bytes::Bytes;

use super::*;
use crate::record::{FileId, FileRange, SourceFile};

/// What the scripted destination does with one call.
#[derive(Clone, Debug)]
enum Reply {
    Accept,
    /// Refuse the records whose data is in this list.
    Refuse(Vec<&'static str>),
    Fail(PutError),
}

#[derive(Default)]
struct Scripted {
    replies: Mutex<VecDeque<Reply>>,
    /// Data of every record of every call, in call order.
    calls: Mutex<Vec<Vec<String>>>,
}

impl Scripted {
    fn new(replies: Vec<Reply>) -> Arc<Self> {
        Arc::new(Self {
            replies: Mutex::new(replies.into()),
            calls: Mutex::default(),
        })
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().expect("lock").clone()
    }
}

impl PutRecords for Scripted {
    async fn put_records(&self, records: &[OutRecord]) -> Result<Vec<RecordFailure>, PutError> {
        let data: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        self.calls.lock().expect("lock").push(data.clone());
        let reply = self
            .replies
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(Reply::Accept);
        match reply {
            Reply::Accept => Ok(Vec::new()),
            Reply::Refuse(refused) => Ok(data
                .iter()
                .enumerate()
                .filter(|(_, d)| refused.contains(&d.as_str()))
                .map(|(index, _)| RecordFailure {
                    index,
                    code: "ProvisionedThroughputExceededException".into(),
                    message: "Rate exceeded".into(),
                })
                .collect()),
            Reply::Fail(error) => Err(error),
        }
    }

    async fn describe(&self) -> Result<StreamStatus, PutError> {
        Ok(StreamStatus {
            status: "ACTIVE".into(),
            open_shards: Some(1),
        })
    }
}

fn source() -> Arc<SourceFile> {
    Arc::new(SourceFile {
        key: 7,
        flow: Arc::from("app"),
        id: FileId {
            device: 1,
            inode: 2,
        },
        head: None,
        path: "/x.log".into(),
    })
}

fn batch(data: &[&'static str], start: u64) -> Batch {
    let records: Vec<OutRecord> = data
        .iter()
        .map(|d| OutRecord {
            data: Bytes::from_static(d.as_bytes()),
            partition_key: "k".into(),
        })
        .collect();
    let end = start + data.iter().map(|d| d.len() as u64).sum::<u64>();
    Batch {
        bytes: records.iter().map(OutRecord::size).sum(),
        records,
        ranges: vec![FileRange {
            file: source(),
            start,
            end,
        }],
    }
}

struct Running {
    batches: mpsc::Sender<Batch>,
    acks: mpsc::Receiver<Ack>,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<FlowMetrics>,
}

fn start(client: Arc<Scripted>, max_in_flight: usize) -> Running {
    let (batches, batches_received) = mpsc::channel(8);
    let (acks_sender, acks) = mpsc::channel(64);
    let metrics = Arc::new(FlowMetrics::default());
    let sink = Sink {
        flow: Arc::from("app"),
        stream: "logs".into(),
        client,
        max_in_flight,
        max_batch_bytes: 5 * 1024 * 1024,
        retry: RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        },
        metrics: Arc::clone(&metrics),
        acks: acks_sender,
    };
    let task = tokio::spawn(sink.run(batches_received));
    Running {
        batches,
        acks,
        task,
        metrics,
    }
}

fn delivered(ack: Ack) -> Vec<(u64, u64)> {
    match ack {
        Ack::Delivered(ranges) => ranges.iter().map(|r| (r.start, r.end)).collect(),
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_partly_failed_call_resends_only_the_failed_records() {
    let client = Scripted::new(vec![
        Reply::Refuse(vec!["b\n", "d\n"]),
        Reply::Refuse(vec!["d\n"]),
        Reply::Accept,
    ]);
    let mut running = start(Arc::clone(&client), 1);
    running
        .batches
        .send(batch(&["a\n", "b\n", "c\n", "d\n"], 0))
        .await
        .expect("send");
    assert_eq!(
        delivered(running.acks.recv().await.expect("ack")),
        vec![(0, 8)]
    );
    assert_eq!(
        client.calls(),
        vec![
            vec!["a\n", "b\n", "c\n", "d\n"],
            vec!["b\n", "d\n"],
            vec!["d\n"]
        ]
    );
    assert_eq!(running.metrics.records_sent.load(Ordering::Relaxed), 4);
    assert_eq!(running.metrics.records_failed.load(Ordering::Relaxed), 3);
    drop(running.batches);
    running.task.await.expect("sink");
}

#[tokio::test(start_paused = true)]
async fn a_failed_call_is_retried_whole_and_acknowledged_only_when_accepted() {
    let throttled = PutError::Throttled {
        message: "slow down".into(),
    };
    let outage = PutError::Unreachable {
        message: "connection refused".into(),
    };
    let client = Scripted::new(vec![
        Reply::Fail(throttled),
        Reply::Fail(outage),
        Reply::Accept,
    ]);
    let mut running = start(Arc::clone(&client), 1);
    running
        .batches
        .send(batch(&["a\n", "b\n"], 10))
        .await
        .expect("send");
    assert_eq!(
        delivered(running.acks.recv().await.expect("ack")),
        vec![(10, 14)]
    );
    assert_eq!(client.calls().len(), 3);
    assert!(client
        .calls()
        .iter()
        .all(|call| call == &vec!["a\n", "b\n"]));
    assert_eq!(running.metrics.calls_failed.load(Ordering::Relaxed), 2);
    drop(running.batches);
    running.task.await.expect("sink");
}

#[tokio::test(start_paused = true)]
async fn a_call_too_large_for_the_endpoint_is_split_in_order() {
    let too_large = PutError::TooLarge {
        message: "413".into(),
    };
    let client = Scripted::new(vec![Reply::Fail(too_large), Reply::Accept, Reply::Accept]);
    let mut running = start(Arc::clone(&client), 1);
    running
        .batches
        .send(batch(&["a\n", "b\n", "c\n"], 0))
        .await
        .expect("send");
    assert_eq!(
        delivered(running.acks.recv().await.expect("ack")),
        vec![(0, 6)]
    );
    assert_eq!(
        client.calls(),
        vec![vec!["a\n", "b\n", "c\n"], vec!["a\n"], vec!["b\n", "c\n"]]
    );
    drop(running.batches);
    running.task.await.expect("sink");
}

/// Sends one single-record batch to a destination that fails it twice with `error`, then
/// accepts it; asserts it was kept, acknowledged once accepted, and retried slowly (at least
/// half the maximum backoff per retry).
async fn assert_kept_and_retried_slowly(error: PutError) {
    let client = Scripted::new(vec![
        Reply::Fail(error.clone()),
        Reply::Fail(error),
        Reply::Accept,
    ]);
    let mut running = start(Arc::clone(&client), 1);
    let started = tokio::time::Instant::now();
    running
        .batches
        .send(batch(&["a\n"], 0))
        .await
        .expect("send");
    assert_eq!(
        delivered(running.acks.recv().await.expect("ack")),
        vec![(0, 2)]
    );
    assert_eq!(client.calls().len(), 3, "never split, never dropped");
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(running.batches);
    running.task.await.expect("sink");
}

#[tokio::test(start_paused = true)]
async fn a_missing_stream_keeps_the_records_and_retries_slowly() {
    assert_kept_and_retried_slowly(PutError::Configuration {
        message: "stream `logs` was not found".into(),
        hint: "create it".into(),
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_single_record_the_endpoint_finds_too_large_is_kept_and_retried_slowly() {
    assert_kept_and_retried_slowly(PutError::TooLarge {
        message: "413".into(),
    })
    .await;
}

/// Two one-record batches, the first of which is refused once; returns the calls made and the
/// ranges acknowledged, in order.
async fn first_of_two_batches_refused_once(
    max_in_flight: usize,
) -> (Vec<Vec<String>>, Vec<(u64, u64)>) {
    let client = Scripted::new(vec![
        Reply::Refuse(vec!["a\n"]),
        Reply::Accept,
        Reply::Accept,
    ]);
    let mut running = start(Arc::clone(&client), max_in_flight);
    running
        .batches
        .send(batch(&["a\n"], 0))
        .await
        .expect("send");
    running
        .batches
        .send(batch(&["b\n"], 2))
        .await
        .expect("send");
    drop(running.batches);
    let mut ranges = Vec::new();
    while let Some(ack) = running.acks.recv().await {
        ranges.extend(delivered(ack));
    }
    running.task.await.expect("sink");
    (client.calls(), ranges)
}

#[tokio::test(start_paused = true)]
async fn several_calls_in_flight_each_acknowledge_their_own_ranges() {
    let (_, ranges) = first_of_two_batches_refused_once(4).await;
    // The retried first batch is acknowledged after the second: the tracker orders them.
    assert_eq!(ranges, vec![(2, 4), (0, 2)]);
}

#[tokio::test(start_paused = true)]
async fn a_batch_waiting_to_retry_gives_its_call_slot_to_the_next_batch() {
    let (calls, ranges) = first_of_two_batches_refused_once(1).await;
    assert_eq!(calls, vec![vec!["a\n"], vec!["b\n"], vec!["a\n"]]);
    assert_eq!(ranges, vec![(2, 4), (0, 2)]);
}

#[tokio::test(start_paused = true)]
async fn the_sink_holds_a_bounded_number_of_batches_however_long_they_retry() {
    // Every call refuses its record for as long as the test runs.
    let client = Scripted::new(vec![Reply::Refuse(vec!["x\n"]); 10_000]);
    let running = start(Arc::clone(&client), 1);
    let mut accepted = 0;
    for index in 0..40 {
        if running
            .batches
            .try_send(batch(&["x\n"], index * 2))
            .is_err()
        {
            break;
        }
        accepted += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // 8 held for one call slot, 1 taken from the queue and waiting for room, 8 in the queue.
    // (Each batch waits in backoff without its slot, so the next one can start.)
    assert_eq!(accepted, HELD_BATCHES_PER_CALL + 1 + 8);
    running.task.abort();
}
