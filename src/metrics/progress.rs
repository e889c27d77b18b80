//! The periodic progress lines, in kinship's structured form or worded as the Kinesis Agent
//! words them (so log scrapers and alarms built on its log keep matching), and the warning
//! when a flow falls far behind its files.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Level};

use super::{FlowMetrics, Metrics};

/// Progress is logged under the metrics module's name, as it always was, so that what matches
/// `kinship::metrics: Progress.` keeps matching.
const TARGET: &str = "kinship::metrics";

/// How progress is logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressFormat {
    /// One structured line: `Progress. records_parsed=… bytes_behind=app=…,web=…`.
    #[default]
    Kinship,
    /// The Kinesis Agent's prose lines: per flow `FileTailer[…]: Tailer Progress: …` and
    /// `Tailer is … behind.`, then `Agent: Progress: …` and `Agent: Tailing is … behind.`.
    KinesisAgent,
}

/// What the progress task does at each tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgressSettings {
    pub interval: Duration,
    pub format: ProgressFormat,
    /// A flow this many bytes behind or more is warned about once; 0 turns the warning off.
    pub behind_warning_bytes: u64,
}

/// The Kinesis Agent's parser buffer (4 MiB): its levels for the "behind" lines are multiples.
const AGENT_PARSER_BUFFER_BYTES: u64 = 4 * 1024 * 1024;
/// At or past this, the Kinesis Agent logs how far behind it is at INFO.
const AGENT_BEHIND_INFO_BYTES: u64 = 5 * AGENT_PARSER_BUFFER_BYTES;
/// At or past this, the Kinesis Agent logs how far behind it is at WARN, at every report.
pub const AGENT_BEHIND_WARN_BYTES: u64 = 10 * AGENT_PARSER_BUFFER_BYTES;

/// What a flow's counters say, as the Kinesis Agent's tailer line counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TailerCounts {
    parsed: u64,
    bytes: u64,
    transformed: u64,
    skipped: u64,
    sent: u64,
}

impl TailerCounts {
    fn read(flow: &FlowMetrics) -> Self {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let parsed = get(&flow.records_read);
        let skipped = get(&flow.records_filtered);
        // The Kinesis Agent counts a record transformed when its processors converted it;
        // one they could not convert goes out as read, and is not.
        let transformed = if flow.transforms {
            parsed
                .saturating_sub(skipped)
                .saturating_sub(get(&flow.records_unparsable))
        } else {
            0
        };
        Self {
            parsed,
            bytes: get(&flow.bytes_read),
            transformed,
            skipped,
            sent: get(&flow.records_sent),
        }
    }
}

/// `bytes` in MiB as Java's `%02f` prints `bytes / 1024 / 1024.0`: the first division is a
/// whole one, then six decimals rounded half up.
fn megabytes(bytes: u64) -> String {
    let kib = u128::from(bytes / 1024);
    let millionths = (kib * 1_000_000 + 512) / 1024;
    format!("{}.{:06}", millionths / 1_000_000, millionths % 1_000_000)
}

/// `FileTailer[kinesis:logs:/var/log/app.log*]: Tailer Progress: …`
fn tailer_progress_line(tailer: &str, counts: TailerCounts) -> String {
    format!(
        "{tailer}: Tailer Progress: Tailer has parsed {} records ({} bytes), transformed {} records, skipped {} records, and has successfully sent {} records to destination.",
        counts.parsed, counts.bytes, counts.transformed, counts.skipped, counts.sent
    )
}

/// `Agent: Progress: …`
fn agent_progress_line(parsed: u64, bytes: u64, sent: u64, uptime: Duration) -> String {
    format!(
        "Agent: Progress: {parsed} records parsed ({bytes} bytes), and {sent} records sent successfully to destinations. Uptime: {}ms",
        uptime.as_millis()
    )
}

/// `FileTailer[…]: Tailer is … behind.` (`what` = `Tailer`) or `Agent: Tailing is … behind.`
/// (`what` = `Tailing`), with the files behind when there are any.
fn behind_line(who: &str, what: &str, bytes: u64, files: u64) -> String {
    let mut line = format!(
        "{who}: {what} is {} MB ({bytes} bytes) behind.",
        megabytes(bytes)
    );
    if files > 0 {
        line.push_str(&format!(
            " There are {files} file(s) newer than current file(s) being tailed."
        ));
    }
    line
}

