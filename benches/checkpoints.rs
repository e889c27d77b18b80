//! What checkpointing costs at full speed: the checkpoint store's own loop
//! (`kinship::checkpoint::run`, with the ordered tracker and the on-disk store) fed a stream of
//! acknowledgements such as the agent produces at full speed, for each way of committing.
//!
//! `cargo bench --bench checkpoints -- [--files N] [--acks-per-second N] [--files-per-ack N]
//! [--seconds S] [--runs N] [--mode group|interval|both|all] [--dir PATH]`

#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "a benchmark measures wall-clock time"
)]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use kinship::checkpoint::{self, AckTracker, CheckpointCommit, CheckpointStore, Settings};
use kinship::metrics::Metrics;
use kinship::record::{Ack, FileId, FileRange, SourceFile};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const USAGE: &str = "\
usage: cargo bench --bench checkpoints -- [--files N] [--acks-per-second N] [--files-per-ack N]
                                          [--seconds S] [--runs N]
                                          [--mode group|interval|both|all] [--dir PATH]

  --files N            open files, each with a checkpoint (default 1000)
  --acks-per-second N  acknowledged calls a second (default 2600: 1.3M lines/s in calls of
                       500 lines)
  --files-per-ack N    files each call's lines come from, one range each, in turn over all
                       files (default 4)
  --seconds S          how long each run measures, after a second of warm-up (default 10)
  --runs N             runs of each mode; the median of each figure is printed (default 3)
  --mode M             group, interval, both, or all: both, and first a baseline, a task that
                       only receives the acknowledgements and drops them: what the channel and
                       the runtime's wake-ups cost, whatever the checkpoint loop does
                       (default all)
  --dir PATH           where the state directory goes (default: the system's temp directory);
                       put it on the disk the agent's state_dir would be on: the journal's
                       syncs wait for it

CPU is the process's but for the thread that makes the acknowledgements: the checkpoint loop,
its writes on blocking threads, and the runtime around them. The agent at full speed spends
about 0.36 CPU-seconds a second (1.4 CPU-s per GB at 1.3M lines/s of 200 bytes); the share
printed is of that.";

/// CPU-seconds a wall second the agent spends at full speed (1.3M lines/s of 200 bytes, at 1.4
/// CPU-seconds per GB).
const AGENT_CPU_PER_SECOND: f64 = 0.36;
const WARM_UP: Duration = Duration::from_secs(1);
/// Bytes of each range: 500 lines of 200 bytes over the call's files.
const CALL_BYTES: u64 = 500 * 200;
const FLOW: &str = "bench";

struct Args {
    files: usize,
    acks_per_second: u64,
    files_per_ack: usize,
    seconds: u64,
    runs: usize,
    modes: Vec<Mode>,
    dir: PathBuf,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut parsed = Args {
            files: 1000,
            acks_per_second: 2600,
            files_per_ack: 4,
            seconds: 10,
            runs: 3,
            modes: vec![Mode::Baseline, Mode::Group, Mode::Interval],
            dir: std::env::temp_dir(),
        };
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            let number = |text: String| -> Result<u64, String> {
                text.parse()
                    .ok()
                    .filter(|&number| number > 0)
                    .ok_or_else(|| format!("`{text}` is not a positive whole number"))
            };
            match arg.as_str() {
                "--files" => parsed.files = number(value()?)? as usize,
                "--acks-per-second" => parsed.acks_per_second = number(value()?)?,
                "--files-per-ack" => parsed.files_per_ack = number(value()?)? as usize,
                "--seconds" => parsed.seconds = number(value()?)?,
                "--runs" => parsed.runs = number(value()?)? as usize,
                "--dir" => parsed.dir = PathBuf::from(value()?),
                "--mode" => {
                    parsed.modes = match value()?.as_str() {
                        "group" => vec![Mode::Group],
                        "interval" => vec![Mode::Interval],
                        "both" => vec![Mode::Group, Mode::Interval],
                        "all" => vec![Mode::Baseline, Mode::Group, Mode::Interval],
                        other => {
                            return Err(format!("`{other}` is not group, interval, both or all"))
                        }
                    }
                }
                // cargo bench passes this to every bench target.
                "--bench" => {}
                other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
            }
        }
        parsed.files_per_ack = parsed.files_per_ack.min(parsed.files);
        Ok(parsed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Acknowledgements received and dropped.
    Baseline,
    Group,
    Interval,
}

/// One run's figures, per wall second of the measured stretch.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    cpu_per_second: f64,
    acks_per_second: f64,
    commits_per_second: f64,
    entries_per_second: f64,
    entry_bytes_per_second: f64,
    snapshots_per_second: f64,
    snapshot_bytes_per_second: f64,
}

