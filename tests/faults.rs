//! Delivery under faults: the real agent binary against the fault-injecting Kinesis server.
//! Every test fails if a line is lost; each reports lines written / delivered / duplicated
//! (run with `--nocapture` to see the figures).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::agent::Agent;
use crate::support::config::{AgentConfig, Flow};
use crate::support::fault_kinesis::{delivery_report, DeliveryReport, FaultKinesis, Faults};
use crate::support::files::open_log;
use crate::support::wait;
use crate::support::wait::holds_within;

const EXIT_DEADLINE: Duration = Duration::from_secs(30);
/// How long a scenario may take to deliver everything; generous for a debug build on a busy
/// two-core machine.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(300);

/// Line `index`: unique, about 100 bytes, newline-terminated.
fn line(index: usize) -> Vec<u8> {
    format!(
        "{index:08} 127.0.0.1 - - [23/Nov/2026:10:00:00 +0000] \"GET /item/{index} HTTP/1.1\" 200 512 \"-\" \"probe\"\n"
    )
    .into_bytes()
}

fn write_lines(path: &Path, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    let mut file = std::io::BufWriter::new(open_log(path));
    let lines: Vec<Vec<u8>> = range.map(line).collect();
    for one in &lines {
        file.write_all(one).expect("write line");
    }
    file.flush().expect("flush");
    lines
}

/// A config shipping `<dir>/logs/*` from their start to `endpoint`, with short backoffs so
/// faults cost seconds, not minutes; `flow` and `top` add keys.
fn config(dir: &Path, endpoint: &str, flow: &[&str], top: &[&str]) -> PathBuf {
    let mut app = Flow::kinesis("app", format!("{}/logs/*", dir.display()), "faults")
        .keys(&["retry_max_backoff: 1s", "poll_interval: 100ms"]);
    if !flow.iter().any(|key| key.starts_with("initial_position")) {
        app = app.key("initial_position: start_of_file");
    }
    AgentConfig::new(dir)
        .tops(&["progress_interval: 1s", "shutdown_grace: 20s"])
        .emulator("us-east-1", endpoint)
        .aws_keys(&["request_timeout: 2s", "connect_timeout: 1s"])
        .tops(top)
        .flow(app.keys(flow))
        .write()
}

/// Waits until every line of `expected` was stored, or the deadline passes.
fn wait_delivered(server: &FaultKinesis, expected: &[Vec<u8>], deadline: Duration) -> bool {
    // Comparing every record is not cheap: a slower pace than the default.
    wait::poll_every(Duration::from_millis(200), deadline, || {
        let complete = server.accepted_len() >= expected.len()
            && delivery_report(expected, &server.accepted()).lost == 0;
        complete.then_some(())
    })
    .is_some()
}

fn logs_dir(dir: &Path) -> PathBuf {
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).expect("logs dir");
    logs
}

/// Ships `lines` lines through a server injecting `faults`; stops the agent and reports.
fn ship_through(name: &str, faults: Faults, lines: usize) -> (DeliveryReport, FaultKinesis) {
    ship_through_with(name, faults, lines, &[])
}

/// As [`ship_through`], with `flow` keys added to the flow.
fn ship_through_with(
    name: &str,
    faults: Faults,
    lines: usize,
    flow: &[&str],
) -> (DeliveryReport, FaultKinesis) {
    let server = FaultKinesis::start(faults);
    let dir = tempfile::tempdir().expect("temp dir");
    let expected = write_lines(&logs_dir(dir.path()).join("app.log"), 0..lines);
    let config = config(dir.path(), &server.endpoint(), flow, &[]);
    let mut agent = Agent::start(&config, dir.path());
    let complete = wait_delivered(&server, &expected, DELIVERY_DEADLINE);
    agent.signal("TERM");
    let status = agent.wait_exit(EXIT_DEADLINE);
    let report = delivery_report(&expected, &server.accepted());
    eprintln!(
        "faults {name}: written {lines}, delivered {}, duplicated {}, server {:?}",
        lines - report.lost,
        report.duplicates,
        server.stats()
    );
    let output = agent.output();
    assert!(complete && report.lost == 0, "{report:?}\n{output}");
    assert_eq!(report.unexpected, 0, "records no line had");
    assert!(status.success(), "{output}");
    assert!(!output.contains("panicked"), "{output}");
    (report, server)
}

/// Lines in the calls whose outcome the agent could not know: the only ones it may repeat.
fn unknown_outcome_records(server: &FaultKinesis) -> usize {
    let stats = server.stats();
    (stats.resets_after + stats.stalls) as usize * 500
}