/// The level the Kinesis Agent logs its "behind" line at, if it logs it.
fn behind_level(bytes: u64) -> Option<Level> {
    if bytes >= AGENT_BEHIND_WARN_BYTES {
        Some(Level::WARN)
    } else if bytes >= AGENT_BEHIND_INFO_BYTES {
        Some(Level::INFO)
    } else if bytes > 0 {
        Some(Level::DEBUG)
    } else {
        None
    }
}

/// The Kinesis Agent's lines carry their whole meaning in the message, worded exactly as it
/// words them, so that what matches its log matches kinship's.
fn log_at(level: Level, line: &str) {
    if level == Level::WARN {
        warn!(target: TARGET, "{line}");
    } else if level == Level::INFO {
        info!(target: TARGET, "{line}");
    } else {
        debug!(target: TARGET, "{line}");
    }
}

impl Metrics {
    /// Logs progress once, in `format`.
    pub fn log_progress(&self, format: ProgressFormat) {
        match format {
            ProgressFormat::Kinship => self.log_kinship_progress(),
            ProgressFormat::KinesisAgent => {
                for line in self.kinesis_agent_lines() {
                    log_at(line.0, &line.1);
                }
            }
        }
    }

    fn log_kinship_progress(&self) {
        let totals = self.totals();
        info!(
            target: TARGET,
            records_parsed = totals.records_read,
            bytes_parsed = totals.bytes_read,
            records_sent = totals.records_sent,
            records_put = totals.records_put,
            billing_units = %self.billing_units_by_flow(),
            records_failed = totals.records_failed,
            calls_retried = totals.calls_failed,
            records_retried = totals.records_retried,
            records_throttled = totals.records_throttled,
            records_dead_lettered = totals.records_dead_lettered,
            records_truncated = totals.records_truncated,
            records_filtered = totals.records_filtered,
            records_unparsable = totals.records_unparsable,
            memory_used = self.memory_now(),
            bytes_behind = %self.behind_by_flow(),
            uptime_s = self.uptime().as_secs(),
            "Progress."
        );
    }

    /// The Kinesis Agent's progress lines and their levels: each flow's tailer lines, then the
    /// agent's.
    fn kinesis_agent_lines(&self) -> Vec<(Level, String)> {
        let mut lines = Vec::new();
        let (mut parsed, mut bytes, mut sent, mut behind, mut files) = (0, 0, 0, 0, 0);
        for (_, flow) in self.flows() {
            let tailer = format!("FileTailer[{}]", flow.tailer_id);
            let counts = TailerCounts::read(&flow);
            lines.push((Level::INFO, tailer_progress_line(&tailer, counts)));
            let flow_behind = flow.bytes_behind();
            let flow_files = flow.files_behind();
            if let Some(level) = behind_level(flow_behind) {
                lines.push((
                    level,
                    behind_line(&tailer, "Tailer", flow_behind, flow_files),
                ));
            }
            parsed += counts.parsed;
            bytes += counts.bytes;
            sent += counts.sent;
            behind += flow_behind;
            files += flow_files;
        }
        lines.push((
            Level::INFO,
            agent_progress_line(parsed, bytes, sent, self.uptime()),
        ));
        if let Some(level) = behind_level(behind) {
            lines.push((level, behind_line("Agent", "Tailing", behind, files)));
        }
        lines
    }
}

/// A change worth one log line in whether a flow is far behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BehindChange {
    /// It reached the threshold: a WARN, once.
    FellBehind,
    /// It came back under half the threshold: an INFO, once.
    CaughtUp,
}

/// Whether a flow `behind` bytes behind, `warned` about or not, crosses the warning's edges.
/// Back under half the threshold counts as caught up, so a flow hovering around it is not
/// warned about again and again. A threshold of 0 never warns.
pub fn behind_change(warned: bool, behind: u64, threshold: u64) -> Option<BehindChange> {
    if threshold == 0 {
        return None;
    }
    if !warned && behind >= threshold {
        Some(BehindChange::FellBehind)
    } else if warned && behind < threshold / 2 {
        Some(BehindChange::CaughtUp)
    } else {
        None
    }
}

