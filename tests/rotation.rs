//! Rotation with the real binary and real files: every line arrives exactly once.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::Duration;

use crate::support::agent::{saved_offset, write_config, Agent};
use crate::support::files::open_log;
use crate::support::stream::{read_back, setup};
use crate::support::wait;

const DEADLINE: Duration = Duration::from_secs(60);

/// Line `index`; its sequence number can be read back from the record.
fn line(index: usize) -> Vec<u8> {
    format!(
        "seq={index:08} GET /rotation/{index} HTTP/1.1 200 {}\n",
        index * 31 % 9973
    )
    .into_bytes()
}

/// Counts each delivered line, and fails on any line missing or repeated.
fn assert_each_line_once(delivered: &[Vec<u8>], total: usize, agent: &Agent) {
    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    for record in delivered {
        *seen.entry(record.as_slice()).or_default() += 1;
    }
    let missing: Vec<usize> = (0..total)
        .filter(|&index| !seen.contains_key(line(index).as_slice()))
        .collect();
    let repeated: Vec<usize> = (0..total)
        .filter(|&index| seen.get(line(index).as_slice()).copied().unwrap_or(0) > 1)
        .collect();
    assert!(
        missing.is_empty() && repeated.is_empty() && delivered.len() == total,
        "{} delivered of {total}; missing {:?}…; repeated {:?}…\n{}",
        delivered.len(),
        &missing[..missing.len().min(10)],
        &repeated[..repeated.len().min(10)],
        agent.output()
    );
}

/// Writes lines `range` through `file` (an open handle, as an application holds its log).
fn write_lines(file: &mut fs::File, range: std::ops::Range<usize>) {
    for chunk in range.collect::<Vec<_>>().chunks(50) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|&index| line(index)).collect();
        file.write_all(&bytes).expect("write");
    }
}

#[test]
fn rename_and_create_rotation_while_writing_delivers_every_line_once() {
    let (server, dir, runtime) = setup("renamed");
    let log = dir.path().join("app.log");
    // Only the live name matches: rotated files fall out of the glob and must be finished
    // through the handle the agent already holds.
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "renamed",
        &log.display().to_string(),
        &[
            "initial_position: start_of_file",
            "max_in_flight: 1",
            "max_batch_age: 100ms",
            "scan_interval: 300ms",
            "poll_interval: 50ms",
        ],
        &[],
    );
    let mut writer = open_log(&log);
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("kinship is running.", DEADLINE);

    let rotations = 6;
    let per_file = 4000;
    for rotation in 0..rotations {
        let start = rotation * per_file;
        write_lines(&mut writer, start..start + per_file - 100);
        fs::rename(&log, dir.path().join(format!("app.log.{rotation}"))).expect("rotate");
        // The application has not reopened yet: its last lines still go to the renamed file.
        write_lines(&mut writer, start + per_file - 100..start + per_file);
        writer = open_log(&log);
        // A file renamed out of the glob before the agent ever opened it cannot be found
        // again; the agent opens a new file within milliseconds of its creation (file events)
        // or within scan_interval (polling), so wait for that before the next rotation, as
        // any real rotation schedule does. The agent may still be reading far behind.
        let opened = rotation + 2;
        wait::wait_until_showing(
            "the rotated-in file followed",
            DEADLINE,
            || agent.output().matches("Following file.").count() >= opened,
            || agent.output(),
        );
    }
    drop(writer);
    let total = rotations * per_file;
    let delivered = read_back(&runtime, &server, "renamed", total);
    assert_each_line_once(&delivered, total, &agent);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
}