fn main() -> ExitCode {
    if std::env::args().any(|arg| arg == "-h" || arg == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match Args::parse(std::env::args().skip(1)).and_then(|args| bench(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> Result<(), String> {
    println!(
        "{} files, {} acknowledgements/s of {} files each, {} s a run after {} s of warm-up, state in {}",
        args.files,
        args.acks_per_second,
        args.files_per_ack,
        args.seconds,
        WARM_UP.as_secs(),
        args.dir.display()
    );
    for &mode in &args.modes {
        let mut runs = Vec::new();
        for run in 1..=args.runs {
            let figures = measure(args, mode)?;
            println!("  {} run {run}: {}", name(mode), describe(&figures));
            runs.push(figures);
        }
        let median = median_of(&runs);
        println!("{} median: {}", name(mode), describe(&median));
    }
    Ok(())
}

fn name(mode: Mode) -> &'static str {
    match mode {
        Mode::Baseline => "baseline",
        Mode::Group => "group",
        Mode::Interval => "interval",
    }
}

fn describe(figures: &Figures) -> String {
    format!(
        "{:.4} CPU-s/s ({:.2} % of the agent's {AGENT_CPU_PER_SECOND}), {:.0} acks/s, {:.0} commits/s ({:.0} entries/s, {:.1} KiB/s appended; {:.2} snapshots/s, {:.1} KiB/s)",
        figures.cpu_per_second,
        100.0 * figures.cpu_per_second / AGENT_CPU_PER_SECOND,
        figures.acks_per_second,
        figures.commits_per_second,
        figures.entries_per_second,
        figures.entry_bytes_per_second / 1024.0,
        figures.snapshots_per_second,
        figures.snapshot_bytes_per_second / 1024.0,
    )
}

fn median_of(runs: &[Figures]) -> Figures {
    let median = |figure: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(figure).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Figures {
        cpu_per_second: median(|f| f.cpu_per_second),
        acks_per_second: median(|f| f.acks_per_second),
        commits_per_second: median(|f| f.commits_per_second),
        entries_per_second: median(|f| f.entries_per_second),
        entry_bytes_per_second: median(|f| f.entry_bytes_per_second),
        snapshots_per_second: median(|f| f.snapshots_per_second),
        snapshot_bytes_per_second: median(|f| f.snapshot_bytes_per_second),
    }
}

/// Acknowledgements sent while measuring.
struct Produced {
    acks: u64,
}

fn measure(args: &Args, mode: Mode) -> Result<Figures, String> {
    let state = tempfile::Builder::new()
        .prefix("kinship-checkpoints-bench")
        .tempdir_in(&args.dir)
        .map_err(|error| {
            format!(
                "making a state directory in {}: {error}",
                args.dir.display()
            )
        })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| format!("starting the tokio runtime: {error}"))?;
    let (store, _) = CheckpointStore::open(state.path()).map_err(|error| error.to_string())?;
    let counts = store.counts();
    let (acks, acks_received) = mpsc::channel(1024);
    let (_releases, releases_received) = mpsc::channel(1);
    let stop = CancellationToken::new();
    let checkpoints = match mode {
        Mode::Baseline => {
            drop(store);
            let mut acks_received = acks_received;
            runtime.spawn(async move { while acks_received.recv().await.is_some() {} });
            None
        }
        Mode::Group | Mode::Interval => {
            let settings = Settings {
                interval: Duration::from_secs(1),
                expiry: Duration::from_secs(7 * 24 * 3600),
                commit: if mode == Mode::Group {
                    CheckpointCommit::Group
                } else {
                    CheckpointCommit::Interval
                },
            };
            Some(runtime.spawn(checkpoint::run(
                store,
                AckTracker::new(Vec::new()),
                acks_received,
                releases_received,
                settings,
                Arc::new(Metrics::new([FLOW])),
                stop.clone(),
            )))
        }
    };
    let files: Vec<Arc<SourceFile>> = (0..args.files as u64)
        .map(|index| {
            Arc::new(SourceFile {
                key: index + 1,
                flow: Arc::from(FLOW),
                id: FileId {
                    device: 1,
                    inode: 1000 + index,
                },
                head: None,
                path: PathBuf::from(format!("/var/log/bench/app-{index:04}.log")),
            })
        })
        .collect();
    for file in &files {
        let opened = Ack::Opened {
            file: Arc::clone(file),
            offset: 0,
            original: None,
        };
        acks.blocking_send(opened)
            .map_err(|_| "the checkpoint loop ended".to_owned())?;
    }

    let measuring = Duration::from_secs(args.seconds);
    let (marks_sender, marks) = std::sync::mpsc::channel();
    let producer = {
        let (acks_per_second, files_per_ack) = (args.acks_per_second, args.files_per_ack);
        thread::spawn(move || {
            produce(
                &acks,
                &files,
                acks_per_second,
                files_per_ack,
                measuring,
                &marks_sender,
            )
        })
    };
    // The producer marks the start of the measured stretch (after the warm-up), with its
    // thread's id, and its end.
    let recv_mark = || {
        marks
            .recv()
            .map_err(|_| "the producer ended early".to_owned())
    };
    let producer_thread = recv_mark()?;
    let (cpu_before, counts_before, started) = (threads_cpu()?, snapshot(&counts), Instant::now());
    recv_mark()?;
    let (cpu_after, counts_after, elapsed) = (threads_cpu()?, snapshot(&counts), started.elapsed());
    let produced = producer
        .join()
        .map_err(|_| "the producer panicked".to_owned())??;
    stop.cancel();
    if let Some(checkpoints) = checkpoints {
        runtime
            .block_on(checkpoints)
            .map_err(|error| format!("the checkpoint loop failed: {error}"))?;
    }
    runtime.shutdown_timeout(Duration::from_secs(10));
    let seconds = elapsed.as_secs_f64();
    let per_second = |after: u64, before: u64| (after - before) as f64 / seconds;
    let cpu = cpu_between(&cpu_before, &cpu_after, &producer_thread);
    Ok(Figures {
        cpu_per_second: cpu / seconds,
        acks_per_second: produced.acks as f64 / seconds,
        commits_per_second: per_second(
            counts_after[0] + counts_after[2],
            counts_before[0] + counts_before[2],
        ),
        entries_per_second: per_second(counts_after[0], counts_before[0]),
        entry_bytes_per_second: per_second(counts_after[1], counts_before[1]),
        snapshots_per_second: per_second(counts_after[2], counts_before[2]),
        snapshot_bytes_per_second: per_second(counts_after[3], counts_before[3]),
    })
}

/// Sends `acks_per_second` acknowledgements, evenly spaced, each of a call's bytes over
/// `files_per_ack` files in turn: a second of warm-up, then `measuring`, marking both ends.
fn produce(
    acks: &mpsc::Sender<Ack>,
    files: &[Arc<SourceFile>],
    acks_per_second: u64,
    files_per_ack: usize,
    measuring: Duration,
    marks: &std::sync::mpsc::Sender<String>,
) -> Result<Produced, String> {
    let this_thread = fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|link| link.file_name().map(|id| id.to_string_lossy().into_owned()))
        .ok_or("cannot tell this thread's id from /proc/thread-self")?;
    let spacing = Duration::from_secs(1) / u32::try_from(acks_per_second).unwrap_or(u32::MAX);
    let range_bytes = CALL_BYTES / files_per_ack as u64;
    let mut offsets = vec![0u64; files.len()];
    let mut next_file = 0;
    let start = Instant::now();
    let mut due = start;
    let mut measured_from: Option<Instant> = None;
    let mut sent_while_measuring = 0;
    loop {
        let now = Instant::now();
        match measured_from {
            None if now >= start + WARM_UP => {
                measured_from = Some(now);
                let _ = marks.send(this_thread.clone());
            }
            Some(from) if now >= from + measuring => {
                let _ = marks.send(String::new());
                return Ok(Produced {
                    acks: sent_while_measuring,
                });
            }
            _ => {}
        }
        if now < due {
            thread::sleep(due - now);
            continue;
        }
        let ranges = (0..files_per_ack)
            .map(|_| {
                let index = next_file;
                next_file = (next_file + 1) % files.len();
                let start = offsets[index];
                offsets[index] += range_bytes;
                FileRange {
                    file: Arc::clone(&files[index]),
                    start,
                    end: start + range_bytes,
                }
            })
            .collect();
        acks.blocking_send(Ack::Delivered(ranges))
            .map_err(|_| "the checkpoint loop ended".to_owned())?;
        if measured_from.is_some() {
            sent_while_measuring += 1;
        }
        due += spacing;
    }
}

fn snapshot(counts: &checkpoint::WriteCounts) -> [u64; 4] {
    [
        counts.entries.load(Ordering::Relaxed),
        counts.entry_bytes.load(Ordering::Relaxed),
        counts.snapshots.load(Ordering::Relaxed),
        counts.snapshot_bytes.load(Ordering::Relaxed),
    ]
}

/// CPU-seconds of each thread of this process, by thread id, from the scheduler's nanosecond
/// counts.
fn threads_cpu() -> Result<HashMap<String, f64>, String> {
    let tasks =
        fs::read_dir("/proc/self/task").map_err(|error| format!("/proc/self/task: {error}"))?;
    let mut threads = HashMap::new();
    for task in tasks {
        let task = task.map_err(|error| format!("/proc/self/task: {error}"))?;
        // A thread may end between the listing and the read.
        if let Ok(seconds) = schedstat_seconds(&task.path().join("schedstat")) {
            threads.insert(task.file_name().to_string_lossy().into_owned(), seconds);
        }
    }
    Ok(threads)
}

/// CPU-seconds the threads alive at `after`, but `excluded`, used since `before`. A thread
/// that ended meanwhile takes its time with it: runtimes are shut down between runs so that
/// none of an earlier run's threads ends during a later one.
fn cpu_between(before: &HashMap<String, f64>, after: &HashMap<String, f64>, excluded: &str) -> f64 {
    after
        .iter()
        .filter(|(thread, _)| thread.as_str() != excluded)
        .map(|(thread, seconds)| seconds - before.get(thread).copied().unwrap_or(0.0))
        .sum()
}

/// The first field of a `schedstat` file: nanoseconds on a CPU.
fn schedstat_seconds(path: &Path) -> Result<f64, String> {
    let text = fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    text.split_whitespace()
        .next()
        .and_then(|field| field.parse::<u64>().ok())
        .map(|nanoseconds| nanoseconds as f64 / 1e9)
        .ok_or_else(|| format!("{}: no run time in {text:?}", path.display()))
}