/// Which flows were warned about as far behind.
#[derive(Debug, Default)]
pub struct BehindWarning {
    threshold: u64,
    /// By flow name: whether it is behind (warned about, not caught up yet).
    warned: HashMap<String, bool>,
}

impl BehindWarning {
    pub fn new(threshold: u64) -> Self {
        Self {
            threshold,
            warned: HashMap::new(),
        }
    }

    /// Looks at every flow; logs and returns each change.
    pub fn check(&mut self, metrics: &Metrics) -> Vec<(String, BehindChange)> {
        let flows = metrics.flows();
        self.warned
            .retain(|name, _| flows.iter().any(|(flow, _)| flow == name));
        let mut changes = Vec::new();
        for (name, flow) in flows {
            let warned = self.warned.entry(name.clone()).or_insert(false);
            let behind = flow.bytes_behind();
            let Some(change) = behind_change(*warned, behind, self.threshold) else {
                continue;
            };
            let files_behind = flow.files_behind();
            match change {
                BehindChange::FellBehind => {
                    *warned = true;
                    warn!(target: TARGET, flow = %name, bytes_behind = behind, files_behind, behind_warning_bytes = self.threshold, "Flow is far behind its files: bytes_behind reached behind_warning_bytes. The destination may be slow, throttling or failing, or the files grow faster than the flow can send; nothing is lost, the bytes wait on disk.");
                }
                BehindChange::CaughtUp => {
                    *warned = false;
                    info!(target: TARGET, flow = %name, bytes_behind = behind, files_behind, "Flow has caught up with its files: bytes_behind is back under half of behind_warning_bytes.");
                }
            }
            changes.push((name, change));
        }
        changes
    }
}

