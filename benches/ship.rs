//! End-to-end throughput of the real agent binary: it ships a generated access log to a null
//! Kinesis (or Firehose) endpoint in this process, and the bench reports how fast, at what CPU
//! and memory cost, and how many service records and billing units the lines took.
//!
//! `cargo bench --bench ship -- [--lines N] [--files N] [--max-open-files N] [--runs N]
//! [--idle S] [--keep-going] [--fail-percent P] [--outage S] [--memory-budget MIB] [--agent PATH]
//! [--firehose] [--data-path direct|sdk|both] [--wire-format cbor|json] [--tls]
//! [--aggregation kpl] [--pack] [--compression gzip|zstd] [--shards N]
//! [--ordering per_shard|none|both] [--partition-key random|client|fixed]
//! [--checkpoint-commit group|interval]
//! [--processor filter|redact|add_metadata|log_to_json|csv_to_json]...`
//! `cargo bench --bench ship -- --serve-only [--port P] [mode options]` runs only the null
//! endpoint.

#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "a benchmark measures wall-clock time"
)]

// Each file directly in benches/ is a bench target of its own, so this one's modules live in
// a folder of its name.
#[path = "ship/access_log.rs"]
mod access_log;
#[path = "ship/agent.rs"]
mod agent;
#[path = "ship/null_kinesis.rs"]
mod null_kinesis;
#[path = "ship/proc_usage.rs"]
mod proc_usage;
#[path = "ship/put_request.rs"]
mod put_request;
#[path = "ship/record_lines.rs"]
mod record_lines;
#[path = "ship/report.rs"]
mod report;
/// The tests' polling loop, shared with them.
#[path = "../tests/support/wait.rs"]
#[allow(dead_code)]
mod wait;

use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use access_log::AccessLog;
use agent::Agent;
use null_kinesis::{Alpn, NullKinesis, Options, Stats, MAX_SHARDS};
use record_lines::{Combining, Compression, Encoding};
use report::Figures;

const DEFAULT_LINES: u64 = 2_000_000;
const POLL_INTERVAL: Duration = Duration::from_millis(2);
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// Allowed per 2,000,000 lines, and at least this long, before a run is declared stuck.
const TIMEOUT_PER_DEFAULT_RUN: Duration = Duration::from_secs(300);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 30;
/// Before idle CPU is measured: two scan intervals, so that files that took turns for a
/// descriptor have all been read to their end and closed.
const IDLE_SETTLE: Duration = Duration::from_secs(10);