#[test]
fn rotation_while_stopped_finishes_the_rotated_file_and_reads_the_new_one() {
    let (server, dir, runtime) = setup("stopped");
    let log = dir.path().join("app.log");
    // Here the rotated name matches too, as with `app.log*` globs.
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "stopped",
        &dir.path().join("app.log*").display().to_string(),
        &[
            "initial_position: start_of_file",
            "max_in_flight: 1",
            "max_batch_age: 100ms",
        ],
        &[],
    );
    let mut writer = open_log(&log);
    write_lines(&mut writer, 0..3000);
    let mut agent = Agent::start(&config, dir.path());
    let first = read_back(&runtime, &server, "stopped", 3000);
    assert_eq!(first.len(), 3000, "{}", agent.output());
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());

    // While stopped: more lines, a rotation, and lines in the new file.
    write_lines(&mut writer, 3000..4000);
    fs::rename(&log, dir.path().join("app.log.1")).expect("rotate");
    write_lines(&mut writer, 4000..4500);
    let mut writer = open_log(&log);
    write_lines(&mut writer, 4500..6000);
    drop(writer);

    let mut agent = Agent::start(&config, dir.path());
    let delivered = read_back(&runtime, &server, "stopped", 6000);
    // No repeats: the renamed file kept its checkpoint and resumed at line 3000.
    assert_each_line_once(&delivered, 6000, &agent);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
}