const LINES: usize = 200_000;

#[test]
fn faults_per_record_throttling_loses_and_repeats_nothing() {
    let (report, server) = ship_through(
        "30% records throttled",
        Faults {
            record_throttle_percent: 30.0,
            ..Faults::default()
        },
        LINES,
    );
    assert_eq!(report.duplicates, 0);
    assert!(server.stats().record_throttled > 0);
}

#[test]
fn faults_per_record_internal_failures_lose_and_repeat_nothing() {
    let (report, server) = ship_through(
        "5% records InternalFailure",
        Faults {
            record_internal_percent: 5.0,
            ..Faults::default()
        },
        LINES,
    );
    assert_eq!(report.duplicates, 0);
    assert!(server.stats().record_internal > 0);
}

#[test]
fn faults_whole_call_throttling_and_server_errors_lose_and_repeat_nothing() {
    let (report, server) = ship_through(
        "10% calls throttled, 5% calls 5xx",
        Faults {
            call_throttle_percent: 10.0,
            call_5xx_percent: 5.0,
            ..Faults::default()
        },
        LINES,
    );
    assert_eq!(report.duplicates, 0);
    let stats = server.stats();
    assert!(
        stats.calls_throttled > 0 && stats.calls_5xx > 0,
        "{stats:?}"
    );
}

#[test]
fn faults_connection_resets_repeat_only_calls_that_may_have_arrived() {
    let (report, server) = ship_through(
        "2% resets before and 2% after storing",
        Faults {
            reset_before_percent: 2.0,
            reset_after_percent: 2.0,
            ..Faults::default()
        },
        LINES,
    );
    let stats = server.stats();
    assert!(
        stats.resets_before > 0 && stats.resets_after > 0,
        "{stats:?}"
    );
    assert!(
        report.duplicates <= unknown_outcome_records(&server),
        "{report:?} {stats:?}"
    );
}

#[test]
fn faults_stalled_and_slow_answers_repeat_only_the_stalled_calls() {
    let (report, server) = ship_through(
        "1% stalls past the 2 s timeout, 5% slow answers",
        Faults {
            stall_percent: 1.0,
            stall: Duration::from_secs(4),
            slow_percent: 5.0,
            slow: Duration::from_millis(300),
            ..Faults::default()
        },
        LINES,
    );
    let stats = server.stats();
    assert!(stats.stalls > 0 && stats.slow > 0, "{stats:?}");
    assert!(
        report.duplicates <= unknown_outcome_records(&server),
        "{report:?} {stats:?}"
    );
}

/// Every fault at once, through the data path and wire format that `flow` sets.
fn all_faults_through(flow: &[&str]) -> FaultKinesis {
    let (report, server) = ship_through_with(
        &format!("all: 30% records throttled, 5% 5xx, 2% resets, 1% stalls; {flow:?}"),
        Faults {
            record_throttle_percent: 30.0,
            call_5xx_percent: 5.0,
            reset_before_percent: 1.0,
            reset_after_percent: 1.0,
            stall_percent: 1.0,
            stall: Duration::from_secs(4),
            ..Faults::default()
        },
        LINES,
        flow,
    );
    let stats = server.stats();
    assert!(
        report.duplicates <= unknown_outcome_records(&server),
        "{report:?} {stats:?}"
    );
    // Every call was signed correctly: the server checks each signature as AWS does.
    assert!(
        stats.signatures_refused == 0 && stats.signatures_verified > 0,
        "{stats:?}"
    );
    server
}

#[test]
fn faults_all_together_lose_nothing() {
    // The default: kinship's own requests in JSON.
    let stats = all_faults_through(&[]).stats();
    assert!(
        stats.json_put_calls > 0 && stats.cbor_put_calls == 0,
        "{stats:?}"
    );
}

#[test]
fn faults_all_together_lose_nothing_in_cbor_and_through_the_sdk() {
    let stats = all_faults_through(&["wire_format: cbor"]).stats();
    assert!(
        stats.cbor_put_calls > 0 && stats.json_put_calls == 0,
        "{stats:?}"
    );
    let stats = all_faults_through(&["data_path: sdk"]).stats();
    assert!(
        stats.json_put_calls > 0 && stats.cbor_put_calls == 0,
        "{stats:?}"
    );
}

