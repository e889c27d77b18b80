//! The platform-independent half of a live channel: identity, start, bookmark, errors, the
//! reading thread and the flow's loop, driven by a scripted subscription.

use std::path::Path;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::Config;
use crate::limits::MemoryBudget;
use crate::metrics::FlowMetrics;
use crate::record::Lines;

fn event_xml(record_id: u64) -> String {
    format!(
        "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>\
         <Provider Name='Service Control Manager'/><EventID Qualifiers='16384'>7036</EventID>\
         <Level>4</Level><TimeCreated SystemTime='2026-12-05T12:00:00.000000000Z'/>\
         <EventRecordID>{record_id}</EventRecordID><Channel>System</Channel>\
         <Computer>host-1</Computer></System><EventData><Data Name='param1'>Kinship</Data>\
         </EventData></Event>"
    )
}

#[test]
fn a_channel_keeps_its_identity_in_any_letter_case() {
    let security = channel_id("Security");
    assert_eq!(security, channel_id("Security"));
    assert_eq!(security, channel_id("SECURITY"));
    assert_ne!(security, channel_id("System"));
    assert_eq!(security.device, crate::source::outlet::NAMED_DEVICE);
    assert_eq!(
        channel_id("Microsoft-Windows-Sysmon/Operational"),
        channel_id("microsoft-windows-sysmon/operational")
    );
}

#[test]
fn a_subscription_starts_after_the_position_else_where_initial_position_says() {
    use InitialPosition::{EndOfFile, StartOfFile};
    assert_eq!(start_at(Some(101), EndOfFile), Start::After(100));
    assert_eq!(start_at(Some(101), StartOfFile), Start::After(100));
    assert_eq!(start_at(None, StartOfFile), Start::Oldest);
    assert_eq!(start_at(None, EndOfFile), Start::NewOnly);
    assert_eq!(start_at(Some(0), EndOfFile), Start::Oldest);
    // Record ids start at 1: a bookmark on record 0 would name no event.
    assert_eq!(start_at(Some(1), StartOfFile), Start::Oldest);
    assert_eq!(start_at(Some(2), StartOfFile), Start::After(1));
}

#[test]
fn a_bookmark_names_the_channel_and_the_last_record_sent() {
    assert_eq!(
        bookmark_xml("Security", 4242),
        "<BookmarkList><Bookmark Channel='Security' RecordId='4242' IsCurrent='true'/></BookmarkList>"
    );
    assert_eq!(
        bookmark_xml("A&B's <log>", 1),
        "<BookmarkList><Bookmark Channel='A&amp;B&apos;s &lt;log&gt;' RecordId='1' IsCurrent='true'/></BookmarkList>"
    );
    // The XML reads back as one bookmark of that channel.
    let xml = bookmark_xml("A&B's <log>", 1);
    let document = roxmltree::Document::parse(&xml).expect("well-formed");
    let bookmark = document
        .descendants()
        .find(|node| node.has_tag_name("Bookmark"))
        .expect("a bookmark");
    assert_eq!(bookmark.attribute("Channel"), Some("A&B's <log>"));
}

#[test]
fn api_failures_say_what_to_do() {
    let missing = SubscribeError {
        call: "EvtSubscribe",
        code: 15007,
    }
    .to_string();
    assert!(
        missing.starts_with("EvtSubscribe failed: no such channel")
            && missing.contains("wevtutil el"),
        "{missing}"
    );
    let denied = SubscribeError {
        call: "EvtSubscribe",
        code: 5,
    }
    .to_string();
    assert!(
        denied.contains("access denied") && denied.contains("Event Log Readers"),
        "{denied}"
    );
    let silent = SubscribeError {
        call: "EvtSubscribe",
        code: 0,
    }
    .to_string();
    assert!(silent.contains("gave no reason"), "{silent}");
    let other = SubscribeError {
        call: "EvtNext",
        code: 1234,
    }
    .to_string();
    assert_eq!(other, "EvtNext failed: Windows error 1234");
}

