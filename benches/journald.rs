//! Throughput of the journald source with the real agent binary and the machine's journalctl:
//! a journal of generated access-log entries (written by `systemd-journal-remote`, installed on
//! first use as the journald tests install it) is shipped by a dry-run flow to `/dev/null`, and
//! the bench reports how fast, and what the agent and journalctl each cost in CPU and memory.
//!
//! `cargo bench --bench journald -- [--entries N] [--runs N] [--agent PATH]`

#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "a benchmark measures wall-clock time"
)]

#[path = "../tests/support/emulator.rs"]
#[allow(dead_code)]
mod emulator;
#[path = "../tests/support/http.rs"]
mod http;
#[path = "../tests/support/journal.rs"]
#[allow(dead_code)]
mod journal;
#[path = "ship/proc_usage.rs"]
mod proc_usage;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "cargo bench --bench journald -- [--entries N] [--runs N] [--agent PATH]";
const FLOW: &str = "journal";
/// How long one run may take before it counts as failed.
const RUN_DEADLINE: Duration = Duration::from_secs(300);
const POLL_EVERY: Duration = Duration::from_millis(20);
const UNITS: [&str; 3] = ["nginx.service", "sshd.service", "cron.service"];

struct Args {
    entries: u64,
    runs: usize,
    agent: PathBuf,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut parsed = Args {
            entries: 500_000,
            runs: 3,
            agent: PathBuf::from(env!("CARGO_BIN_EXE_kinship")),
        };
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value; {USAGE}"));
            match arg.as_str() {
                "--entries" => parsed.entries = number(&value()?)?,
                "--runs" => parsed.runs = number::<usize>(&value()?)?.max(1),
                "--agent" => parsed.agent = PathBuf::from(value()?),
                // cargo bench passes --bench to every bench target.
                "--bench" => {}
                other => return Err(format!("unknown argument {other}; {USAGE}")),
            }
        }
        Ok(parsed)
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a number; {USAGE}"))
}

/// What one run measured.
struct Figures {
    seconds: f64,
    agent_cpu: f64,
    journalctl_cpu: f64,
    peak_rss_bytes: u64,
    record_bytes: u64,
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
    let dir = emulator::tmp_dir().join(format!("journald-bench-{}", std::process::id()));
    let journal_dir = dir.join("journal");
    fs::create_dir_all(&journal_dir)
        .map_err(|error| format!("creating {}: {error}", journal_dir.display()))?;
    println!("writing {} journal entries ...", args.entries);
    write_journal(&journal_dir.join("bench.journal"), args.entries);
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let figures = run_once(args, &dir, &journal_dir, run)?;
        println!(
            "run {run}: {:.2} s, {:.0} entries/s, agent {:.2} CPU-s, journalctl {:.2} CPU-s, {:.1} CPU-s/GB of records in all, peak RSS {:.1} MiB",
            figures.seconds,
            args.entries as f64 / figures.seconds,
            figures.agent_cpu,
            figures.journalctl_cpu,
            (figures.agent_cpu + figures.journalctl_cpu) / (figures.record_bytes as f64 / 1e9),
            figures.peak_rss_bytes as f64 / 1048576.0
        );
        runs.push(figures);
    }
    let median = |value: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(value).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let record_bytes = runs.first().map_or(0, |figures| figures.record_bytes);
    println!(
        "median of {}: {:.0} entries/s, agent {:.2} CPU-s, journalctl {:.2} CPU-s ({} entries, {:.1} MB of records; {:.1} agent CPU-s/GB, {:.1} with journalctl), peak RSS {:.1} MiB",
        runs.len(),
        args.entries as f64 / median(|f| f.seconds),
        median(|f| f.agent_cpu),
        median(|f| f.journalctl_cpu),
        args.entries,
        record_bytes as f64 / 1e6,
        median(|f| f.agent_cpu) / (record_bytes as f64 / 1e9),
        median(|f| f.agent_cpu + f.journalctl_cpu) / (record_bytes as f64 / 1e9),
        median(|f| f.peak_rss_bytes as f64) / 1048576.0
    );
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// `count` access-log entries of three units, written in batches.
fn write_journal(file: &Path, count: u64) {
    const BATCH: u64 = 50_000;
    let mut first = 0;
    while first < count {
        let entries: Vec<journal::Entry> = (first..count.min(first + BATCH))
            .map(|n| {
                let message = format!(
                    "10.0.{}.{} - - [05/Dec/2026:10:14:03 +0000] \"GET /api/v1/items/{n} HTTP/1.1\" 200 {} \"-\" \"curl/8.5.0\"",
                    n % 256,
                    n / 256 % 256,
                    n % 5000
                );
                journal::Entry::new(
                    &message,
                    UNITS[(n % 3) as usize],
                    6,
                    1_764_929_643_000_000 + n * 1000,
                )
                .field("_PID", "812")
            })
            .collect();
        journal::write(file, &entries);
        first += BATCH;
    }
}

