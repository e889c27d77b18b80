//! The figures of each run, printed side by side with their median.

use crate::agent::Ending;
use crate::null_kinesis::Snapshot;

const GB: f64 = 1e9;
const MB: f64 = 1e6;
const MIB: f64 = 1024.0 * 1024.0;

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Figures {
    pub lines: u64,
    pub files: u64,
    pub line_bytes: u64,
    pub elapsed_seconds: f64,
    pub agent_cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    /// The agent's peak RSS at the end of a simulated outage, if there was one.
    pub outage_peak_rss_bytes: Option<u64>,
    /// What the endpoint had received once the agent had exited.
    pub received: Snapshot,
    /// CPU the bench process spent meanwhile, almost all of it serving requests.
    pub server_cpu_seconds: f64,
    /// The agent's CPU while idle after the last record, in percent of one core, if measured.
    pub idle_cpu_percent: Option<f64>,
    pub agent_ending: Ending,
}

impl Figures {
    /// Lines that arrived more than once, as far as counts tell: lines received beyond those
    /// written.
    pub fn duplicates(&self) -> u64 {
        self.received.lines.saturating_sub(self.lines)
    }

    fn line_gigabytes(&self) -> f64 {
        self.line_bytes as f64 / GB
    }
}

struct Row {
    label: &'static str,
    decimals: usize,
    value: fn(&Figures) -> f64,
}

const ROWS: &[Row] = &[
    row("lines", 0, |f| f.lines as f64),
    row("files", 0, |f| f.files as f64),
    row("line data (GB)", 3, |f| f.line_bytes as f64 / GB),
    row("elapsed (s)", 2, |f| f.elapsed_seconds),
    row("lines/s", 0, |f| f.lines as f64 / f.elapsed_seconds),
    row("MB/s", 1, |f| f.line_bytes as f64 / MB / f.elapsed_seconds),
    row("agent CPU (s)", 2, |f| f.agent_cpu_seconds),
    row("agent CPU s per GB", 1, |f| {
        f.agent_cpu_seconds / f.line_gigabytes()
    }),
    row("agent peak RSS (MiB)", 1, |f| f.peak_rss_bytes as f64 / MIB),
    row("lines received", 0, |f| f.received.lines as f64),
    row("duplicates", 0, |f| f.duplicates() as f64),
    row("service records received", 0, |f| f.received.records as f64),
    row("lines per service record", 1, |f| {
        f.received.lines as f64 / f.received.records.max(1) as f64
    }),
    row("service records per GB", 0, |f| {
        f.received.records as f64 / f.line_gigabytes()
    }),
    row("billing units per GB", 0, |f| {
        f.received.billing_units as f64 / f.line_gigabytes()
    }),
    row("data received (GB)", 3, |f| {
        f.received.data_bytes as f64 / GB
    }),
    row("put calls", 0, |f| f.received.put_requests as f64),
    row("service records per call", 1, records_per_call),
    row("ListShards calls", 0, |f| {
        f.received.list_shards_requests as f64
    }),
    row("records refused (retried)", 0, |f| {
        f.received.refused_records as f64
    }),
    row("rejected requests", 0, |f| {
        f.received.rejected_requests as f64
    }),
    row("malformed records", 0, |f| {
        f.received.malformed_records as f64
    }),
    row("put calls failed (outage)", 0, |f| {
        f.received.failed_requests as f64
    }),
    row("null server CPU (s)", 2, |f| f.server_cpu_seconds),
];

/// Printed only when the runs simulated an outage.
const OUTAGE_RSS_ROW: Row = row("peak RSS by outage end (MiB)", 1, |f| {
    f.outage_peak_rss_bytes
        .map_or(f64::NAN, |bytes| bytes as f64 / MIB)
});

/// Printed only when the runs measured it.
const IDLE_ROW: Row = row("idle agent CPU (% core)", 2, |f| {
    f.idle_cpu_percent.unwrap_or(f64::NAN)
});

const fn row(label: &'static str, decimals: usize, value: fn(&Figures) -> f64) -> Row {
    Row {
        label,
        decimals,
        value,
    }
}

fn records_per_call(figures: &Figures) -> f64 {
    figures.received.records as f64 / figures.received.put_requests.max(1) as f64
}

const LABEL_WIDTH: usize = 27;
const COLUMN_WIDTH: usize = 13;

/// Prints one column per run, then the median of each figure when there is more than one run.
pub fn print_table(runs: &[(usize, Figures)]) {
    let with_median = runs.len() > 1;
    let mut header = format!("{:LABEL_WIDTH$}", "");
    for (number, _) in runs {
        header += &format!("{:>COLUMN_WIDTH$}", format!("run {number}"));
    }
    if with_median {
        header += &format!("{:>COLUMN_WIDTH$}", "median");
    }
    println!("{}", header.trim_end());
    let idle_measured = runs.iter().any(|(_, f)| f.idle_cpu_percent.is_some());
    let idle_row = idle_measured.then_some(&IDLE_ROW);
    let outage = runs.iter().any(|(_, f)| f.outage_peak_rss_bytes.is_some());
    let outage_row = outage.then_some(&OUTAGE_RSS_ROW);
    for row in ROWS.iter().chain(outage_row).chain(idle_row) {
        let values: Vec<f64> = runs
            .iter()
            .map(|(_, figures)| (row.value)(figures))
            .collect();
        let mut line = format!("{:LABEL_WIDTH$}", row.label);
        for value in &values {
            line += &format!("{:>COLUMN_WIDTH$.*}", row.decimals, value);
        }
        if with_median {
            line += &format!("{:>COLUMN_WIDTH$.*}", row.decimals, median(values));
        }
        println!("{line}");
    }
    for (number, figures) in runs {
        println!(
            "agent exit, run {number}: {}",
            figures.agent_ending.description
        );
    }
}

/// Prints the medians of two data paths side by side, with the ratio of the second to the
/// first (how many times the first's lines/s, CPU and memory the second takes).
pub fn print_comparison(first: (&str, &[(usize, Figures)]), second: (&str, &[(usize, Figures)])) {
    const COMPARED: [&str; 4] = [
        "lines/s",
        "agent CPU s per GB",
        "agent peak RSS (MiB)",
        "lines received",
    ];
    println!(
        "{:LABEL_WIDTH$}{:>COLUMN_WIDTH$}{:>COLUMN_WIDTH$}{:>COLUMN_WIDTH$}",
        "medians",
        first.0,
        second.0,
        format!("{}/{}", second.0, first.0)
    );
    for row in ROWS.iter().filter(|row| COMPARED.contains(&row.label)) {
        let median_of = |runs: &[(usize, Figures)]| {
            median(
                runs.iter()
                    .map(|(_, figures)| (row.value)(figures))
                    .collect(),
            )
        };
        let (a, b) = (median_of(first.1), median_of(second.1));
        println!(
            "{:LABEL_WIDTH$}{:>COLUMN_WIDTH$.*}{:>COLUMN_WIDTH$.*}{:>COLUMN_WIDTH$.2}",
            row.label,
            row.decimals,
            a,
            row.decimals,
            b,
            b / a
        );
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}