const USAGE: &str = "\
usage: cargo bench --bench ship -- [--lines N] [--files N] [--max-open-files N] [--runs N]
                                   [--idle S] [--keep-going] [--fail-percent P]
                                   [--outage S] [--memory-budget MIB] [--agent PATH]
                                   [--firehose] [--data-path direct|sdk|both]
                                   [--wire-format cbor|json] [--tls]
                                   [--aggregation kpl] [--pack]
                                   [--compression gzip|zstd] [--shards N]
                                   [--ordering per_shard|none|both]
                                   [--partition-key random|client|fixed]
                                   [--checkpoint-commit group|interval]
                                   [--processor filter|redact|add_metadata|log_to_json|csv_to_json]...
       cargo bench --bench ship -- --serve-only [--port P] [--aggregation kpl] [--pack]
                                   [--compression gzip|zstd] [--shards N]

  --lines N      access-log lines to ship (default 2000000)
  --files N      deal the lines into N files of consecutive lines, all shipped at once by one
                 flow whose glob matches them all (default 1)
  --max-open-files N  the agent's max_open_files (default: the agent's default)
  --idle S       once every line has arrived and the agent has settled for 10 s, leave it idle
                 for S seconds and report its CPU meanwhile, as a percentage of one core
                 (default 0: not measured)
  --runs N       measure N times and print the median of each figure (default 1)
  --keep-going   go on with the remaining runs after one fails
  --serve-only   run only the null endpoint until Ctrl-C
  --port P       the endpoint's port (default: any free one)
  --fail-percent P  refuse P % of records as throttled (ProvisionedThroughputExceededException,
                 or ServiceUnavailableException for Firehose)
  --outage S     an outage, then a catch-up: for the first S seconds every put call fails
                 (500 InternalFailure) while the input is written into the followed files as
                 fast as the disk takes it (it is not there when the agent starts); then the
                 endpoint accepts again. The agent's peak RSS (VmHWM) is reported at the end
                 of the outage as well as at the end of the run
  --memory-budget MIB  the agent's memory_budget, in MiB (default: the agent's default)
  --agent PATH   run this kinship binary instead of the one cargo built with the bench (to
                 compare a build kept from before a change)
  --data-path P  direct (kinship's own requests), sdk (the AWS SDK's client) or both: each
                 run measures the direct path, then the SDK path, and the medians are printed
                 side by side with their ratio (default both)
  --wire-format F  the direct path's wire_format: cbor or json (default: cbor for Kinesis,
                 what a flow to AWS's own endpoints sends unless told otherwise; the agent
                 itself would choose json for the bench's endpoint_url; Firehose speaks json)
  --tls          serve the endpoint over HTTPS with a throwaway CA, given to the agent as
                 aws.tls.ca_file
  --firehose     ship to a Firehose stream (firehose_stream, PutRecordBatch) instead of a
                 Kinesis stream
  --aggregation kpl  Kinesis only: aggregation: kpl, many lines a record in the KPL format
  --pack         Firehose only: pack_records: true, lines joined into records of up to 1,000 KiB
  --compression gzip|zstd  compression: each record's data compressed (default none)
  --processor P  run processor P on every line (repeat for several, in order): filter (an
                 include every line matches and an exclude none does), redact (every built-in
                 detector), add_metadata (fields, host, file, timestamp, in the envelope),
                 log_to_json (combined_apache), csv_to_json (split at spaces)
  --ordering O   Kinesis only: the flow's ordering, per_shard or none, or both: each run
                 measures per_shard, then none, on one data path (direct unless --data-path
                 names one), and the medians are printed side by side (default: the agent's
                 default, per_shard)
  --partition-key K  random (the agent's default: a key per record, so no order to keep and
                 both orderings send alike), client (each line's first field, its client
                 address, by regex: order per client) or fixed (one key: one shard, in order)
  --checkpoint-commit C  the agent's checkpoint_commit: group (its default: the journal,
                 written as acknowledgements arrive) or interval (the whole file every
                 checkpoint_interval)
  --shards N     Kinesis only: the stream's open shards, with even hash key ranges, as
                 DescribeStreamSummary and ListShards give them (default 1; above 1, the
                 endpoint hashes every partition key to answer with each record's shard)

The endpoint counts service records, the lines in them (undoing aggregation, packing and
compression, so it must be told the mode in --serve-only too), and the billing units of the
records: 25 KiB PUT payload units (data plus partition key) for Kinesis, 5 KiB for Firehose.";

const KPL_NEEDS_KINESIS: &str = "--aggregation kpl needs a Kinesis stream: leave out \
    --firehose (to combine lines for Firehose, use --pack)";
const PACK_NEEDS_FIREHOSE: &str = "--pack needs --firehose: packing applies to Firehose streams \
    only (to combine lines for Kinesis, use --aggregation kpl)";

/// Turns any error into a message that says what was being done.
trait Context<T> {
    fn context(self, doing: impl Display) -> Result<T, String>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, doing: impl Display) -> Result<T, String> {
        self.map_err(|error| format!("{doing}: {error}"))
    }
}

struct Args {
    lines: u64,
    files: u64,
    max_open_files: Option<u64>,
    runs: usize,
    idle_seconds: u64,
    keep_going: bool,
    serve_only: bool,
    port: u16,
    /// Percent of records the endpoint refuses as throttled, to show retries add no duplicates.
    fail_percent: f64,
    /// Seconds of simulated outage at the start, while the input is written.
    outage_seconds: u64,
    /// The agent's `memory_budget`, in MiB.
    memory_budget_mib: Option<u64>,
    /// The agent binary to run.
    agent: PathBuf,
    /// A Firehose stream rather than a Kinesis stream.
    firehose: bool,
    encoding: Encoding,
    /// The Kinesis stream's open shards.
    shards: u32,
    /// Processors the flow runs, in order (each keeps every line, one record a line).
    processors: Vec<BenchProcessor>,
    /// The data paths each run measures, in order.
    data_paths: Vec<DataPath>,
    /// The direct path's `wire_format`; `None`: the agent's default.
    wire_format: Option<String>,
    /// The endpoint speaks HTTPS.
    tls: bool,
    /// The flow's `ordering` values each run measures, in order; empty: the agent's default.
    orderings: Vec<&'static str>,
    /// The flow's `partition_key`.
    partition_key: BenchKey,
    /// The agent's `checkpoint_commit`; `None`: its default.
    checkpoint_commit: Option<String>,
}

/// The partition key the bench's flow gives each line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BenchKey {
    /// `random`, the agent's default: no order per key to keep.
    Random,
    /// The line's client address (its first field), taken with a regex: order per client.
    Client,
    /// One fixed key: every line to one shard, in order.
    Fixed,
}