fn run_once(args: &Args, dir: &Path, journal_dir: &Path, run: usize) -> Result<Figures, String> {
    let state = dir.join(format!("state-{run}"));
    let port = http::free_port();
    let config = dir.join(format!("kinship-{run}.yaml"));
    let text = format!(
        "state_dir: {}\ndry_run_output: /dev/null\nprogress_interval: 1h\nmetrics: {{ listen: 127.0.0.1:{port} }}\nflows:\n  - name: {FLOW}\n    journald: {{ directory: {} }}\n    initial_position: start_of_file\n    dry_run: true\n    kinesis_stream: bench\n",
        state.display(),
        journal_dir.display()
    );
    fs::write(&config, text).map_err(|error| format!("writing {}: {error}", config.display()))?;
    let log = dir.join(format!("agent-{run}.log"));
    let log_file =
        fs::File::create(&log).map_err(|error| format!("creating {}: {error}", log.display()))?;
    let started = Instant::now();
    let mut agent = Command::new(&args.agent)
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|error| format!("starting {}: {error}", args.agent.display()))?;
    let outcome = measure(args, &mut agent, port, started);
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let _ = agent.wait();
    outcome.map_err(|message| format!("run {run}: {message}; the agent's log: {}", log.display()))
}

fn measure(args: &Args, agent: &mut Child, port: u16, started: Instant) -> Result<Figures, String> {
    let sent_line = format!(
        "kinship_records_sent_total{{flow=\"{FLOW}\"}} {}",
        args.entries
    );
    let mut journalctl_cpu = 0.0;
    loop {
        if started.elapsed() > RUN_DEADLINE {
            return Err(format!("not every entry was sent within {RUN_DEADLINE:?}"));
        }
        if let Ok(Some(status)) = agent.try_wait() {
            return Err(format!("the agent exited: {status}"));
        }
        // journalctl's CPU is read while it runs: it goes with it.
        journalctl_cpu = children(agent.id())
            .iter()
            .filter_map(|pid| cpu_seconds(*pid))
            .sum::<f64>()
            .max(journalctl_cpu);
        if let Some((200, metrics)) = http::get(port, "/metrics") {
            if metrics.lines().any(|line| line == sent_line) {
                let seconds = started.elapsed().as_secs_f64();
                let record_bytes = counter(&metrics, "kinship_bytes_sent_total");
                return Ok(Figures {
                    seconds,
                    agent_cpu: cpu_seconds(agent.id()).ok_or("the agent's CPU time")?,
                    journalctl_cpu,
                    peak_rss_bytes: peak_rss_bytes(agent.id()).ok_or("the agent's peak RSS")?,
                    record_bytes,
                });
            }
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// The flow's value of a counter in the metrics text.
fn counter(metrics: &str, name: &str) -> u64 {
    let prefix = format!("{name}{{flow=\"{FLOW}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|child| child.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    proc_usage::cpu_seconds(&format!("/proc/{pid}/stat")).ok()
}

fn peak_rss_bytes(pid: u32) -> Option<u64> {
    proc_usage::peak_rss_bytes(pid).ok()
}