#[test]
fn faults_an_outage_loses_nothing_and_the_agent_says_so() {
    let server = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let log = logs_dir(dir.path()).join("app.log");
    let mut expected = write_lines(&log, 0..20_000);
    let config = config(dir.path(), &server.endpoint(), &[], &[]);
    let mut agent = Agent::start(&config, dir.path());
    assert!(holds_within(Duration::from_secs(60), || server
        .accepted_len()
        >= 5_000));
    server.set_down(true);
    expected.extend(write_lines(&log, 20_000..60_000));
    agent.wait_for_log("cannot reach the endpoint", Duration::from_secs(30));
    server.set_down(false);
    assert!(wait_delivered(&server, &expected, DELIVERY_DEADLINE));
    agent.wait_for_log("accepts records again", Duration::from_secs(30));
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());
    let report = delivery_report(&expected, &server.accepted());
    eprintln!(
        "faults outage: written {}, delivered {}, duplicated {}",
        expected.len(),
        expected.len() - report.lost,
        report.duplicates
    );
    assert_eq!(report.lost, 0);
    // Calls cut off when the port closed may have been stored: at most one per call slot.
    assert!(report.duplicates <= 4 * 500, "{report:?}");
}

#[test]
fn faults_a_rate_limited_stream_is_paced_not_hammered() {
    // A shard taking 2,000 records a second; 30,000 lines take at least 15 s whatever the
    // agent does. Without pacing it sends calls of 500 as fast as backoff allows, most of each
    // refused.
    let allowed = 2_000;
    let started = Instant::now();
    let (report, server) = ship_through(
        "rate limit 2,000 records/s",
        Faults {
            records_per_second: Some(allowed),
            ..Faults::default()
        },
        30_000,
    );
    assert_eq!(report.duplicates, 0);
    let stats = server.stats();
    let retry_ratio = stats.rate_limited as f64 / 30_000.0;
    eprintln!(
        "faults rate limit: {} refusals for 30,000 records (retry ratio {retry_ratio:.2}), {} calls, {:.0} records/s delivered (start and stop included) against {allowed} allowed",
        stats.rate_limited,
        stats.put_calls,
        30_000.0 / started.elapsed().as_secs_f64()
    );
    assert!(stats.rate_limited > 0, "the limit was reached: {stats:?}");
    assert!(retry_ratio < 1.0, "{stats:?}");
}

#[test]
fn faults_throttling_is_logged_with_counts_not_per_call() {
    let server = FaultKinesis::start(Faults {
        record_throttle_percent: 50.0,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let expected = write_lines(&logs_dir(dir.path()).join("app.log"), 0..20_000);
    let config = config(dir.path(), &server.endpoint(), &[], &[]);
    let mut agent = Agent::start(&config, dir.path());
    assert!(wait_delivered(&server, &expected, DELIVERY_DEADLINE));
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());
    let output = agent.output();
    let lines: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("Records throttled by the stream"))
        .collect();
    assert!(!lines.is_empty(), "{output}");
    assert!(lines[0].contains("records="), "{}", lines[0]);
    let calls = server.stats().put_calls as usize;
    assert!(
        lines.len() * 20 < calls,
        "{} throttling lines for {calls} calls",
        lines.len()
    );
}