#[test]
fn copytruncate_rotation_is_detected_and_the_file_read_again_from_its_start() {
    let (server, dir, runtime) = setup("copied");
    let log = dir.path().join("app.log");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "copied",
        &log.display().to_string(),
        &[
            "initial_position: start_of_file",
            "max_in_flight: 1",
            "max_batch_age: 100ms",
            "poll_interval: 50ms",
        ],
        &["checkpoint_interval: 100ms"],
    );
    let mut writer = open_log(&log);
    write_lines(&mut writer, 0..5000);
    let mut agent = Agent::start(&config, dir.path());
    let size = fs::metadata(&log).expect("stat").len();
    wait::wait_until_showing(
        "the whole file delivered",
        DEADLINE,
        || saved_offset(dir.path()) == Some(size),
        || agent.output(),
    );

    // copytruncate: copy the file aside (out of the glob), then truncate it in place. The
    // writer's handle is in append mode, so it goes on writing at the new end.
    fs::copy(&log, dir.path().join("app.log.1")).expect("copy");
    OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    write_lines(&mut writer, 5000..5100);
    agent.wait_for_log(
        "File was truncated; reading it again from the start.",
        DEADLINE,
    );
    write_lines(&mut writer, 5100..9000);
    drop(writer);

    let delivered = read_back(&runtime, &server, "copied", 9000);
    assert_each_line_once(&delivered, 9000, &agent);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopBy {
    Term,
    Kill,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RotateWhen {
    BeforeStop,
    WhileStopped,
    AfterRestart,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AckedAtStop {
    /// Every line written so far was delivered and its checkpoint saved.
    All,
    /// Lines were still being read and sent.
    Some,
}

/// One cell of the restart × acknowledgement × rotation matrix: lines written, then a stop
/// (by signal or kill) at the chosen acknowledgement state, a rename rotation before, during or
/// after the stop, and a restart. Every line must arrive; a repeat only after a kill, and only
/// of a line written before it. Returns (written, delivered, repeated).
fn matrix_cell(
    server: &crate::support::kinesalite::Kinesalite,
    runtime: &tokio::runtime::Runtime,
    stop: StopBy,
    rotate: RotateWhen,
    acked: AckedAtStop,
) -> (usize, usize, usize) {
    let stream = format!("m-{stop:?}-{rotate:?}-{acked:?}").to_lowercase();
    runtime.block_on(async {
        let client = crate::support::kinesalite::client(&server.endpoint).await;
        crate::support::kinesalite::create_stream(&client, &stream, 1).await;
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        &stream,
        &dir.path().join("app.log*").display().to_string(),
        &[
            "initial_position: start_of_file",
            "max_in_flight: 1",
            "max_batch_age: 50ms",
            "max_batch_records: 100",
            "poll_interval: 50ms",
            "scan_interval: 200ms",
        ],
        &["checkpoint_interval: 50ms"],
    );
    let mut writer = open_log(&log);
    let first = 3000;
    write_lines(&mut writer, 0..first);
    let mut written = first;
    let rotate_now = |writer: &mut fs::File, written: &mut usize| {
        fs::rename(&log, dir.path().join("app.log.1")).expect("rotate");
        write_lines(writer, *written..*written + 300);
        *written += 300;
        *writer = open_log(&log);
        write_lines(writer, *written..*written + 700);
        *written += 700;
    };
    let mut agent = Agent::start(&config, dir.path());
    let size = fs::metadata(&log).expect("stat").len();
    let ready = |offset: Option<u64>| match acked {
        AckedAtStop::All => offset == Some(size),
        AckedAtStop::Some => offset.is_some_and(|offset| offset > 0),
    };
    wait::wait_until_showing(
        "the checkpoint to stop at",
        DEADLINE,
        || ready(saved_offset(dir.path())),
        || agent.output(),
    );
    if rotate == RotateWhen::BeforeStop {
        rotate_now(&mut writer, &mut written);
    }
    let written_before_kill = written;
    match stop {
        StopBy::Term => {
            agent.signal("TERM");
            assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
        }
        StopBy::Kill => {
            agent.signal("KILL");
            agent.wait_exit(DEADLINE);
        }
    }
    if rotate == RotateWhen::WhileStopped {
        rotate_now(&mut writer, &mut written);
    }
    let mut agent = Agent::start(&config, dir.path());
    if rotate == RotateWhen::AfterRestart {
        agent.wait_for_log("kinship is running.", DEADLINE);
        rotate_now(&mut writer, &mut written);
    }
    write_lines(&mut writer, written..written + 100);
    written += 100;
    drop(writer);
    // Repeats count toward the number read back: read on until every line is there (or the
    // deadline passes and the check below fails).
    let mut delivered = read_back(runtime, server, &stream, written);
    for _ in 0..10 {
        let seen: std::collections::HashSet<&[u8]> = delivered.iter().map(Vec::as_slice).collect();
        let missing = (0..written)
            .filter(|&index| !seen.contains(line(index).as_slice()))
            .count();
        if missing == 0 {
            break;
        }
        let more = delivered.len() + missing;
        delivered = read_back(runtime, server, &stream, more);
    }
    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    for record in &delivered {
        *seen.entry(record.as_slice()).or_default() += 1;
    }
    let missing: Vec<usize> = (0..written)
        .filter(|&index| !seen.contains_key(line(index).as_slice()))
        .collect();
    let repeated: Vec<usize> = (0..written)
        .filter(|&index| seen.get(line(index).as_slice()).copied().unwrap_or(0) > 1)
        .collect();
    let cell = format!("{stop:?} × {acked:?} acknowledged × rotation {rotate:?}");
    assert!(
        missing.is_empty(),
        "{cell}: {} lines missing, first {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        agent.output()
    );
    let allowed = match stop {
        StopBy::Term => 0,
        StopBy::Kill => written_before_kill,
    };
    assert!(
        repeated.iter().all(|&index| index < allowed),
        "{cell}: repeated lines {:?} (repeats allowed only before a kill, below line {allowed})\n{}",
        &repeated[..repeated.len().min(10)],
        agent.output()
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    eprintln!(
        "matrix: {cell}: written {written}, delivered {}, repeated {}",
        delivered.len(),
        repeated.len()
    );
    (written, delivered.len(), repeated.len())
}

fn matrix(stop: StopBy) {
    let server = crate::support::kinesalite::Kinesalite::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for rotate in [
        RotateWhen::BeforeStop,
        RotateWhen::WhileStopped,
        RotateWhen::AfterRestart,
    ] {
        for acked in [AckedAtStop::All, AckedAtStop::Some] {
            matrix_cell(&server, &runtime, stop, rotate, acked);
        }
    }
}

#[test]
fn restart_by_signal_at_any_acknowledgement_state_and_rotation_time_repeats_nothing() {
    matrix(StopBy::Term);
}

#[test]
fn restart_after_a_kill_at_any_acknowledgement_state_and_rotation_time_loses_nothing() {
    matrix(StopBy::Kill);
}