impl BenchKey {
    fn yaml(self) -> &'static str {
        match self {
            Self::Random => "",
            Self::Client => "    partition_key: { regex: '^(\\S+) ' }\n",
            Self::Fixed => "    partition_key: bench\n",
        }
    }
}

/// One measured set-up: the data path, and the ordering when several are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Variant {
    data_path: DataPath,
    ordering: Option<&'static str>,
}

impl Variant {
    fn name(self) -> String {
        match self.ordering {
            Some(ordering) => format!("{} {ordering}", self.data_path.name()),
            None => self.data_path.name().to_owned(),
        }
    }
}

/// Who writes and sends the agent's data calls (its flow key `data_path`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DataPath {
    Direct,
    Sdk,
}

impl DataPath {
    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Sdk => "sdk",
        }
    }
}

/// A processor to measure, configured so that every line still arrives as one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BenchProcessor {
    /// Two patterns tried on every line: an include every line matches, an exclude none does.
    Filter,
    /// Every built-in detector (access-log lines hold nothing they redact).
    Redact,
    /// Fixed fields, host, file and timestamp, in the envelope (the lines are not JSON).
    AddMetadata,
    /// Each line parsed as an Apache combined-format line into a JSON object.
    LogToJson,
    /// Each line split at spaces (quoted fields kept whole) into a JSON object.
    CsvToJson,
}

impl BenchProcessor {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "filter" => Some(Self::Filter),
            "redact" => Some(Self::Redact),
            "add_metadata" => Some(Self::AddMetadata),
            "log_to_json" => Some(Self::LogToJson),
            "csv_to_json" => Some(Self::CsvToJson),
            _ => None,
        }
    }

    /// The processor's entry in the flow's `processors` list.
    fn yaml(self) -> &'static str {
        match self {
            Self::Filter => "      - type: filter\n        include: 'HTTP/1\\.[01]\"'\n        exclude: '^#'\n",
            Self::Redact => "      - type: redact\n        builtin: [email, us_ssn, card_number, aws_access_key_id, aws_secret_key, bearer_token]\n",
            Self::AddMetadata => "      - type: add_metadata\n        fields: {env: bench}\n        host: true\n        file: true\n        timestamp: true\n        envelope: true\n",
            Self::LogToJson => "      - type: log_to_json\n        format: combined_apache\n",
            Self::CsvToJson => "      - type: csv_to_json\n        delimiter: ' '\n        field_names: [host, ident, user, time, zone, request, status, bytes, referer, agent]\n",
        }
    }
}

