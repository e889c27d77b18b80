//! The sink's retry and acknowledgement rules, against a scripted destination.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use bytes::Bytes;

use super::*;
use crate::record::{FileId, FileRange, SourceFile};

/// What the scripted destination does with one call.
#[derive(Clone, Debug)]
enum Reply {
    Accept,
    /// Refuse the records whose data is in this list, as throttled.
    Refuse(Vec<&'static str>),
    /// Refuse the records whose data is in this list with an internal error (not a throttle,
    /// so the flow's pacing is left alone).
    RefuseInternal(Vec<&'static str>),
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
            Reply::Refuse(refused) => Ok(refusals(
                &data,
                &refused,
                "ProvisionedThroughputExceededException",
                "Rate exceeded",
            )),
            Reply::RefuseInternal(refused) => Ok(refusals(
                &data,
                &refused,
                "InternalFailure",
                "Internal service failure.",
            )),
            Reply::Fail(error) => Err(error),
        }
    }

    async fn describe(&self) -> Result<StreamStatus, PutError> {
        Ok(StreamStatus {
            status: "ACTIVE".into(),
            open_shards: Some(1),
            max_record_bytes: None,
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
    let mut offset = start;
    let records: Vec<OutRecord> = data
        .iter()
        .map(|d| {
            let record = OutRecord {
                data: Bytes::from_static(d.as_bytes()),
                partition_key: "k".into(),
                offset,
                range: 0,
                explicit_hash_key: None,
                lines: 1,
            };
            offset += d.len() as u64;
            record
        })
        .collect();
    Batch {
        bytes: records.iter().map(OutRecord::size).sum(),
        records,
        ranges: vec![FileRange {
            file: source(),
            start,
            end: offset,
        }],
        reserved: crate::limits::Reservation::none(),
    }
}

struct Running {
    batches: mpsc::Sender<Batch>,
    acks: mpsc::Receiver<Ack>,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<FlowMetrics>,
}

fn start(client: Arc<Scripted>, max_in_flight: usize) -> Running {
    start_giving_up(client, max_in_flight, None)
}

fn start_giving_up<P: PutRecords>(
    client: Arc<P>,
    max_in_flight: usize,
    give_up: Option<(Duration, Arc<DeadLetters>)>,
) -> Running {
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
        give_up,
        metrics: Arc::clone(&metrics),
        billing: Billing::KinesisPutUnits,
        compression: crate::compression::Compression::None,
        acks: acks_sender,
        budget: crate::limits::MemoryBudget::new(64 << 20),
        lanes: None,
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

/// A failure for each record of `data` listed in `refused`.
fn refusals(data: &[String], refused: &[&str], code: &str, message: &str) -> Vec<RecordFailure> {
    data.iter()
        .enumerate()
        .filter(|(_, d)| refused.contains(&d.as_str()))
        .map(|(index, _)| RecordFailure {
            index,
            code: code.into(),
            message: message.into(),
        })
        .collect()
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
async fn each_range_counts_as_delivered_once_when_acknowledged_however_often_it_was_sent() {
    let client = Scripted::new(vec![
        Reply::Fail(PutError::Transient {
            message: "internal failure".into(),
        }),
        Reply::Refuse(vec!["b\n"]),
        Reply::Accept,
    ]);
    let mut running = start(Arc::clone(&client), 2);
    let delivered_bytes =
        |running: &Running| running.metrics.bytes_delivered.load(Ordering::Relaxed);
    running
        .batches
        .send(batch(&["a\n", "b\n", "cc\n"], 100))
        .await
        .expect("send");
    assert_eq!(
        delivered(running.acks.recv().await.expect("ack")),
        vec![(100, 107)]
    );
    assert_eq!(
        client.calls().len(),
        3,
        "failed whole, then partly, then accepted"
    );
    assert_eq!(delivered_bytes(&running), 7);
    // Only skipped lines: acknowledged without a call, and counted all the same.
    let mut skipped = batch(&[], 107);
    skipped.ranges[0].end = 120;
    running.batches.send(skipped).await.expect("send");
    assert_eq!(
        delivered(running.acks.recv().await.expect("ack")),
        vec![(107, 120)]
    );
    assert_eq!(delivered_bytes(&running), 20);
    drop(running.batches);
    running.task.await.expect("sink");
}

#[test]
fn a_request_is_counted_as_the_copy_and_the_base64_body_the_client_makes() {
    let records = batch(&["abc", "abcd"], 0).records;
    // 3 + 4 and 4 + 8 bytes of data, a key of 1 byte each.
    assert_eq!(
        request_bytes(&records),
        (3 + 4 + 1) + (4 + 8 + 1) + 2 * REQUEST_RECORD_OVERHEAD
    );
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

/// Two one-record batches, the first of which is refused once (not throttled: a throttle would
/// pace the second batch by a random delay that may outlast the first's retry); returns the
/// calls made and the ranges acknowledged, in order.
async fn first_of_two_batches_refused_once(
    max_in_flight: usize,
) -> (Vec<Vec<String>>, Vec<(u64, u64)>) {
    let client = Scripted::new(vec![
        Reply::RefuseInternal(vec!["a\n"]),
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
    for index in 0..100 {
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

#[tokio::test(start_paused = true)]
async fn records_refused_past_max_retry_duration_go_to_the_dead_letter_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let letters = DeadLetters::in_dir(dir.path());
    // "b" is refused for good; "a" and "c" are accepted at once.
    let client = Scripted::new(vec![Reply::Refuse(vec!["b\n"]); 10_000]);
    let mut running = start_giving_up(
        Arc::clone(&client),
        1,
        Some((Duration::from_secs(30), Arc::clone(&letters))),
    );
    let started = tokio::time::Instant::now();
    running
        .batches
        .send(batch(&["a\n", "b\n", "c\n"], 100))
        .await
        .expect("send");
    assert_eq!(
        delivered(running.acks.recv().await.expect("ack")),
        vec![(100, 106)],
        "acknowledged once the refused record is in the dead-letter file"
    );
    assert!(started.elapsed() >= Duration::from_secs(30));
    let text = std::fs::read_to_string(letters.path()).expect("dead-letter file");
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    assert_eq!(entries.len(), 1, "{text}");
    assert_eq!(entries[0]["data"], "b\n");
    assert_eq!(entries[0]["offset"], 102);
    assert_eq!(entries[0]["file"], "/x.log");
    assert_eq!(entries[0]["flow"], "app");
    assert!(entries[0]["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("ProvisionedThroughputExceededException")));
    let metrics = &running.metrics;
    assert_eq!(metrics.records_dead_lettered.load(Ordering::Relaxed), 1);
    assert_eq!(metrics.records_sent.load(Ordering::Relaxed), 2);
    let calls = client.calls().len() as u64;
    assert_eq!(
        metrics.records_throttled.load(Ordering::Relaxed),
        calls,
        "one throttled record per call"
    );
    assert_eq!(metrics.records_retried.load(Ordering::Relaxed), calls - 1);
    drop(running.batches);
    running.task.await.expect("sink");
}

#[tokio::test(start_paused = true)]
async fn without_max_retry_duration_nothing_is_ever_dead_lettered() {
    let client = Scripted::new(
        std::iter::repeat_n(
            Reply::Fail(PutError::Throttled {
                message: "slow down".into(),
            }),
            400,
        )
        .collect(),
    );
    let mut running = start(Arc::clone(&client), 1);
    running
        .batches
        .send(batch(&["a\n"], 0))
        .await
        .expect("send");
    assert_eq!(
        delivered(running.acks.recv().await.expect("ack")),
        vec![(0, 2)]
    );
    assert_eq!(client.calls().len(), 401, "retried until accepted");
    assert_eq!(
        running
            .metrics
            .records_dead_lettered
            .load(Ordering::Relaxed),
        0
    );
    assert_eq!(
        running.metrics.records_throttled.load(Ordering::Relaxed),
        400
    );
    drop(running.batches);
    running.task.await.expect("sink");
}

#[tokio::test(start_paused = true)]
async fn a_batch_gives_its_memory_back_once_delivered() {
    let budget = crate::limits::MemoryBudget::new(1 << 20);
    let client = Scripted::new(vec![Reply::Refuse(vec!["a\n"])]);
    let mut running = start(Arc::clone(&client), 1);
    let mut sent = batch(&["a\n", "b\n"], 0);
    sent.reserved = budget.reserve(1000).await;
    running.batches.send(sent).await.expect("send");
    let ack = running.acks.recv().await.expect("ack");
    assert_eq!(budget.used(), 0, "released before the acknowledgement");
    assert_eq!(delivered(ack), vec![(0, 4)]);
    drop(running.batches);
    running.task.await.expect("sink");
}

#[test]
fn refused_records_are_read_from_an_answer_in_request_order() {
    let answer = [
        (None, None),
        (
            Some("ProvisionedThroughputExceededException"),
            Some("Rate exceeded"),
        ),
        (None, None),
        (Some("InternalFailure"), None),
    ];
    let refused = refused_records(4, answer.iter().copied()).expect("as many results as records");
    assert_eq!(
        refused,
        [
            RecordFailure {
                index: 1,
                code: "ProvisionedThroughputExceededException".into(),
                message: "Rate exceeded".into(),
            },
            RecordFailure {
                index: 3,
                code: "InternalFailure".into(),
                message: String::new(),
            },
        ]
    );
    assert!(matches!(
        refused_records(5, answer.iter().copied()),
        Err(PutError::Transient { .. })
    ));
}

/// Refuses the second record of its first call, saying so; holds its second call until told
/// to answer.
struct HeldRetry {
    calls: std::sync::atomic::AtomicUsize,
    first_answered: mpsc::Sender<()>,
    retry_arrived: mpsc::Sender<()>,
    answer_retry: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl PutRecords for HeldRetry {
    async fn put_records(&self, _records: &[OutRecord]) -> Result<Vec<RecordFailure>, PutError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = self.first_answered.try_send(());
            return Ok(vec![RecordFailure {
                index: 1,
                code: "ProvisionedThroughputExceededException".into(),
                message: "Rate exceeded".into(),
            }]);
        }
        let _ = self.retry_arrived.send(()).await;
        let answer = self.answer_retry.lock().expect("lock").take();
        if let Some(answer) = answer {
            let _ = answer.await;
        }
        Ok(Vec::new())
    }

    async fn describe(&self) -> Result<StreamStatus, PutError> {
        Err(PutError::Transient {
            message: "not asked".into(),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_accepted_records_of_a_partly_refused_call_free_their_read_buffer_at_once() {
    let (retry_arrived, mut retry_seen) = mpsc::channel(1);
    let (first_answered, mut first_seen) = mpsc::channel(1);
    let (answer, answer_retry) = tokio::sync::oneshot::channel();
    let client = Arc::new(HeldRetry {
        calls: std::sync::atomic::AtomicUsize::new(0),
        first_answered,
        retry_arrived,
        answer_retry: Mutex::new(Some(answer_retry)),
    });
    let mut running = start_giving_up(Arc::clone(&client), 1, None);
    // Three lines sharing one read buffer, as the tailer hands them on.
    let read_buffer = Bytes::from(b"a\nb\ncc\n".to_vec());
    let mut lines = batch(&["a\n", "b\n", "cc\n"], 0);
    for (record, (start, end)) in lines.records.iter_mut().zip([(0, 2), (2, 4), (4, 7)]) {
        record.data = read_buffer.slice(start..end);
    }
    running.batches.send(lines).await.expect("send");
    first_seen.recv().await.expect("the first call");
    // Time stands still while this task keeps running: the sink takes in the answer and
    // starts waiting to send the refused record again (100 ms at most).
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    // While the refused record waits, only its copy is held: nothing keeps the read buffer.
    assert!(read_buffer.is_unique(), "the read buffer is still held");
    retry_seen
        .recv()
        .await
        .expect("the refused record is sent again");
    assert!(read_buffer.is_unique(), "the read buffer is still held");
    answer.send(()).expect("answer the retry");
    assert_eq!(
        delivered(running.acks.recv().await.expect("ack")),
        vec![(0, 7)]
    );
    drop(running.batches);
    running.task.await.expect("sink");
}