#[test]
fn retries_wait_longer_each_time_up_to_a_minute() {
    let waits: Vec<u64> = (0..9).map(|tries| retry_after(tries).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(retry_after(u32::MAX), RETRY_MAX);
}

/// A subscription that hands over scripted answers, then none.
struct Scripted(Vec<Result<Vec<Rendering>, SubscribeError>>);

impl Subscribed for Scripted {
    fn next_events(
        &mut self,
        _max: usize,
        wait: Duration,
    ) -> Result<Vec<Rendering>, SubscribeError> {
        if self.0.is_empty() {
            std::thread::sleep(wait.min(Duration::from_millis(5)));
            return Ok(Vec::new());
        }
        self.0.remove(0)
    }
}

#[test]
fn the_reading_thread_hands_over_events_and_the_ones_it_cannot_read() {
    fn open(_: &Subscription) -> Result<Box<dyn Subscribed + Send>, SubscribeError> {
        Ok(Box::new(Scripted(vec![
            Ok(vec![
                Ok(event_xml(7)),
                Ok("<Event>".into()),
                Ok(event_xml(8)),
                Err(SubscribeError {
                    call: "EvtRender",
                    code: 1234,
                }),
                Ok(event_xml(9)),
                Ok("<Event><System><EventRecordID>10</EventRecordID></Oops></Event>".into()),
            ]),
            Err(SubscribeError {
                call: "EvtNext",
                code: 15011,
            }),
        ])))
    }
    let (sender, mut out) = mpsc::channel(16);
    let subscription = Subscription {
        channel: "System".into(),
        query: None,
        start: Start::Oldest,
    };
    read_channel(open, subscription, sender);
    let mut reads = Vec::new();
    while let Ok(read) = out.try_recv() {
        reads.push(read);
    }
    assert!(matches!(reads[0], LiveRead::Subscribed), "{reads:?}");
    let LiveRead::Events(first) = &reads[1] else {
        panic!("{reads:?}")
    };
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].record_id, 7);
    let record: serde_json::Value = serde_json::from_slice(&first[0].json).expect("json");
    assert_eq!(record["EventID"], 7036);
    assert_eq!(record["EventData"]["param1"], "Kinship");
    assert!(matches!(reads[2], LiveRead::Skipped(_)), "{reads:?}");
    assert!(matches!(&reads[3], LiveRead::Events(events) if events[0].record_id == 8));
    assert!(
        matches!(&reads[4], LiveRead::Skipped(error) if error.contains("EvtRender failed")),
        "{reads:?}"
    );
    let LiveRead::Events(last) = &reads[5] else {
        panic!("{reads:?}")
    };
    assert_eq!(last[0].record_id, 9);
    // Damaged XML that still names its record id is sent as it is, as for files.
    assert_eq!(last[1].record_id, 10);
    let damaged: serde_json::Value = serde_json::from_slice(&last[1].json).expect("json");
    assert_eq!(damaged["EventRecordID"], 10);
    assert!(damaged["RenderError"].is_string(), "{damaged}");
    assert!(damaged["Xml"]
        .as_str()
        .is_some_and(|xml| xml.contains("Oops")));
    assert!(matches!(&reads[6], LiveRead::Failed(failure) if failure.code == 15011));
    assert_eq!(reads.len(), 7);
}

/// How long a test waits for what the flow should send.
const WAIT: Duration = Duration::from_secs(10);

/// A channel flow around `open`, with its checkpoint at `checkpoint` when given.
struct Harness {
    acks: mpsc::Receiver<Ack>,
    lines: mpsc::Receiver<Lines>,
    cancel: CancellationToken,
    run: tokio::task::JoinHandle<()>,
}

/// For flows that never ask for the newest event (`start_of_file`, or a checkpoint).
fn never_asked(_: &str) -> Result<Option<u64>, SubscribeError> {
    panic!("the newest event is asked for only with end_of_file and no checkpoint")
}

fn start_flow(open: Open, checkpoint: Option<u64>, query: Option<&str>) -> Harness {
    start_flow_at(open, never_asked, "start_of_file", checkpoint, query)
}

