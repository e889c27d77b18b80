//! Optional publishing of each flow's counters to CloudWatch under the Kinesis Agent's metric
//! names and `Destination` dimension, so dashboards and alarms built for that agent keep
//! working. Each interval sends what changed since the last accepted call; a failed call
//! loses nothing, its counts go with the next one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{Destination, DestinationKind};
use crate::metrics::{FlowMetrics, Metrics};

/// The metric names the Kinesis Agent publishes.
pub mod names {
    pub const BYTES_SENT: &str = "BytesSent";
    pub const RECORD_SEND_ATTEMPTS: &str = "RecordSendAttempts";
    pub const RECORD_SEND_ERRORS: &str = "RecordSendErrors";
    pub const RECORDS_SENT: &str = "RecordsSent";
    pub const SERVICE_ERRORS: &str = "ServiceErrors";
    /// The dimension: `KinesisStream:NAME` or `DeliveryStream:NAME`.
    pub const DESTINATION: &str = "Destination";
}

/// Most data points one `PutMetricData` call takes.
const DATUMS_PER_CALL: usize = 1000;

/// One flow's published counters at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    bytes_sent: u64,
    records_sent: u64,
    attempts: u64,
    send_errors: u64,
    service_errors: u64,
}

impl Counts {
    fn read(flow: &FlowMetrics) -> Self {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Self {
            bytes_sent: get(&flow.bytes_sent),
            records_sent: get(&flow.records_sent),
            // Every record put once, and again for each retry.
            attempts: get(&flow.records_put) + get(&flow.records_retried),
            send_errors: get(&flow.records_failed),
            service_errors: get(&flow.calls_failed),
        }
    }

    /// What grew since `earlier`.
    fn since(self, earlier: Self) -> Self {
        let grown = u64::saturating_sub;
        Self {
            bytes_sent: grown(self.bytes_sent, earlier.bytes_sent),
            records_sent: grown(self.records_sent, earlier.records_sent),
            attempts: grown(self.attempts, earlier.attempts),
            send_errors: grown(self.send_errors, earlier.send_errors),
            service_errors: grown(self.service_errors, earlier.service_errors),
        }
    }
}

/// One data point to publish.
#[derive(Clone, Debug, PartialEq)]
struct Point {
    name: &'static str,
    destination: String,
    value: f64,
    unit: StandardUnit,
}

/// Each flow's counters and their values, as read for one publish.
type Snapshot = Vec<(String, (Arc<FlowMetrics>, Counts))>;

/// What each flow's counters were when last published.
#[derive(Debug, Default)]
struct Publisher {
    /// By flow: the counters (a flow a reload restarted has new ones, which start from zero)
    /// and their values.
    published: HashMap<String, (Arc<FlowMetrics>, Counts)>,
}

/// The `Destination` dimension of a flow's points, as the Kinesis Agent writes it.
pub fn destination_dimension(destination: &Destination) -> String {
    match destination.kind {
        DestinationKind::Kinesis => format!("KinesisStream:{}", destination.name),
        DestinationKind::Firehose => format!("DeliveryStream:{}", destination.name),
    }
}

impl Publisher {
    /// The points to send now, and the counts to remember once they are accepted.
    fn pending(&self, metrics: &Metrics) -> (Vec<Point>, Snapshot) {
        let mut points = Vec::new();
        let mut snapshot = Vec::new();
        for (flow, counters) in metrics.flows() {
            let now = Counts::read(&counters);
            let earlier = match self.published.get(&flow) {
                Some((published, counts)) if Arc::ptr_eq(published, &counters) => *counts,
                _ => Counts::default(),
            };
            let delta = now.since(earlier);
            let destination = counters.destination.clone();
            let counters = Arc::clone(&counters);
            for (name, value, unit) in [
                (names::BYTES_SENT, delta.bytes_sent, StandardUnit::Bytes),
                (names::RECORDS_SENT, delta.records_sent, StandardUnit::Count),
                (
                    names::RECORD_SEND_ATTEMPTS,
                    delta.attempts,
                    StandardUnit::Count,
                ),
                (
                    names::RECORD_SEND_ERRORS,
                    delta.send_errors,
                    StandardUnit::Count,
                ),
                (
                    names::SERVICE_ERRORS,
                    delta.service_errors,
                    StandardUnit::Count,
                ),
            ] {
                points.push(Point {
                    name,
                    destination: destination.clone(),
                    value: value as f64,
                    unit,
                });
            }
            snapshot.push((flow, (counters, now)));
        }
        (points, snapshot)
    }

