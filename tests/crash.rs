//! What a crash re-sends: the agent is killed with SIGKILL again and again while a file grows at
//! a steady rate, and restarted each time. Nothing may be lost, and each kill may re-send only
//! the records of the calls in flight and those acknowledged in the last moments before it.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::agent::{write_config, Agent};
use crate::support::fault_kinesis::{FaultKinesis, Faults};
use crate::support::files::append;
use crate::support::wait;

const KILLS: usize = 20;
/// Lines written per second, in steps of [`STEP`].
const RATE: u64 = 10_000;
const STEP: Duration = Duration::from_millis(10);
/// The agent's defaults: calls in flight, and records per call.
const MAX_IN_FLIGHT: u64 = 4;
const MAX_BATCH_RECORDS: u64 = 500;
/// Acknowledgements younger than this when the agent is killed may be unsaved.
const SAVE_WINDOW: Duration = Duration::from_millis(50);
const READ_DEADLINE: Duration = Duration::from_secs(240);
const EXIT_DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

fn line(number: u64) -> String {
    format!("{number:010} GET /api/items/{number} HTTP/1.1 200 1234\n")
}

/// Appends lines at [`RATE`] until `stop`; returns how many it wrote.
fn write_steadily(path: &Path, stop: &AtomicBool) -> u64 {
    let per_step = RATE * STEP.as_millis() as u64 / 1000;
    let started = Instant::now();
    let mut written = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut text = String::new();
        for number in written..written + per_step {
            text.push_str(&line(number));
        }
        append(path, text.as_bytes());
        written += per_step;
        // Steady on average: each step waits for its own time.
        let due = started + STEP * u32::try_from(written / per_step).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
    written
}

#[test]
fn sigkills_while_shipping_lose_nothing_and_resend_only_calls_in_flight() {
    let server = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    append(&log, b"");
    let config = write_config(
        dir.path(),
        &server.endpoint(),
        "crash",
        &log.display().to_string(),
        &["initial_position: start_of_file"],
        &[],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), Arc::clone(&stop));
        thread::spawn(move || write_steadily(&log, &stop))
    };

    // Each run ships for a while, then is killed; the times of the kills split what the
    // server stored into the runs that follow them.
    let mut kills = Vec::with_capacity(KILLS);
    for kill in 0..KILLS {
        let mut agent = Agent::start(&config, dir.path());
        // Shipping: the server has stored some more since this run started.
        let before = server.accepted_len();
        let shipped = wait::poll_every(POLL, READ_DEADLINE, || {
            (server.accepted_len() >= before + (RATE / 4) as usize).then_some(())
        });
        assert!(
            shipped.is_some(),
            "run {kill} shipped nothing within {READ_DEADLINE:?}:\n{}",
            agent.output()
        );
        // Ship a little longer, a different while each time.
        thread::sleep(Duration::from_millis(200 + 37 * kill as u64 % 300));
        agent.signal("KILL");
        agent.wait_exit(EXIT_DEADLINE);
        kills.push(Instant::now());
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("the writer");

    let mut agent = Agent::start(&config, dir.path());
    let expected: HashSet<Vec<u8>> = (0..written)
        .map(|number| line(number).into_bytes())
        .collect();
    let seen_all = wait::poll_every(POLL * 10, READ_DEADLINE, || {
        let stored = server.stored();
        let distinct: HashSet<&[u8]> = stored.iter().map(|record| record.data.as_slice()).collect();
        (distinct.len() >= expected.len()).then_some(())
    })
    .is_some();
    agent.signal("TERM");
    assert!(
        agent.wait_exit(EXIT_DEADLINE).success(),
        "{}",
        agent.output()
    );

    let stored = server.stored();
    let mut seen: HashSet<&[u8]> = HashSet::new();
    // Duplicates stored after each kill (the last entry: after the final start).
    let mut duplicates = vec![0u64; KILLS + 1];
    for record in &stored {
        if !seen.insert(record.data.as_slice()) {
            let after = kills.partition_point(|kill| *kill <= record.at);
            duplicates[after.max(1) - 1] += 1;
        }
    }
    let lost = expected
        .iter()
        .filter(|line| !seen.contains(line.as_slice()))
        .count();
    let total: u64 = duplicates.iter().sum();
    let bound =
        MAX_IN_FLIGHT * MAX_BATCH_RECORDS + (RATE as f64 * SAVE_WINDOW.as_secs_f64()).ceil() as u64;
    println!(
        "{written} lines written, {} stored; {lost} lost; {total} duplicates over {KILLS} SIGKILLs ({:.0} a kill); per kill: {:?}; bound a kill: {bound}",
        stored.len(),
        total as f64 / KILLS as f64,
        &duplicates[..KILLS]
    );
    assert!(seen_all && lost == 0, "{lost} of {written} lines lost");
    for (kill, count) in duplicates[..KILLS].iter().enumerate() {
        assert!(
            *count <= bound,
            "kill {kill} re-sent {count} records: more than the calls in flight ({}) and {SAVE_WINDOW:?} of lines ({}); per kill: {duplicates:?}",
            MAX_IN_FLIGHT * MAX_BATCH_RECORDS,
            bound - MAX_IN_FLIGHT * MAX_BATCH_RECORDS
        );
    }
}