fn start_flow_at(
    open: Open,
    newest: Newest,
    initial_position: &str,
    checkpoint: Option<u64>,
    query: Option<&str>,
) -> Harness {
    let text = format!("flows:\n  - name: system\n    files: /var/log/x.log\n    kinesis_stream: s\n    scan_interval: 1h\n    initial_position: {initial_position}\n");
    let text = text.as_str();
    let config = Config::parse(Path::new("/etc/k.yaml"), text).expect("valid");
    let flow = Arc::new(config.flows[0].clone());
    let (lines_out, lines) = mpsc::channel(16);
    let (acks_out, acks) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let checkpoints = checkpoint
        .map(|offset| {
            let known = KnownOffset {
                offset,
                head: None,
                path: None,
                original: None,
                cursor: None,
            };
            (channel_id("System"), known)
        })
        .into_iter()
        .collect();
    let live = EventLogChannel {
        channel: "System".into(),
        query: query.map(str::to_owned),
        checkpoints,
        outlet: Outlet {
            flow,
            lines: lines_out,
            acks: acks_out,
            metrics: Arc::new(FlowMetrics::default()),
            budget: MemoryBudget::new(64 << 20),
            cancel: cancel.clone(),
        },
    };
    let run = tokio::spawn(live.run_with(open, newest));
    Harness {
        acks,
        lines,
        cancel,
        run,
    }
}

impl Harness {
    /// The next acknowledgement that is not a keep-alive.
    async fn ack(&mut self) -> Ack {
        loop {
            let ack = tokio::time::timeout(WAIT, self.acks.recv()).await;
            match ack.expect("an ack in time").expect("an ack") {
                Ack::Seen { .. } => continue,
                other => return other,
            }
        }
    }

    /// The record ids ending the next lines' spans.
    async fn ends(&mut self) -> Vec<u64> {
        let lines = tokio::time::timeout(WAIT, self.lines.recv())
            .await
            .expect("lines in time")
            .expect("lines");
        lines.spans.iter().map(|span| span.file_end).collect()
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.run.await.expect("the flow stops");
    }
}

static SUBSCRIBED: Mutex<Vec<Subscription>> = Mutex::new(Vec::new());

#[tokio::test]
async fn a_flow_resumes_after_its_checkpoint_and_positions_by_record_id() {
    fn open(wanted: &Subscription) -> Result<Box<dyn Subscribed + Send>, SubscribeError> {
        SUBSCRIBED.lock().expect("lock").push(wanted.clone());
        Ok(Box::new(Scripted(vec![Ok(vec![
            Ok(event_xml(41)),
            Ok(event_xml(42)),
        ])])))
    }
    let mut flow = start_flow(open, Some(41), None);
    let Ack::Opened { file, offset, .. } = flow.ack().await else {
        panic!("opened first")
    };
    assert_eq!(offset, 41);
    assert_eq!(file.id, channel_id("System"));
    assert_eq!(flow.ends().await, [42, 43]);
    flow.stop().await;
    let subscribed = SUBSCRIBED.lock().expect("lock").clone();
    assert_eq!(subscribed[0].start, Start::After(40));
    assert_eq!(subscribed[0].channel, "System");
}

#[tokio::test]
async fn a_cleared_channel_is_read_again_from_its_first_event() {
    fn open(_: &Subscription) -> Result<Box<dyn Subscribed + Send>, SubscribeError> {
        Ok(Box::new(Scripted(vec![Ok([10, 11, 1, 2]
            .into_iter()
            .map(|id| Ok(event_xml(id)))
            .collect())])))
    }
    let mut flow = start_flow(open, None, None);
    let Ack::Opened {
        file: first_reading,
        offset: 10,
        ..
    } = flow.ack().await
    else {
        panic!("opened at the first event")
    };
    assert_eq!(flow.ends().await, [11, 12]);
    let Ack::Restarted { file, offset, .. } = flow.ack().await else {
        panic!("restarted")
    };
    assert_eq!(offset, 1);
    assert_eq!(file.id, first_reading.id);
    assert_ne!(file.key, first_reading.key, "a new reading");
    assert_eq!(flow.ends().await, [2, 3]);
    flow.stop().await;
}

static TRIES: Mutex<u32> = Mutex::new(0);

