//! The optional Prometheus endpoint: `GET /metrics` in the text exposition format, and
//! `GET /health`, which answers 503 while a flow is stuck (behind its files, with nothing
//! acknowledged for `stuck_after`) and 200 otherwise, with a JSON body naming each flow's state.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::metrics::{names, FlowMetrics, Metrics, LATENCY_BUCKETS};

/// How often each flow's progress is sampled for `/health`.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Each flow's acknowledged bytes as last seen, and since when they have not moved.
#[derive(Debug)]
struct Progress {
    acknowledged: u64,
    since: Instant,
}

/// Tells stuck flows: behind their files, and nothing acknowledged for `stuck_after`.
#[derive(Debug)]
pub struct Health {
    metrics: Arc<Metrics>,
    stuck_after: Duration,
    /// By flow name; a flow started by a reload is first seen at its first sample.
    progress: Mutex<HashMap<String, Progress>>,
}

/// One flow's health.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct FlowHealth {
    pub flow: String,
    pub bytes_behind: u64,
    /// Seconds since its acknowledged bytes last moved.
    pub idle_seconds: u64,
    pub stuck: bool,
}

impl Health {
    pub fn new(metrics: Arc<Metrics>, stuck_after: Duration) -> Self {
        let now = Instant::now();
        let progress = metrics
            .flows()
            .into_iter()
            .map(|(name, flow)| {
                let seen = Progress {
                    acknowledged: flow.bytes_acknowledged.load(Ordering::Relaxed),
                    since: now,
                };
                (name, seen)
            })
            .collect();
        Self {
            metrics,
            stuck_after,
            progress: Mutex::new(progress),
        }
    }

    /// Notes each flow's progress; returns every flow's health.
    pub fn sample(&self) -> Vec<FlowHealth> {
        let now = Instant::now();
        let mut progress = self
            .progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let flows = self.metrics.flows();
        progress.retain(|name, _| flows.iter().any(|(flow, _)| flow == name));
        flows
            .into_iter()
            .map(|(name, flow)| {
                let acknowledged = flow.bytes_acknowledged.load(Ordering::Relaxed);
                let seen = progress.entry(name.clone()).or_insert(Progress {
                    acknowledged,
                    since: now,
                });
                let behind = flow.bytes_behind();
                if acknowledged != seen.acknowledged || behind == 0 {
                    seen.acknowledged = acknowledged;
                    seen.since = now;
                }
                let idle = now.duration_since(seen.since);
                FlowHealth {
                    flow: name,
                    bytes_behind: behind,
                    idle_seconds: idle.as_secs(),
                    stuck: behind > 0 && idle >= self.stuck_after,
                }
            })
            .collect()
    }
}

/// Serves `/metrics` and `/health` on `listener` until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    stuck_after: Duration,
    stop: CancellationToken,
) {
    let health = Arc::new(Health::new(Arc::clone(&metrics), stuck_after));
    let sampler = {
        let health = Arc::clone(&health);
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(SAMPLE_EVERY) => { health.sample(); }
                }
            }
        })
    };
    if let Ok(address) = listener.local_addr() {
        info!(%address, "Metrics endpoint listening: /metrics and /health.");
    }
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        let health = Arc::clone(&health);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = answer(&request, &metrics, &health);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(failure) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%failure, "A metrics connection ended with an error.");
            }
        });
    }
    let _ = sampler.await;
}