impl Args {
    /// Unknown arguments are ignored: cargo passes `--bench` to every bench.
    fn parse(mut raw: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut args = Args {
            lines: DEFAULT_LINES,
            files: 1,
            max_open_files: None,
            runs: 1,
            idle_seconds: 0,
            keep_going: false,
            serve_only: false,
            port: 0,
            fail_percent: 0.0,
            outage_seconds: 0,
            memory_budget_mib: None,
            agent: PathBuf::from(env!("CARGO_BIN_EXE_kinship")),
            firehose: false,
            encoding: Encoding::default(),
            shards: 1,
            processors: Vec::new(),
            data_paths: vec![DataPath::Direct, DataPath::Sdk],
            wire_format: None,
            tls: false,
            orderings: Vec::new(),
            partition_key: BenchKey::Random,
            checkpoint_commit: None,
        };
        let mut shards_given = false;
        let mut ordering_given = false;
        let mut data_path_given = false;
        while let Some(arg) = raw.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| raw.next())
                    .ok_or(format!("{name} needs a value"))
            };
            match name.as_str() {
                "--lines" => args.lines = number(&name, &value()?)?,
                "--runs" => args.runs = number(&name, &value()?)?,
                "--files" => args.files = number(&name, &value()?)?,
                "--max-open-files" => args.max_open_files = Some(number(&name, &value()?)?),
                "--idle" => args.idle_seconds = number(&name, &value()?)?,
                "--port" => args.port = number(&name, &value()?)?,
                "--fail-percent" => args.fail_percent = number(&name, &value()?)?,
                "--outage" => args.outage_seconds = number(&name, &value()?)?,
                "--memory-budget" => args.memory_budget_mib = Some(number(&name, &value()?)?),
                "--agent" => args.agent = PathBuf::from(value()?),
                "--shards" => {
                    args.shards = number(&name, &value()?)?;
                    shards_given = true;
                }
                "--aggregation" => {
                    args.encoding.combining = match value()?.as_str() {
                        "kpl" => Combining::Kpl,
                        "none" => Combining::None,
                        other => {
                            return Err(format!("--aggregation: {other:?} is not kpl or none"))
                        }
                    }
                }
                "--compression" => {
                    let text = value()?;
                    args.encoding.compression = Compression::parse(&text)
                        .ok_or(format!("--compression: {text:?} is not gzip, zstd or none"))?;
                }
                "--processor" => {
                    let text = value()?;
                    args.processors
                        .push(BenchProcessor::parse(&text).ok_or(format!(
                            "--processor: {text:?} is not filter, redact, add_metadata, log_to_json or csv_to_json"
                        ))?);
                }
                "--data-path" => {
                    data_path_given = true;
                    args.data_paths = match value()?.as_str() {
                        "direct" => vec![DataPath::Direct],
                        "sdk" => vec![DataPath::Sdk],
                        "both" => vec![DataPath::Direct, DataPath::Sdk],
                        other => {
                            return Err(format!(
                                "--data-path: {other:?} is not direct, sdk or both"
                            ))
                        }
                    }
                }
                "--wire-format" => {
                    let text = value()?;
                    if !matches!(text.as_str(), "cbor" | "json") {
                        return Err(format!("--wire-format: {text:?} is not cbor or json"));
                    }
                    args.wire_format = Some(text);
                }
                "--tls" => args.tls = true,
                "--checkpoint-commit" => {
                    let text = value()?;
                    if !matches!(text.as_str(), "group" | "interval") {
                        return Err(format!(
                            "--checkpoint-commit: {text:?} is not group or interval"
                        ));
                    }
                    args.checkpoint_commit = Some(text);
                }
                "--ordering" => {
                    args.orderings = match value()?.as_str() {
                        "per_shard" => vec!["per_shard"],
                        "none" => vec!["none"],
                        "both" => vec!["per_shard", "none"],
                        other => {
                            return Err(format!(
                                "--ordering: {other:?} is not per_shard, none or both"
                            ))
                        }
                    };
                    ordering_given = true;
                }
                "--partition-key" => {
                    args.partition_key = match value()?.as_str() {
                        "random" => BenchKey::Random,
                        "client" => BenchKey::Client,
                        "fixed" => BenchKey::Fixed,
                        other => {
                            return Err(format!(
                                "--partition-key: {other:?} is not random, client or fixed"
                            ))
                        }
                    }
                }
                "--pack" => args.encoding.combining = Combining::Pack,
                "--firehose" => args.firehose = true,
                "--keep-going" => args.keep_going = true,
                "--serve-only" => args.serve_only = true,
                "--bench" => {}
                _ => eprintln!("ignoring argument {arg:?}"),
            }
        }
        if !(0.0..100.0).contains(&args.fail_percent) {
            return Err("--fail-percent must be at least 0 and below 100".to_owned());
        }
        if args.lines == 0 || args.runs == 0 || args.files == 0 {
            return Err("--lines, --files and --runs must be at least 1".to_owned());
        }
        if args.memory_budget_mib == Some(0) {
            return Err("--memory-budget must be at least 1 (MiB)".to_owned());
        }
        if args.files > args.lines {
            return Err("--files must not exceed --lines".to_owned());
        }
        if args.orderings.len() == 2 {
            // One axis at a time: orderings compared on one data path.
            if data_path_given && args.data_paths.len() != 1 {
                return Err(
                    "--ordering both compares on one data path: add --data-path direct or sdk"
                        .to_owned(),
                );
            }
            if !data_path_given {
                args.data_paths = vec![DataPath::Direct];
            }
        }
        if ordering_given && args.firehose {
            return Err("--ordering applies to Kinesis streams only".to_owned());
        }
        args.check_destination(shards_given)?;
        Ok(args)
    }

    /// Refuses options that mean nothing for the destination, as the agent's config would.
    fn check_destination(&self, shards_given: bool) -> Result<(), String> {
        let combining = self.encoding.combining;
        if combining == Combining::Kpl && self.firehose {
            return Err(KPL_NEEDS_KINESIS.to_owned());
        }
        if combining == Combining::Pack && !self.firehose && !self.serve_only {
            return Err(PACK_NEEDS_FIREHOSE.to_owned());
        }
        if self.firehose && self.wire_format.as_deref() == Some("cbor") {
            return Err("--wire-format cbor applies to Kinesis streams only".to_owned());
        }
        if shards_given && self.firehose {
            return Err(
                "--shards applies to Kinesis streams only: leave it out with --firehose".to_owned(),
            );
        }
        if !(1..=MAX_SHARDS).contains(&self.shards) {
            return Err(format!("--shards must be 1 to {MAX_SHARDS}"));
        }
        Ok(())
    }

    /// The direct path's `wire_format`: as asked, else what a flow to AWS's own endpoints
    /// sends (the bench's endpoint_url would make the agent choose json).
    fn direct_wire_format(&self) -> &str {
        match (&self.wire_format, self.firehose) {
            (Some(format), _) => format,
            (None, true) => "json",
            (None, false) => "cbor",
        }
    }

    /// The set-ups each run measures, in turn.
    fn variants(&self) -> Vec<Variant> {
        let orderings: Vec<Option<&'static str>> = if self.orderings.is_empty() {
            vec![None]
        } else {
            self.orderings.iter().copied().map(Some).collect()
        };
        self.data_paths
            .iter()
            .flat_map(|&data_path| {
                orderings.iter().map(move |&ordering| Variant {
                    data_path,
                    ordering,
                })
            })
            .collect()
    }

    /// The destination and mode, as the setup lines show them.
    fn describe_flow(&self) -> String {
        if self.firehose {
            format!("Firehose stream, {}", self.encoding)
        } else {
            format!(
                "Kinesis stream of {}, {}",
                shard_count(self.shards),
                self.encoding
            )
        }
    }
}