#[tokio::test(start_paused = true)]
async fn a_failing_subscription_is_tried_again_until_shutdown() {
    fn open(_: &Subscription) -> Result<Box<dyn Subscribed + Send>, SubscribeError> {
        *TRIES.lock().expect("lock") += 1;
        Err(SubscribeError {
            call: "EvtSubscribe",
            code: 15007,
        })
    }
    let flow = start_flow(open, None, Some("*"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while *TRIES.lock().expect("lock") < 3 {
        assert!(tokio::time::Instant::now() < deadline, "tried again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    flow.stop().await;
}

static FROM_NEWEST: Mutex<Vec<Subscription>> = Mutex::new(Vec::new());

#[tokio::test]
async fn end_of_file_starts_after_the_newest_event_and_saves_that_at_once() {
    fn newest(channel: &str) -> Result<Option<u64>, SubscribeError> {
        assert_eq!(channel, "System");
        Ok(Some(500))
    }
    fn open(wanted: &Subscription) -> Result<Box<dyn Subscribed + Send>, SubscribeError> {
        FROM_NEWEST.lock().expect("lock").push(wanted.clone());
        Ok(Box::new(Scripted(vec![Ok(vec![Ok(event_xml(501))])])))
    }
    let mut flow = start_flow_at(open, newest, "end_of_file", None, None);
    // The position is announced (and so saved) before any event arrives.
    let Ack::Opened { offset, .. } = flow.ack().await else {
        panic!("opened first")
    };
    assert_eq!(offset, 501);
    assert_eq!(flow.ends().await, [502]);
    flow.stop().await;
    let subscribed = FROM_NEWEST.lock().expect("lock").clone();
    assert_eq!(subscribed[0].start, Start::After(500));
}

#[tokio::test]
async fn an_empty_channel_at_end_of_file_is_read_from_its_start() {
    fn newest(_: &str) -> Result<Option<u64>, SubscribeError> {
        Ok(None)
    }
    fn open(wanted: &Subscription) -> Result<Box<dyn Subscribed + Send>, SubscribeError> {
        assert_eq!(wanted.start, Start::Oldest);
        Ok(Box::new(Scripted(vec![Ok(vec![Ok(event_xml(1))])])))
    }
    let mut flow = start_flow_at(open, newest, "end_of_file", None, None);
    let Ack::Opened { offset, .. } = flow.ack().await else {
        panic!("opened first")
    };
    assert_eq!(offset, 1);
    assert_eq!(flow.ends().await, [2]);
    flow.stop().await;
}

static NEWEST_TRIES: Mutex<u32> = Mutex::new(0);

#[tokio::test(start_paused = true)]
async fn end_of_file_waits_for_the_newest_event_rather_than_taking_only_new_ones() {
    fn newest(_: &str) -> Result<Option<u64>, SubscribeError> {
        let mut tries = NEWEST_TRIES.lock().expect("lock");
        *tries += 1;
        if *tries < 3 {
            return Err(SubscribeError {
                call: "EvtQuery",
                code: 5,
            });
        }
        Ok(Some(7))
    }
    fn open(wanted: &Subscription) -> Result<Box<dyn Subscribed + Send>, SubscribeError> {
        assert_eq!(wanted.start, Start::After(7));
        Ok(Box::new(Scripted(vec![Ok(vec![Ok(event_xml(8))])])))
    }
    let mut flow = start_flow_at(open, newest, "end_of_file", None, None);
    let Ack::Opened { offset, .. } = flow.ack().await else {
        panic!("opened first")
    };
    assert_eq!(offset, 8);
    assert_eq!(flow.ends().await, [9]);
    assert_eq!(*NEWEST_TRIES.lock().expect("lock"), 3);
    flow.stop().await;
}

static GONE: Mutex<Vec<Subscription>> = Mutex::new(Vec::new());

#[tokio::test]
async fn a_bookmark_whose_event_is_gone_starts_at_the_oldest_event() {
    fn open(wanted: &Subscription) -> Result<Box<dyn Subscribed + Send>, SubscribeError> {
        GONE.lock().expect("lock").push(wanted.clone());
        if matches!(wanted.start, Start::After(_)) {
            return Err(SubscribeError {
                call: "EvtSubscribe",
                code: ERROR_NOT_FOUND,
            });
        }
        // The channel was cleared: its record ids start again below the checkpoint.
        Ok(Box::new(Scripted(vec![Ok(vec![
            Ok(event_xml(1)),
            Ok(event_xml(2)),
        ])])))
    }
    let mut flow = start_flow(open, Some(41), None);
    let Ack::Opened { offset: 41, .. } = flow.ack().await else {
        panic!("opened at the checkpoint")
    };
    let Ack::Restarted { offset, .. } = flow.ack().await else {
        panic!("a new reading from the cleared channel's first event")
    };
    assert_eq!(offset, 1);
    assert_eq!(flow.ends().await, [2, 3]);
    flow.stop().await;
    let starts: Vec<Start> = GONE
        .lock()
        .expect("lock")
        .iter()
        .map(|wanted| wanted.start.clone())
        .collect();
    assert_eq!(starts, [Start::After(40), Start::Oldest]);
}