    /// Remembers counts whose points were accepted.
    fn published(&mut self, snapshot: Snapshot) {
        self.published = snapshot.into_iter().collect();
    }
}

fn datum(point: &Point) -> MetricDatum {
    MetricDatum::builder()
        .metric_name(point.name)
        .dimensions(
            Dimension::builder()
                .name(names::DESTINATION)
                .value(&point.destination)
                .build(),
        )
        .value(point.value)
        .unit(point.unit.clone())
        .build()
}

/// Publishes every `interval` until `stop` fires, then once more.
pub async fn publish(
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
    interval: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut publisher = Publisher::default();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    info!(%namespace, ?interval, "Publishing metrics to CloudWatch.");
    loop {
        let last = tokio::select! {
            _ = stop.cancelled() => true,
            _ = ticker.tick() => false,
        };
        failing = publish_once(&client, &namespace, &metrics, &mut publisher, failing).await;
        if last {
            return;
        }
    }
}

/// Sends the pending points; returns whether publishing is failing.
async fn publish_once(
    client: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    metrics: &Metrics,
    publisher: &mut Publisher,
    was_failing: bool,
) -> bool {
    let (points, snapshot) = publisher.pending(metrics);
    for chunk in points.chunks(DATUMS_PER_CALL) {
        let sent = client
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(chunk.iter().map(datum).collect()))
            .send()
            .await;
        if let Err(failure) = sent {
            if !was_failing {
                warn!(%namespace, cause = %crate::error_chain::error_chain(&failure), "Cannot publish metrics to CloudWatch (cloudwatch:PutMetricData); shipping goes on, and the counts are sent with the next publish.");
            }
            return true;
        }
    }
    if was_failing {
        info!(%namespace, "Metrics are published to CloudWatch again.");
    }
    debug!(points = points.len(), "Metrics published to CloudWatch.");
    publisher.published(snapshot);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(points: &[Point], name: &str, destination: &str) -> f64 {
        points
            .iter()
            .find(|point| point.name == name && point.destination == destination)
            .map_or(f64::NAN, |point| point.value)
    }

    #[test]
    fn each_publish_sends_what_grew_since_the_last_accepted_one() {
        let metrics = Metrics::new([]);
        let app = metrics.start_flow("app", "KinesisStream:logs");
        FlowMetrics::add(&app.bytes_sent, 1000);
        FlowMetrics::add(&app.records_sent, 10);
        FlowMetrics::add(&app.records_put, 10);
        FlowMetrics::add(&app.records_retried, 2);
        FlowMetrics::add(&app.records_failed, 2);
        FlowMetrics::add(&app.calls_failed, 1);
        let mut publisher = Publisher::default();
        let (points, snapshot) = publisher.pending(&metrics);
        assert_eq!(points.len(), 5);
        assert_eq!(value(&points, "BytesSent", "KinesisStream:logs"), 1000.0);
        assert_eq!(value(&points, "RecordsSent", "KinesisStream:logs"), 10.0);
        assert_eq!(
            value(&points, "RecordSendAttempts", "KinesisStream:logs"),
            12.0
        );
        assert_eq!(
            value(&points, "RecordSendErrors", "KinesisStream:logs"),
            2.0
        );
        assert_eq!(value(&points, "ServiceErrors", "KinesisStream:logs"), 1.0);

        // Not accepted: the next publish carries these counts too.
        FlowMetrics::add(&app.records_sent, 5);
        let (points, _) = publisher.pending(&metrics);
        assert_eq!(value(&points, "RecordsSent", "KinesisStream:logs"), 15.0);
        publisher.published(snapshot);
        let (points, snapshot) = publisher.pending(&metrics);
        assert_eq!(value(&points, "RecordsSent", "KinesisStream:logs"), 5.0);
        assert_eq!(value(&points, "BytesSent", "KinesisStream:logs"), 0.0);
        publisher.published(snapshot);

        // A reload restarts the flow with new counters: they count from zero.
        let again = metrics.start_flow("app", "DeliveryStream:logs");
        FlowMetrics::add(&again.records_sent, 3);
        let (points, _) = publisher.pending(&metrics);
        assert_eq!(value(&points, "RecordsSent", "DeliveryStream:logs"), 3.0);
    }
}
