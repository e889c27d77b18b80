//! Reloading the config while lines flow: SIGHUP (or a change to the file, with
//! `watch_config`) adds, removes and restarts flows; unchanged flows lose and repeat nothing,
//! and an invalid new config is rejected with the running one kept.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::agent::Agent;
use crate::support::config::{AgentConfig, Flow};
use crate::support::files::open_log;
use crate::support::kinesalite::{self, Kinesalite};
use crate::support::stream::{read_back, setup};
use crate::support::wait;

const DEADLINE: Duration = Duration::from_secs(60);

fn line(flow: &str, index: usize) -> Vec<u8> {
    format!("{flow} seq={index:07} GET /reload/{index} HTTP/1.1 200\n").into_bytes()
}

fn write_lines(path: &Path, flow: &str, range: std::ops::Range<usize>) {
    let bytes: Vec<u8> = range.flat_map(|index| line(flow, index)).collect();
    open_log(path).write_all(&bytes).expect("append");
}

/// A flow of `name` following `<dir>/<name>.log` into the stream `s-<name>`, with `extra`
/// keys.
fn flow(dir: &Path, name: &str, extra: &[&str]) -> Flow {
    Flow::kinesis(
        name,
        dir.join(format!("{name}.log")).display(),
        &format!("s-{name}"),
    )
    .keys(&[
        "initial_position: start_of_file",
        "max_in_flight: 1",
        "max_batch_age: 100ms",
        "poll_interval: 50ms",
    ])
    .keys(extra)
}

fn write_config(dir: &Path, server: &Kinesalite, top: &[&str], flows: &[Flow]) {
    let config = AgentConfig::new(dir)
        .emulator(kinesalite::REGION, &server.endpoint)
        .top("progress_interval: 1s")
        .tops(top);
    let text = flows
        .iter()
        .fold(config, |config, flow| config.flow(flow.clone()))
        .text();
    // Written aside and renamed, as configuration tools do, so a reader never sees half.
    let aside = dir.join(".kinship.yaml.new");
    fs::write(&aside, text).expect("write config");
    fs::rename(&aside, dir.join("kinship.yaml")).expect("replace config");
}

/// Waits until the agent's log holds `needle` at least `times` times.
fn wait_for_log_times(agent: &mut Agent, needle: &str, times: usize) {
    agent.wait_for_log(needle, DEADLINE);
    wait::wait_until_showing(
        &format!("{needle:?} logged {times} times"),
        DEADLINE,
        || agent.output().matches(needle).count() >= times,
        || agent.output(),
    );
}

/// Fails unless `delivered` holds exactly lines `0..total` of `flow`, in order.
fn assert_exactly_in_order(delivered: &[Vec<u8>], flow: &str, total: usize, agent: &Agent) {
    let expected: Vec<Vec<u8>> = (0..total).map(|index| line(flow, index)).collect();
    if delivered != expected.as_slice() {
        let first_difference = delivered
            .iter()
            .zip(&expected)
            .position(|(got, want)| got != want);
        panic!(
            "flow {flow}: {} records for {total} lines; first difference at {first_difference:?}\n{}",
            delivered.len(),
            agent.output()
        );
    }
}

/// Appends to `paths` in small chunks until stopped; returns how many lines each got.
fn keep_writing(
    dir: &Path,
    flows: &'static [&'static str],
    start: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    let dir = dir.to_owned();
    std::thread::spawn(move || {
        let mut next = start;
        while !stop.load(Ordering::Relaxed) {
            for flow in flows {
                write_lines(&dir.join(format!("{flow}.log")), flow, next..next + 20);
            }
            next += 20;
            // Paces the writer so the agent reads while it writes.
            std::thread::sleep(Duration::from_millis(2));
        }
        next
    })
}