/// Logs progress every `interval`, and warns of flows far behind, until `cancel` fires.
pub async fn report_progress(
    metrics: Arc<Metrics>,
    settings: ProgressSettings,
    cancel: CancellationToken,
) {
    let interval = settings.interval;
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut behind = BehindWarning::new(settings.behind_warning_bytes);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {
                metrics.log_progress(settings.format);
                behind.check(&metrics);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::FlowLabels;

    fn labels(tailer_id: &str, transforms: bool) -> FlowLabels {
        FlowLabels {
            destination: String::new(),
            tailer_id: tailer_id.to_owned(),
            transforms,
        }
    }

    #[test]
    fn megabytes_are_printed_as_java_prints_them() {
        assert_eq!(megabytes(0), "0.000000");
        // Below a KiB the whole division leaves nothing.
        assert_eq!(megabytes(1023), "0.000000");
        assert_eq!(megabytes(1500), "0.000977");
        // 8 KiB is 0.0078125 MiB: Java rounds the half up.
        assert_eq!(megabytes(8 * 1024), "0.007813");
        assert_eq!(megabytes(1024 * 1024), "1.000000");
        assert_eq!(megabytes(41_943_040), "40.000000");
        assert_eq!(megabytes(1_610_612_736 + 1_048_575), "1536.999023");
    }

    #[test]
    fn the_kinesis_agent_lines_are_worded_as_it_words_them() {
        let metrics = Metrics::new([]);
        let app = metrics.start_flow("app", labels("kinesis:logs:/var/log/app.log*", true));
        FlowMetrics::add(&app.records_read, 2000);
        FlowMetrics::add(&app.bytes_read, 405_000);
        FlowMetrics::add(&app.records_filtered, 30);
        FlowMetrics::add(&app.records_unparsable, 5);
        FlowMetrics::add(&app.records_sent, 1900);
        FlowMetrics::add(&app.bytes_delivered, 405_000);
        app.bytes_unread.store(21_000_000, Ordering::Relaxed);
        let web = metrics.start_flow("web", labels("fh:clicks:/srv/web/*.log", false));
        FlowMetrics::add(&web.records_read, 10);
        FlowMetrics::add(&web.bytes_read, 1000);
        FlowMetrics::add(&web.records_sent, 10);
        FlowMetrics::add(&web.bytes_delivered, 1000);
        // app: 21 MB not read yet, in two files.
        let first = app.follow_file(std::path::Path::new("/var/log/app.log.1"));
        first.set(20_000_000);
        let second = app.follow_file(std::path::Path::new("/var/log/app.log"));
        second.set(1_000_000);
        let lines = metrics.kinesis_agent_lines();
        let expected = [
            (Level::INFO, "FileTailer[kinesis:logs:/var/log/app.log*]: Tailer Progress: Tailer has parsed 2000 records (405000 bytes), transformed 1965 records, skipped 30 records, and has successfully sent 1900 records to destination."),
            (Level::INFO, "FileTailer[kinesis:logs:/var/log/app.log*]: Tailer is 20.026367 MB (21000000 bytes) behind. There are 2 file(s) newer than current file(s) being tailed."),
            (Level::INFO, "FileTailer[fh:clicks:/srv/web/*.log]: Tailer Progress: Tailer has parsed 10 records (1000 bytes), transformed 0 records, skipped 0 records, and has successfully sent 10 records to destination."),
        ];
        for (index, (level, text)) in expected.iter().enumerate() {
            assert_eq!((lines[index].0, lines[index].1.as_str()), (*level, *text));
        }
        let uptime = metrics.uptime().as_millis();
        let (level, agent) = &lines[3];
        assert_eq!(*level, Level::INFO);
        assert_eq!(
            agent,
            &format!("Agent: Progress: 2010 records parsed (406000 bytes), and 1910 records sent successfully to destinations. Uptime: {uptime}ms")
        );
        assert_eq!(
            lines[4],
            (Level::INFO, "Agent: Tailing is 20.026367 MB (21000000 bytes) behind. There are 2 file(s) newer than current file(s) being tailed.".to_owned())
        );
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn behind_lines_take_the_kinesis_agents_levels() {
        assert_eq!(behind_level(0), None);
        assert_eq!(behind_level(1), Some(Level::DEBUG));
        assert_eq!(behind_level(20 * 1024 * 1024 - 1), Some(Level::DEBUG));
        assert_eq!(behind_level(20 * 1024 * 1024), Some(Level::INFO));
        assert_eq!(behind_level(40 * 1024 * 1024), Some(Level::WARN));
        assert_eq!(
            behind_line("Agent", "Tailing", 512, 0),
            "Agent: Tailing is 0.000000 MB (512 bytes) behind."
        );
        assert_eq!(
            agent_progress_line(0, 0, 0, Duration::from_millis(1234)),
            "Agent: Progress: 0 records parsed (0 bytes), and 0 records sent successfully to destinations. Uptime: 1234ms"
        );
    }

    #[test]
    fn a_flow_far_behind_is_warned_about_once_and_its_recovery_once() {
        const LIMIT: u64 = 1000;
        assert_eq!(behind_change(false, 999, LIMIT), None);
        assert_eq!(
            behind_change(false, 1000, LIMIT),
            Some(BehindChange::FellBehind)
        );
        assert_eq!(behind_change(true, 5000, LIMIT), None);
        // Hovering just under the threshold is not a recovery.
        assert_eq!(behind_change(true, 999, LIMIT), None);
        assert_eq!(behind_change(true, 500, LIMIT), None);
        assert_eq!(
            behind_change(true, 499, LIMIT),
            Some(BehindChange::CaughtUp)
        );
        assert_eq!(behind_change(false, 0, LIMIT), None);
        // Off.
        assert_eq!(behind_change(false, u64::MAX, 0), None);

        let metrics = Metrics::new(["app", "web"]);
        let app = metrics.flow("app").expect("app");
        let mut warning = BehindWarning::new(LIMIT);
        assert!(warning.check(&metrics).is_empty());
        app.bytes_unread.store(1500, Ordering::Relaxed);
        assert_eq!(
            warning.check(&metrics),
            vec![("app".to_owned(), BehindChange::FellBehind)]
        );
        // Still behind at the next ticks: nothing more.
        assert!(warning.check(&metrics).is_empty());
        app.bytes_unread.store(800, Ordering::Relaxed);
        assert!(warning.check(&metrics).is_empty());
        app.bytes_unread.store(100, Ordering::Relaxed);
        assert_eq!(
            warning.check(&metrics),
            vec![("app".to_owned(), BehindChange::CaughtUp)]
        );
        assert!(warning.check(&metrics).is_empty());
        // Read but not acknowledged counts too.
        FlowMetrics::add(&app.bytes_read, 2000);
        assert_eq!(
            warning.check(&metrics),
            vec![("app".to_owned(), BehindChange::FellBehind)]
        );
    }
}