fn shard_count(shards: u32) -> String {
    match shards {
        1 => "1 shard".to_owned(),
        many => format!("{many} shards"),
    }
}

fn number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{name}: {text:?} is not a valid number"))
}

fn main() -> ExitCode {
    if std::env::args().any(|arg| arg == "-h" || arg == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let outcome = Args::parse(std::env::args().skip(1)).and_then(|args| bench(&args));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(false)` when some run failed or the agent did not stop cleanly.
fn bench(args: &Args) -> Result<bool, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("null-kinesis")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let options = Options {
        fail_percent: args.fail_percent,
        shards: args.shards,
        encoding: args.encoding,
    };
    let server = if args.tls {
        NullKinesis::start_tls(&runtime, args.port, options, Alpn::H2AndHttp1)?
    } else {
        NullKinesis::start(&runtime, args.port, options)?
    };
    if args.serve_only {
        return serve_only(&runtime, &server, args);
    }
    let work_dir = work_dir()?;
    let log = access_log::cached(&work_dir, args.lines)?;
    let inputs = if args.files == 1 {
        vec![log.path.clone()]
    } else {
        access_log::split(&log, args.files, &work_dir)?
    };
    print_setup(&log, &inputs, &server, args);
    let variants = args.variants();
    let mut results: Vec<Vec<(usize, Figures)>> = vec![Vec::new(); variants.len()];
    let mut all_clean = true;
    'runs: for number in 1..=args.runs {
        // The set-ups take turns within each run, so that a busier minute of the machine
        // weighs on both alike.
        for (variant, path_results) in variants.iter().zip(&mut results) {
            eprintln!("run {number}/{}, {}", args.runs, variant.name());
            match run_once(&server, &log, &inputs, &work_dir, args, *variant) {
                Ok(figures) => {
                    all_clean &= figures.agent_ending.clean;
                    path_results.push((number, figures));
                }
                Err(message) => {
                    eprintln!("run {number} failed: {message}");
                    all_clean = false;
                    if !args.keep_going {
                        break 'runs;
                    }
                }
            }
        }
    }
    for (variant, path_results) in variants.iter().zip(&results) {
        if !path_results.is_empty() {
            println!();
            println!("data_path: {}", variant.name());
            report::print_table(path_results);
        }
    }
    if let ([first, second], [first_results, second_results]) =
        (variants.as_slice(), results.as_slice())
    {
        if !first_results.is_empty() && !second_results.is_empty() {
            println!();
            report::print_comparison(
                (&first.name(), first_results),
                (&second.name(), second_results),
            );
        }
    }
    Ok(all_clean)
}

/// Where the cached input and each run's files live: under `target/`, so that the input can be
/// hard-linked into every run's directory instead of copied.
fn work_dir() -> Result<PathBuf, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(target)
        .join("kinship-bench");
    fs::create_dir_all(&dir).context(format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn print_setup(log: &AccessLog, inputs: &[PathBuf], server: &NullKinesis, args: &Args) {
    println!(
        "input:    {} lines, {} bytes ({:.1} bytes a line), {}",
        log.lines,
        log.bytes,
        log.bytes as f64 / log.lines as f64,
        log.path.display()
    );
    if inputs.len() > 1 {
        println!(
            "          dealt into {} files of about {} lines each",
            inputs.len(),
            log.lines / inputs.len() as u64
        );
    }
    println!("agent:    {}", args.agent.display());
    println!("flow:     {}", args.describe_flow());
    let paths: Vec<String> = args
        .variants()
        .iter()
        .map(|variant| variant.name())
        .collect();
    println!(
        "paths:    data_path {}{}",
        paths.join(", then "),
        args.wire_format
            .as_deref()
            .map_or_else(String::new, |format| format!(
                " (direct: wire_format {format})"
            ))
    );
    if let Some(mib) = args.memory_budget_mib {
        println!("budget:   memory_budget {mib} MiB");
    }
    if args.outage_seconds > 0 {
        println!(
            "outage:   every put call fails for the first {} s while the input is written",
            args.outage_seconds
        );
    }
    println!("endpoint: {} (null endpoint in this process)", server.url());
}

/// One measurement in a fresh directory, kept for inspection if anything went wrong.
fn run_once(
    server: &NullKinesis,
    log: &AccessLog,
    inputs: &[PathBuf],
    work_dir: &Path,
    args: &Args,
    variant: Variant,
) -> Result<Figures, String> {
    let dir = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(work_dir)
        .context(format!(
            "creating a run directory in {}",
            work_dir.display()
        ))?;
    match measure(server, log, inputs, dir.path(), args, variant) {
        Ok(figures) if figures.agent_ending.clean => Ok(figures),
        Ok(figures) => {
            let log_path = dir.keep().join("agent.log");
            eprintln!(
                "warning: the agent did not stop cleanly ({}); log {}, last lines:\n{}",
                figures.agent_ending.description,
                log_path.display(),
                agent::log_tail(&log_path, LOG_TAIL_LINES)
            );
            Ok(figures)
        }
        Err(message) => Err(format!(
            "{message}\nrun directory kept: {}",
            dir.keep().display()
        )),
    }
}

fn measure(
    server: &NullKinesis,
    log: &AccessLog,
    inputs: &[PathBuf],
    dir: &Path,
    args: &Args,
    variant: Variant,
) -> Result<Figures, String> {
    let logs = dir.join("logs");
    fs::create_dir(&logs).context(format!("creating {}", logs.display()))?;
    let (files_glob, targets) = match inputs {
        [single] => {
            let input = logs.join("access.log");
            (input.clone(), vec![(single.clone(), input)])
        }
        _ => {
            let targets = inputs
                .iter()
                .map(|input| {
                    let name = input.file_name().unwrap_or_default();
                    (input.clone(), logs.join(name))
                })
                .collect();
            (logs.join("*.log"), targets)
        }
    };
    // In an outage the files grow while the agent runs; otherwise they are whole at its start.
    let outage = Duration::from_secs(args.outage_seconds);
    if outage.is_zero() {
        for (input, target) in &targets {
            link_or_copy(input, target)?;
        }
    } else {
        for (_, target) in &targets {
            fs::File::create(target).context(format!("creating {}", target.display()))?;
        }
    }
    let config = write_config(dir, &files_glob, server, args, variant)?;
    server.stats.reset();
    server.set_failing(!outage.is_zero());
    let own_cpu_before = agent::cpu_seconds("/proc/self/stat")?;
    let started = Instant::now();
    let mut agent = Agent::spawn(&args.agent, &config, dir.join("agent.log"))?;
    eprintln!(
        "  agent pid {}, log {}",
        agent.pid(),
        agent.log_path.display()
    );
    let outage_peak_rss_bytes = if outage.is_zero() {
        None
    } else {
        let outage_end = simulate_outage(&mut agent, server, targets, outage, started);
        server.set_failing(false);
        let peak = outage_end.map_err(|message| {
            format!(
                "{message}\nagent log {}, last lines:\n{}",
                agent.log_path.display(),
                agent::log_tail(&agent.log_path, LOG_TAIL_LINES)
            )
        })?;
        Some(peak)
    };
    if let Err(message) = wait_for_lines(&mut agent, &server.stats, log.lines, started) {
        return Err(format!(
            "{message}\nagent log {}, last lines:\n{}",
            agent.log_path.display(),
            agent::log_tail(&agent.log_path, LOG_TAIL_LINES)
        ));
    }
    let elapsed = started.elapsed();
    let usage = agent.usage()?;
    let idle_cpu_percent = if args.idle_seconds > 0 {
        eprintln!(
            "  letting the agent settle for {} s, then measuring it idle for {} s",
            IDLE_SETTLE.as_secs(),
            args.idle_seconds
        );
        thread::sleep(IDLE_SETTLE);
        let settled = agent.usage()?;
        let idle = Duration::from_secs(args.idle_seconds);
        let idle_started = Instant::now();
        thread::sleep(idle);
        let idle_cpu = agent.usage()?.cpu_seconds - settled.cpu_seconds;
        Some(100.0 * idle_cpu / idle_started.elapsed().as_secs_f64())
    } else {
        None
    };
    let agent_ending = agent.terminate(SHUTDOWN_GRACE)?;
    let own_cpu = agent::cpu_seconds("/proc/self/stat")? - own_cpu_before;
    let figures = Figures {
        lines: log.lines,
        files: inputs.len() as u64,
        line_bytes: log.bytes,
        elapsed_seconds: elapsed.as_secs_f64(),
        agent_cpu_seconds: usage.cpu_seconds,
        peak_rss_bytes: usage.peak_rss_bytes,
        outage_peak_rss_bytes,
        received: server.stats.snapshot(),
        server_cpu_seconds: own_cpu,
        idle_cpu_percent,
        agent_ending,
    };
    eprintln!(
        "  {} lines in {:.2} s: {:.0} lines/s, agent CPU {:.2} s, exit: {}",
        figures.lines,
        figures.elapsed_seconds,
        figures.lines as f64 / figures.elapsed_seconds,
        figures.agent_cpu_seconds,
        figures.agent_ending.description
    );
    if figures.duplicates() > 0 {
        eprintln!(
            "warning: {} more lines than were written arrived: the agent sent some lines more \
             than once, so it may have reached the count before every line had arrived",
            figures.duplicates()
        );
    }
    if figures.received.malformed_records > 0 {
        eprintln!(
            "warning: {} records were not in the form {} gives them; each counted as the lines \
             a consumer would read from it",
            figures.received.malformed_records, args.encoding
        );
    }
    if figures.received.rejected_requests > 0 {
        eprintln!(
            "warning: the endpoint rejected {} requests (unknown operations, or calls over the \
             service's limits)",
            figures.received.rejected_requests
        );
    }
    Ok(figures)
}

/// Writes every input into its target (appending, 1 MiB at a time, as a busy application
/// would) while the endpoint fails every call, until `outage` has passed since `started`;
/// returns the agent's peak RSS by then.
fn simulate_outage(
    agent: &mut Agent,
    server: &NullKinesis,
    targets: Vec<(PathBuf, PathBuf)>,
    outage: Duration,
    started: Instant,
) -> Result<u64, String> {
    eprintln!(
        "  outage: every put call fails for {} s while the input is written",
        outage.as_secs()
    );
    let writer = thread::spawn(move || -> Result<(), String> {
        for (input, target) in targets {
            append_in_chunks(&input, &target)?;
        }
        Ok(())
    });
    while started.elapsed() < outage {
        if let Some(status) = agent.exited()? {
            return Err(format!("the agent exited during the outage ({status})"));
        }
        thread::sleep(POLL_INTERVAL.max(Duration::from_millis(50)));
    }
    let written = writer
        .join()
        .map_err(|_| "the writer thread panicked".to_owned())?;
    if started.elapsed() > outage + Duration::from_secs(1) {
        eprintln!(
            "warning: writing the input took {:.1} s, longer than the outage",
            started.elapsed().as_secs_f64()
        );
    }
    written?;
    let usage = agent.usage()?;
    let failed = server.stats.snapshot().failed_requests;
    eprintln!(
        "  outage over after {:.1} s: {failed} put calls failed, agent peak RSS {:.1} MiB; catching up",
        started.elapsed().as_secs_f64(),
        usage.peak_rss_bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(usage.peak_rss_bytes)
}

fn append_in_chunks(from: &Path, to: &Path) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut input = fs::File::open(from).context(format!("opening {}", from.display()))?;
    let mut output = fs::OpenOptions::new()
        .append(true)
        .open(to)
        .context(format!("opening {}", to.display()))?;
    let mut chunk = vec![0u8; 1024 * 1024];
    loop {
        let read = input
            .read(&mut chunk)
            .context(format!("reading {}", from.display()))?;
        if read == 0 {
            return Ok(());
        }
        output
            .write_all(&chunk[..read])
            .context(format!("writing {}", to.display()))?;
    }
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), String> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to)
        .map(drop)
        .context(format!("copying {} to {}", from.display(), to.display()))
}

fn write_config(
    dir: &Path,
    input: &Path,
    server: &NullKinesis,
    args: &Args,
    variant: Variant,
) -> Result<PathBuf, String> {
    let data_path = variant.data_path;
    let endpoint_url = server.url();
    let destination = if args.firehose {
        "firehose_stream"
    } else {
        "kinesis_stream"
    };
    let mut text = format!(
        "\
state_dir: {state_dir}
aws:
  region: us-east-1
  endpoint_url: {endpoint_url}
  check_identity: false
{tls}progress_interval: 5s
flows:
  - name: bench
    files: {input}
    {destination}: bench
    initial_position: start_of_file
    max_batch_age: 1s
",
        state_dir = yaml_string(&dir.join("state")),
        input = yaml_string(input),
        tls = server.ca_pem_path().map_or_else(String::new, |ca| format!(
            "  tls:\n    ca_file: {}\n",
            yaml_string(ca)
        )),
    );
    // Flow keys: the flow's block is the last one written above.
    text += &format!("    data_path: {}\n", data_path.name());
    if data_path == DataPath::Direct {
        text += &format!("    wire_format: {}\n", args.direct_wire_format());
    }
    match args.encoding.combining {
        Combining::None => {}
        Combining::Kpl => text += "    aggregation: kpl\n",
        Combining::Pack => text += "    pack_records: true\n",
    }
    if let Some(ordering) = variant.ordering {
        text += &format!("    ordering: {ordering}\n");
    }
    text += args.partition_key.yaml();
    if args.encoding.compression != Compression::None {
        text += &format!("    compression: {}\n", args.encoding.compression.name());
    }
    if !args.processors.is_empty() {
        text += "    processors:\n";
        for processor in &args.processors {
            text += processor.yaml();
        }
    }
    if let Some(max_open_files) = args.max_open_files {
        text += &format!("max_open_files: {max_open_files}\n");
    }
    if let Some(mib) = args.memory_budget_mib {
        text += &format!("memory_budget: {}\n", mib * 1024 * 1024);
    }
    if let Some(commit) = &args.checkpoint_commit {
        text += &format!("checkpoint_commit: {commit}\n");
    }
    let path = dir.join("kinship.yaml");
    fs::write(&path, text).context(format!("writing {}", path.display()))?;
    Ok(path)
}

/// A JSON string is a valid double-quoted YAML scalar, whatever the path holds.
fn yaml_string(path: &Path) -> String {
    serde_json::Value::from(path.to_string_lossy()).to_string()
}

/// Waits until the endpoint has every line; fails if the agent exits first or takes too long.
fn wait_for_lines(
    agent: &mut Agent,
    stats: &Stats,
    lines: u64,
    started: Instant,
) -> Result<(), String> {
    let timeout = TIMEOUT_PER_DEFAULT_RUN
        .max(TIMEOUT_PER_DEFAULT_RUN.mul_f64(lines as f64 / DEFAULT_LINES as f64));
    let mut next_progress = PROGRESS_INTERVAL;
    let ended = wait::poll_every(
        POLL_INTERVAL,
        timeout.saturating_sub(started.elapsed()),
        || {
            let received = stats.lines();
            if received >= lines {
                return Some(Ok(()));
            }
            let elapsed = started.elapsed();
            match agent.exited() {
                Err(error) => return Some(Err(error)),
                Ok(Some(status)) => return Some(Err(format!(
                    "the agent exited early ({status}) after {:.2} s, with {received} of {lines} lines delivered",
                    elapsed.as_secs_f64()
                ))),
                Ok(None) => {}
            }
            if elapsed >= next_progress {
                eprintln!("  {:>5.0} s: {received} lines", elapsed.as_secs_f64());
                next_progress += PROGRESS_INTERVAL;
            }
            None
        },
    );
    ended.unwrap_or_else(|| {
        Err(format!(
            "gave up after {timeout:?}: {} of {lines} lines delivered",
            stats.lines()
        ))
    })
}

/// Serves until Ctrl-C or SIGTERM, printing what arrived every few seconds.
fn serve_only(runtime: &Runtime, server: &NullKinesis, args: &Args) -> Result<bool, String> {
    println!(
        "null Kinesis and Firehose endpoint listening on {} ({}; records read as {}); \
         Ctrl-C to stop",
        server.url(),
        shard_count(args.shards),
        args.encoding
    );
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("listening for SIGTERM")?;
        let interrupt = tokio::signal::ctrl_c();
        tokio::pin!(interrupt);
        let mut ticker = tokio::time::interval(Duration::from_secs(5));
        let mut last = server.stats.snapshot();
        loop {
            tokio::select! {
                _ = &mut interrupt => break,
                _ = terminate.recv() => break,
                _ = ticker.tick() => {
                    let now = server.stats.snapshot();
                    if now != last {
                        let rate = now.lines.saturating_sub(last.lines) / 5;
                        println!("{now} (+{rate} lines/s)");
                        last = now;
                    }
                }
            }
        }
        Ok::<(), String>(())
    })?;
    println!("received in all: {}", server.stats.snapshot());
    Ok(true)
}