#[test]
fn sighup_with_a_changed_flow_list_under_load_loses_and_repeats_nothing() {
    let (server, dir, runtime) = setup("s-steady");
    runtime.block_on(async {
        let client = kinesalite::client(&server.endpoint).await;
        for stream in ["s-edited", "s-dropped", "s-added"] {
            kinesalite::create_stream(&client, stream, 1).await;
        }
    });
    let dir = dir.path();
    let before = 2000;
    for name in ["steady", "edited", "dropped"] {
        write_lines(&dir.join(format!("{name}.log")), name, 0..before);
    }
    write_config(
        dir,
        &server,
        &[],
        &[
            flow(dir, "steady", &[]),
            flow(dir, "edited", &["max_batch_records: 100"]),
            flow(dir, "dropped", &[]),
        ],
    );
    let mut agent = Agent::start(&dir.join("kinship.yaml"), dir);
    agent.wait_for_log("kinship is running.", DEADLINE);
    // The flow to be removed has delivered what its file held; what is written to it after
    // the reload must never arrive.
    assert_eq!(
        read_back(&runtime, &server, "s-dropped", before).len(),
        before
    );

    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(
        dir,
        &["steady", "edited"],
        before,
        Arc::clone(&stop_writing),
    );
    // Let the writer get ahead of the agent, so both the unchanged and the changed flow are
    // reading when the reload comes.
    write_lines(&dir.join("added.log"), "added", 0..1000);
    write_config(
        dir,
        &server,
        &[],
        &[
            flow(dir, "edited", &["max_batch_records: 50"]),
            flow(dir, "steady", &[]),
            flow(dir, "added", &[]),
        ],
    );
    agent.signal("HUP");
    let output = agent.wait_for_log("Config reloaded.", DEADLINE);
    assert!(output.contains("Flow stopped.") && output.contains("flow=dropped"));
    write_lines(&dir.join("dropped.log"), "dropped", before..before + 500);
    write_lines(&dir.join("added.log"), "added", 1000..2000);

    // An invalid config is rejected; the running flows go on.
    fs::write(
        dir.join("kinship.yaml"),
        "flows:\n  - name: steady\n    files: /x\n    kinesis_stream: a\n    max_batch_age: soon\n",
    )
    .expect("break the config");
    agent.signal("HUP");
    let output = agent.wait_for_log(
        "The new config is invalid; the running one is kept.",
        DEADLINE,
    );
    assert!(
        output.contains("max_batch_age"),
        "the rejection names the key:\n{output}"
    );

    stop_writing.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    write_lines(&dir.join("steady.log"), "steady", written..written + 100);
    write_lines(&dir.join("edited.log"), "edited", written..written + 100);
    let total = written + 100;
    let steady = read_back(&runtime, &server, "s-steady", total);
    let edited = read_back(&runtime, &server, "s-edited", total);
    let added = read_back(&runtime, &server, "s-added", 2000);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());

    assert_exactly_in_order(&steady, "steady", total, &agent);
    assert_exactly_in_order(&edited, "edited", total, &agent);
    assert_exactly_in_order(&added, "added", 2000, &agent);
    let dropped = read_back(&runtime, &server, "s-dropped", before);
    assert_exactly_in_order(&dropped, "dropped", before, &agent);
    let output = agent.output();
    assert_eq!(
        output.matches("Flow started.").count(),
        5,
        "three at start, the changed and the added flow at the reload:\n{output}"
    );
}

#[test]
fn watch_config_reloads_when_the_file_changes() {
    let (server, dir, runtime) = setup("s-first");
    runtime.block_on(async {
        let client = kinesalite::client(&server.endpoint).await;
        kinesalite::create_stream(&client, "s-second", 1).await;
    });
    let dir = dir.path();
    write_lines(&dir.join("first.log"), "first", 0..300);
    write_lines(&dir.join("second.log"), "second", 0..300);
    write_config(
        dir,
        &server,
        &["watch_config: true"],
        &[flow(dir, "first", &[])],
    );
    let mut agent = Agent::start(&dir.join("kinship.yaml"), dir);
    agent.wait_for_log("Watching the config file", DEADLINE);
    write_config(
        dir,
        &server,
        &["watch_config: true"],
        &[flow(dir, "first", &[]), flow(dir, "second", &[])],
    );
    wait_for_log_times(&mut agent, "Config reloaded.", 1);
    let first = read_back(&runtime, &server, "s-first", 300);
    let second = read_back(&runtime, &server, "s-second", 300);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    assert_exactly_in_order(&first, "first", 300, &agent);
    assert_exactly_in_order(&second, "second", 300, &agent);
}