#[test]
fn faults_records_refused_past_max_retry_duration_are_dead_lettered_and_acknowledged() {
    let server = FaultKinesis::start(Faults {
        record_throttle_percent: 100.0,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let log = logs_dir(dir.path()).join("app.log");
    let expected = write_lines(&log, 0..50);
    let config = config(
        dir.path(),
        &server.endpoint(),
        &["max_retry_duration: 2s"],
        &["checkpoint_interval: 100ms"],
    );
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("dead-letter file", Duration::from_secs(60));
    let letters_path = dir.path().join("state/dead-letter.jsonl");
    assert!(holds_within(Duration::from_secs(30), || {
        fs::read_to_string(&letters_path).is_ok_and(|text| text.lines().count() == 50)
    }));
    let size = fs::metadata(&log).expect("log").len();
    assert!(
        holds_within(
            Duration::from_secs(30),
            || crate::support::agent::saved_offset(dir.path()) == Some(size)
        ),
        "dead-lettered records are acknowledged"
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());
    let text = fs::read_to_string(&letters_path).expect("dead letters");
    let mut offset = 0;
    for (entry, want) in text.lines().zip(&expected) {
        let entry: serde_json::Value = serde_json::from_str(entry).expect("json line");
        assert_eq!(entry["data"].as_str().map(str::as_bytes), Some(&want[..]));
        assert_eq!(entry["offset"], offset);
        assert_eq!(entry["flow"], "app");
        assert_eq!(entry["file"], log.display().to_string());
        assert!(entry["error"]
            .as_str()
            .is_some_and(|e| e.contains("ProvisionedThroughputExceededException")));
        offset += want.len();
    }
    assert_eq!(server.accepted_len(), 0);
}

/// Peak resident memory of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

#[test]
fn faults_a_long_outage_keeps_memory_within_the_budget_and_loses_nothing() {
    const BUDGET: u64 = 16 * 1024 * 1024;
    let server = FaultKinesis::start(Faults::default());
    server.set_down(true);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = logs_dir(dir.path()).join("app.log");
    let config = config(
        dir.path(),
        &server.endpoint(),
        &[],
        &[&format!("memory_budget: {BUDGET}")],
    );
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("kinship is running", Duration::from_secs(30));
    let baseline = peak_rss(agent.pid());
    // 200 MB of lines while the endpoint is down: 1,000,000 lines of 200 bytes.
    let mut expected = Vec::new();
    for block in 0..10 {
        let mut file = std::io::BufWriter::new(open_log(&log));
        for index in block * 100_000..(block + 1) * 100_000 {
            let mut wide = line(index);
            wide.truncate(wide.len() - 1);
            wide.resize(199, b'.');
            wide.push(b'\n');
            file.write_all(&wide).expect("write line");
            expected.push(wide);
        }
        file.flush().expect("flush");
    }
    // Reading stops once the budget is spent: the count of records read stays put.
    let mut last = None;
    assert!(
        holds_within(Duration::from_secs(60), || {
            let now = agent.progress("records_parsed");
            let settled = now.is_some_and(|count| count > 0) && now == last;
            last = now;
            if !settled {
                std::thread::sleep(Duration::from_millis(1500));
            }
            settled
        }),
        "reading never stopped:\n{}",
        agent.output()
    );
    let read_while_down = last.unwrap_or_default();
    assert!(
        (read_while_down as usize) < expected.len() / 4,
        "read {read_while_down} lines with the endpoint down"
    );
    let peak_down = peak_rss(agent.pid());
    eprintln!(
        "faults long outage: baseline {:.1} MiB, peak while down {:.1} MiB, budget {} MiB, file {} MB",
        baseline as f64 / 1048576.0,
        peak_down as f64 / 1048576.0,
        BUDGET / 1048576,
        fs::metadata(&log).map_or(0, |m| m.len()) / 1_000_000
    );
    assert!(
        peak_down < baseline + BUDGET + 24 * 1024 * 1024,
        "peak {peak_down} with baseline {baseline}"
    );
    server.set_down(false);
    let delivered = wait_delivered(&server, &expected, DELIVERY_DEADLINE);
    let peak_after = peak_rss(agent.pid());
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());
    let report = delivery_report(&expected, &server.accepted());
    eprintln!(
        "faults long outage: written {}, delivered {}, duplicated {}, peak after recovery {:.1} MiB",
        expected.len(),
        expected.len() - report.lost,
        report.duplicates,
        peak_after as f64 / 1048576.0
    );
    assert!(delivered && report.lost == 0, "{report:?}");
    assert!(
        peak_after < baseline + BUDGET + 24 * 1024 * 1024,
        "peak {peak_after} with baseline {baseline}"
    );
}

#[test]
fn faults_a_crash_loop_while_files_rotate_loses_nothing() {
    let server = FaultKinesis::start(Faults {
        record_throttle_percent: 10.0,
        call_5xx_percent: 2.0,
        reset_after_percent: 1.0,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = logs_dir(dir.path());
    let config = config(
        dir.path(),
        &server.endpoint(),
        &[],
        &["checkpoint_interval: 200ms"],
    );
    const TOTAL: usize = 60_000;
    const ROTATE_EVERY: usize = 6_000;
    let writer = {
        let logs = logs.clone();
        std::thread::spawn(move || {
            let log = logs.join("app.log");
            let mut written = Vec::with_capacity(TOTAL);
            for chunk in (0..TOTAL).step_by(500) {
                if chunk > 0 && chunk % ROTATE_EVERY == 0 {
                    let rotated = logs.join(format!("app.log.{}", chunk / ROTATE_EVERY));
                    fs::rename(&log, rotated).expect("rotate");
                }
                written.extend(write_lines(&log, chunk..chunk + 500));
                // An application writing steadily, so kills land mid-file and mid-rotation.
                std::thread::sleep(Duration::from_millis(40));
            }
            written
        })
    };
    let seed = fastrand::u64(..);
    let mut random = fastrand::Rng::with_seed(seed);
    for _ in 0..20 {
        let mut agent = Agent::start(&config, dir.path());
        std::thread::sleep(Duration::from_millis(random.u64(150..900)));
        agent.signal("KILL");
        agent.wait_exit(EXIT_DEADLINE);
    }
    let expected = writer.join().expect("writer");
    let mut agent = Agent::start(&config, dir.path());
    let complete = wait_delivered(&server, &expected, DELIVERY_DEADLINE);
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());
    let report = delivery_report(&expected, &server.accepted());
    eprintln!(
        "faults crash loop (seed {seed}): 20 SIGKILLs, {} rotations, written {TOTAL}, delivered {}, duplicated {}, server {:?}",
        TOTAL / ROTATE_EVERY - 1,
        TOTAL - report.lost,
        report.duplicates,
        server.stats()
    );
    assert!(
        complete && report.lost == 0,
        "seed {seed}: {report:?}\n{}",
        agent.output()
    );
    assert_eq!(report.unexpected, 0);
}

#[test]
fn faults_a_corrupt_checkpoint_is_moved_aside_and_every_file_read_from_its_start() {
    let server = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let expected = write_lines(&logs_dir(dir.path()).join("app.log"), 0..100);
    fs::create_dir_all(dir.path().join("state")).expect("state dir");
    let garbage = b"{\"version\": 1, \"files\": [{\"flo";
    fs::write(dir.path().join("state/checkpoints.json"), garbage).expect("corrupt file");
    // end_of_file would skip the lines already there: after a corrupt checkpoint the agent
    // cannot know what was sent, so it starts every file over.
    let config = config(
        dir.path(),
        &server.endpoint(),
        &["initial_position: end_of_file"],
        &[],
    );
    let mut agent = Agent::start(&config, dir.path());
    let output = agent.wait_for_log("was moved aside", Duration::from_secs(30));
    assert!(output.contains("ERROR"), "{output}");
    assert!(output.contains("checkpoints.json.corrupt-"), "{output}");
    assert!(wait_delivered(&server, &expected, Duration::from_secs(60)));
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());
    let kept: Vec<_> = fs::read_dir(dir.path().join("state"))
        .expect("state dir")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(fs::read(kept[0].path()).expect("kept"), garbage);
    assert_eq!(delivery_report(&expected, &server.accepted()).duplicates, 0);
}

/// A small tmpfs mounted for the test's life.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        fs::create_dir_all(at).expect("mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test mounts a small tmpfs for the state directory and needs root (CI runs as root)"
        );
        SmallDisk(at.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem holding `path`; returns the filler file.
fn fill_disk(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = fs::File::create(&filler).expect("filler");
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
    filler
}

#[test]
fn faults_a_full_state_disk_is_reported_shipping_goes_on_and_no_checkpoint_is_torn() {
    let server = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let _disk = SmallDisk::mount(&state, "256k");
    let log = logs_dir(dir.path()).join("app.log");
    let mut expected = write_lines(&log, 0..1_000);
    let config = config(
        dir.path(),
        &server.endpoint(),
        &[],
        &["checkpoint_interval: 100ms"],
    );
    let mut agent = Agent::start(&config, dir.path());
    let first_size = fs::metadata(&log).expect("log").len();
    assert!(holds_within(Duration::from_secs(60), || {
        crate::support::agent::saved_offset(dir.path()) == Some(first_size)
    }));
    let filler = fill_disk(&state);
    expected.extend(write_lines(&log, 1_000..2_000));
    assert!(
        wait_delivered(&server, &expected, Duration::from_secs(60)),
        "shipping goes on with the state disk full"
    );
    agent.wait_for_log("Cannot save checkpoints", Duration::from_secs(30));
    // What is saved reads whole (the snapshot, and the journal's entries but a torn last
    // one), and holds what was saved before the disk filled: entries may still fit in the
    // journal's last page.
    let saved = crate::support::agent::saved_offset(dir.path()).expect("saved checkpoints read");
    assert!(saved >= first_size, "{saved} < {first_size}");
    fs::remove_file(filler).expect("free the disk");
    agent.wait_for_log("Checkpoints are written again", Duration::from_secs(30));
    let second_size = fs::metadata(&log).expect("log").len();
    assert!(holds_within(Duration::from_secs(30), || {
        crate::support::agent::saved_offset(dir.path()) == Some(second_size)
    }));
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());
    let report = delivery_report(&expected, &server.accepted());
    eprintln!(
        "faults full state disk: written {}, delivered {}, duplicated {}",
        expected.len(),
        expected.len() - report.lost,
        report.duplicates
    );
    assert_eq!((report.lost, report.duplicates), (0, 0));
}