fn answer(
    request: &Request<Incoming>,
    metrics: &Metrics,
    health: &Health,
) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(metrics),
        ),
        (&Method::GET, "/health") => {
            let flows = health.sample();
            let stuck = flows.iter().any(|flow| flow.stuck);
            let body = serde_json::json!({
                "status": if stuck { "stuck" } else { "ok" },
                "flows": flows,
            });
            let status = if stuck {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            respond(status, "application/json", body.to_string())
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found; try /metrics or /health\n".to_owned(),
        ),
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A per-flow counter: its name, its help text, and how to read a flow's value.
type FlowCounter = (&'static str, &'static str, fn(&FlowMetrics) -> u64);

/// The per-flow counters.
const FLOW_COUNTERS: &[FlowCounter] = &[
    (names::RECORDS_READ, "Lines read from files.", |f| get(&f.records_read)),
    (names::BYTES_READ, "Bytes read from files.", |f| get(&f.bytes_read)),
    (names::RECORDS_SENT, "Lines the destination accepted.", |f| get(&f.records_sent)),
    (names::RECORDS_PUT, "Records as the service counts them (aggregated or packed records count once).", |f| get(&f.records_put)),
    (names::BYTES_SENT, "Bytes of record data accepted, as sent.", |f| get(&f.bytes_sent)),
    (names::BILLING_UNITS, "Billing units of accepted records: 25 KiB PUT payload units (Kinesis) or 5 KiB units (Firehose).", |f| get(&f.billing_units)),
    (names::RECORDS_FAILED, "Records refused inside a call that succeeded (each is sent again).", |f| get(&f.records_failed)),
    (names::CALLS_FAILED, "Calls that failed whole (each is sent again).", |f| get(&f.calls_failed)),
    (names::RECORDS_RETRIED, "Records sent again.", |f| get(&f.records_retried)),
    (names::RECORDS_THROTTLED, "Records refused for throttling.", |f| get(&f.records_throttled)),
    (names::RECORDS_DEAD_LETTERED, "Records given up after max_retry_duration and written to the dead-letter file.", |f| get(&f.records_dead_lettered)),
    (names::RECORDS_TRUNCATED, "Lines longer than the record limit, cut to fit.", |f| get(&f.records_truncated)),
    (names::RECORDS_FILTERED, "Records a filter processor left out (acknowledged, never sent).", |f| get(&f.records_filtered)),
    (names::RECORDS_UNPARSABLE, "Records a processor could not convert (sent as read or dropped, per on_error).", |f| get(&f.records_unparsable)),
    (names::PARTITION_KEYS_CUT, "Partition keys taken from records, cut to the service's 256 characters.", |f| get(&f.partition_keys_cut)),
    (names::BYTES_ACKNOWLEDGED, "Bytes of files delivered and acknowledged.", |f| get(&f.bytes_acknowledged)),
    (names::PROCESSING_ERRORS, "Failed reads, looks (stat) and opens of the flow's files.", |f| get(&f.processing_errors)),
];

fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Every metric in the Prometheus text format.
pub fn render(metrics: &Metrics) -> String {
    let mut out = String::with_capacity(8192);
    let flows: Vec<(String, Arc<FlowMetrics>)> = metrics.flows();
    for (name, help, value) in FLOW_COUNTERS {
        header(&mut out, name, help, "counter");
        for (flow, counters) in &flows {
            let _ = writeln!(
                out,
                "{name}{{flow=\"{}\"}} {}",
                escape(flow),
                value(counters)
            );
        }
    }
    header(
        &mut out,
        names::SHIPPED_FILES,
        "Files done with (every line acknowledged, no longer written) that shipped_files deleted or moved.",
        "counter",
    );
    for (flow, counters) in &flows {
        let flow = escape(flow);
        for (action, counter) in [
            ("delete", &counters.files_deleted),
            ("move", &counters.files_moved),
        ] {
            let _ = writeln!(
                out,
                "{}{{flow=\"{flow}\",action=\"{action}\"}} {}",
                names::SHIPPED_FILES,
                get(counter)
            );
        }
    }
    header(
        &mut out,
        names::BYTES_BEHIND,
        "Bytes in followed files not yet delivered: not handed on yet, plus handed on but not delivered.",
        "gauge",
    );
    for (flow, counters) in &flows {
        let _ = writeln!(
            out,
            "{}{{flow=\"{}\"}} {}",
            names::BYTES_BEHIND,
            escape(flow),
            counters.bytes_behind()
        );
    }
    header(
        &mut out,
        names::CONSECUTIVE_PROCESSING_ERRORS,
        "The longest run of failed reads, looks or opens of one of the flow's files, without a success between (the Kinesis Agent's ConsecutiveProcessingErrors); 0 while files are read.",
        "gauge",
    );
    for (flow, counters) in &flows {
        let _ = writeln!(
            out,
            "{}{{flow=\"{}\"}} {}",
            names::CONSECUTIVE_PROCESSING_ERRORS,
            escape(flow),
            counters.consecutive_processing_errors()
        );
    }
    header(
        &mut out,
        names::FILE_BYTES_UNREAD,
        "Bytes of each followed file not handed on yet, on disk or in the tailer's buffers (its part of bytes_behind before batching).",
        "gauge",
    );
    for (flow, counters) in &flows {
        let flow = escape(flow);
        for (path, unread) in counters.files_unread() {
            let _ = writeln!(
                out,
                "{}{{flow=\"{flow}\",file=\"{}\"}} {unread}",
                names::FILE_BYTES_UNREAD,
                escape(&path.to_string_lossy())
            );
        }
    }
    header(
        &mut out,
        names::CALLS_IN_FLIGHT,
        "Put calls waiting for their answer.",
        "gauge",
    );
    for (flow, counters) in &flows {
        let calls = counters.calls_in_flight.load(Ordering::Relaxed).max(0);
        let _ = writeln!(
            out,
            "{}{{flow=\"{}\"}} {calls}",
            names::CALLS_IN_FLIGHT,
            escape(flow)
        );
    }
    header(
        &mut out,
        names::SHARDS_PACED,
        "Shards whose records are paced after the stream throttled them (ordering: per_shard).",
        "gauge",
    );
    for (flow, counters) in &flows {
        let paced = counters.shards_paced.load(Ordering::Relaxed).max(0);
        let _ = writeln!(
            out,
            "{}{{flow=\"{}\"}} {paced}",
            names::SHARDS_PACED,
            escape(flow)
        );
    }
    header(
        &mut out,
        names::SHARD_RATE_LIMIT,
        "The lowest records-per-second limit among paced shards; 0 while none is paced.",
        "gauge",
    );
    for (flow, counters) in &flows {
        let limit = counters.shard_rate_limit.load(Ordering::Relaxed).max(0);
        let _ = writeln!(
            out,
            "{}{{flow=\"{}\"}} {limit}",
            names::SHARD_RATE_LIMIT,
            escape(flow)
        );
    }
    header(
        &mut out,
        names::PUT_LATENCY,
        "Latency of put calls (PutRecords, PutRecordBatch), answered or failed.",
        "histogram",
    );
    for (flow, counters) in &flows {
        let flow = escape(flow);
        let (cumulative, sum) = counters.put_latency.cumulative();
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&cumulative) {
            let _ = writeln!(
                out,
                "{}_bucket{{flow=\"{flow}\",le=\"{bound}\"}} {count}",
                names::PUT_LATENCY
            );
        }
        let total = cumulative.last().copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "{}_bucket{{flow=\"{flow}\",le=\"+Inf\"}} {total}",
            names::PUT_LATENCY
        );
        let _ = writeln!(out, "{}_sum{{flow=\"{flow}\"}} {sum}", names::PUT_LATENCY);
        let _ = writeln!(
            out,
            "{}_count{{flow=\"{flow}\"}} {total}",
            names::PUT_LATENCY
        );
    }
    for (name, help, value) in [
        (
            names::OPEN_FILES,
            "Files open, over all flows.",
            metrics.open_files() as f64,
        ),
        (
            names::MEMORY_USED,
            "Bytes held in the memory budget: records read and not yet delivered, and the requests of calls under way.",
            metrics.memory_used() as f64,
        ),
        (
            names::CHECKPOINT_AGE,
            "Seconds since the checkpoint file was last known up to date on disk.",
            metrics.checkpoint_age(),
        ),
        (
            names::UPTIME,
            "Seconds since start.",
            metrics.uptime().as_secs_f64(),
        ),
    ] {
        header(&mut out, name, help, "gauge");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_every_flow_and_a_cumulative_histogram() {
        let metrics = Metrics::new(["app", "web"]);
        let app = metrics.flow("app").expect("app");
        FlowMetrics::add(&app.records_sent, 42);
        app.put_latency.observe(Duration::from_millis(3));
        app.put_latency.observe(Duration::from_millis(70));
        app.put_latency.observe(Duration::from_secs(30));
        let text = render(&metrics);
        assert!(
            text.contains("kinship_records_sent_total{flow=\"app\"} 42\n"),
            "{text}"
        );
        assert!(text.contains("kinship_records_sent_total{flow=\"web\"} 0\n"));
        FlowMetrics::add(&app.files_deleted, 2);
        let shipped = render(&metrics);
        assert!(
            shipped.contains("kinship_shipped_files_total{flow=\"app\",action=\"delete\"} 2\n"),
            "{shipped}"
        );
        assert!(shipped.contains("kinship_shipped_files_total{flow=\"app\",action=\"move\"} 0\n"));
        assert!(text.contains("# TYPE kinship_put_latency_seconds histogram\n"));
        assert!(text.contains("kinship_put_latency_seconds_bucket{flow=\"app\",le=\"0.005\"} 1\n"));
        assert!(text.contains("kinship_put_latency_seconds_bucket{flow=\"app\",le=\"0.1\"} 2\n"));
        assert!(text.contains("kinship_put_latency_seconds_bucket{flow=\"app\",le=\"10\"} 2\n"));
        assert!(text.contains("kinship_put_latency_seconds_bucket{flow=\"app\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("kinship_put_latency_seconds_count{flow=\"app\"} 3\n"));
        assert!(text.contains("kinship_open_files 0\n"));
        let followed = app.follow_file(std::path::Path::new("/logs/a \"b\".log"));
        followed.set(500);
        let with_file = render(&metrics);
        assert!(
            with_file.contains(
                "kinship_file_bytes_unread{flow=\"app\",file=\"/logs/a \\\"b\\\".log\"} 500\n"
            ),
            "{with_file}"
        );
        followed.failed();
        followed.failed();
        let failing = render(&metrics);
        assert!(
            failing.contains("kinship_consecutive_processing_errors{flow=\"app\"} 2\n"),
            "{failing}"
        );
        assert!(failing.contains("kinship_processing_errors_total{flow=\"app\"} 2\n"));
        followed.succeeded();
        let recovered = render(&metrics);
        assert!(recovered.contains("kinship_consecutive_processing_errors{flow=\"app\"} 0\n"));
        assert!(recovered.contains("kinship_processing_errors_total{flow=\"app\"} 2\n"));
        drop(followed);
        assert!(!render(&metrics).contains("kinship_file_bytes_unread{"));
        // Every sample line is NAME{LABELS} VALUE or NAME VALUE, with a number.
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flow_behind_with_nothing_acknowledged_for_stuck_after_is_stuck() {
        let metrics = Arc::new(Metrics::new(["app"]));
        let app = metrics.flow("app").expect("app");
        let health = Health::new(Arc::clone(&metrics), Duration::from_secs(10));
        // Caught up: never stuck, however long it is quiet.
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!health.sample()[0].stuck);
        // Behind, and nothing moves.
        app.bytes_unread.store(500, Ordering::Relaxed);
        health.sample();
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!health.sample()[0].stuck);
        tokio::time::advance(Duration::from_secs(2)).await;
        let sampled = health.sample();
        assert!(sampled[0].stuck, "{sampled:?}");
        assert_eq!(sampled[0].bytes_behind, 500);
        // Progress clears it.
        FlowMetrics::add(&app.bytes_acknowledged, 100);
        assert!(!health.sample()[0].stuck);
    }
}
