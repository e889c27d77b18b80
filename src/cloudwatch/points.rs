//! The data points of one publish: what each flow's counters grew by since the last accepted
//! publish, and its gauges now, under the Kinesis Agent's names and dimensions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use crate::config::{Destination, DestinationKind};
use crate::metrics::{FlowMetrics, Metrics};

/// The metric and dimension names the Kinesis Agent publishes.
pub mod names {
    pub const BYTES_SENT: &str = "BytesSent";
    pub const RECORD_SEND_ATTEMPTS: &str = "RecordSendAttempts";
    pub const RECORD_SEND_ERRORS: &str = "RecordSendErrors";
    pub const RECORDS_SENT: &str = "RecordsSent";
    pub const SERVICE_ERRORS: &str = "ServiceErrors";
    /// A gauge: the flow's longest run of failed reads or opens of its files.
    pub const CONSECUTIVE_PROCESSING_ERRORS: &str = "ConsecutiveProcessingErrors";
    /// The dimension: `KinesisStream:NAME` or `DeliveryStream:NAME`.
    pub const DESTINATION: &str = "Destination";
    /// The second dimension with `cloudwatch.tag_instance`: the EC2 instance id.
    pub const INSTANCE: &str = "Instance";
}

/// One flow's published counters at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
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
pub(super) struct Point {
    pub(super) name: &'static str,
    pub(super) destination: String,
    pub(super) value: f64,
    pub(super) unit: StandardUnit,
}

/// Each flow's counters and their values, as read for one publish.
pub(super) type Snapshot = Vec<(String, (Arc<FlowMetrics>, Counts))>;

/// What each flow's counters were when last published.
#[derive(Debug, Default)]
pub(super) struct Publisher {
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
    pub(super) fn pending(&self, metrics: &Metrics) -> (Vec<Point>, Snapshot) {
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
            // A gauge: its value now, whatever was published before.
            points.push(Point {
                name: names::CONSECUTIVE_PROCESSING_ERRORS,
                destination: destination.clone(),
                value: counters.consecutive_processing_errors() as f64,
                unit: StandardUnit::Count,
            });
            snapshot.push((flow, (counters, now)));
        }
        (points, snapshot)
    }

    /// Remembers counts whose points were accepted.
    pub(super) fn published(&mut self, snapshot: Snapshot) {
        self.published = snapshot.into_iter().collect();
    }
}

/// The data point as sent: dimensions `Destination`, and `Instance` when it is given.
pub(super) fn datum(point: &Point, instance: Option<&str>) -> MetricDatum {
    let mut builder = MetricDatum::builder().metric_name(point.name).dimensions(
        Dimension::builder()
            .name(names::DESTINATION)
            .value(&point.destination)
            .build(),
    );
    if let Some(instance) = instance {
        builder = builder.dimensions(
            Dimension::builder()
                .name(names::INSTANCE)
                .value(instance)
                .build(),
        );
    }
    builder.value(point.value).unit(point.unit.clone()).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::FlowLabels;

    fn labels(destination: &str) -> FlowLabels {
        FlowLabels {
            destination: destination.to_owned(),
            ..FlowLabels::default()
        }
    }

    fn value(points: &[Point], name: &str, destination: &str) -> f64 {
        points
            .iter()
            .find(|point| point.name == name && point.destination == destination)
            .map_or(f64::NAN, |point| point.value)
    }

    #[test]
    fn each_publish_sends_what_grew_since_the_last_accepted_one() {
        let metrics = Metrics::new([]);
        let app = metrics.start_flow("app", labels("KinesisStream:logs"));
        FlowMetrics::add(&app.bytes_sent, 1000);
        FlowMetrics::add(&app.records_sent, 10);
        FlowMetrics::add(&app.records_put, 10);
        FlowMetrics::add(&app.records_retried, 2);
        FlowMetrics::add(&app.records_failed, 2);
        FlowMetrics::add(&app.calls_failed, 1);
        let mut publisher = Publisher::default();
        let (points, snapshot) = publisher.pending(&metrics);
        assert_eq!(points.len(), 6);
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
        let again = metrics.start_flow("app", labels("DeliveryStream:logs"));
        FlowMetrics::add(&again.records_sent, 3);
        let (points, _) = publisher.pending(&metrics);
        assert_eq!(value(&points, "RecordsSent", "DeliveryStream:logs"), 3.0);
    }

    #[test]
    fn consecutive_processing_errors_rise_while_reads_fail_and_reset_on_success() {
        let metrics = Metrics::new([]);
        let app = metrics.start_flow("app", labels("KinesisStream:logs"));
        let gauge = |publisher: &Publisher| {
            let (points, _) = publisher.pending(&metrics);
            value(&points, "ConsecutiveProcessingErrors", "KinesisStream:logs")
        };
        let publisher = Publisher::default();
        assert_eq!(gauge(&publisher), 0.0);
        let stuck = app.follow_file(std::path::Path::new("/logs/stuck.log"));
        let fine = app.follow_file(std::path::Path::new("/logs/fine.log"));
        for _ in 0..3 {
            stuck.failed();
        }
        fine.failed();
        fine.succeeded();
        // A file read well does not hide one that keeps failing.
        assert_eq!(gauge(&publisher), 3.0);
        assert_eq!(app.processing_errors.load(Ordering::Relaxed), 4);
        stuck.failed();
        assert_eq!(gauge(&publisher), 4.0);
        stuck.succeeded();
        assert_eq!(gauge(&publisher), 0.0);
        // Opens that fail count too, scan after scan, until a scan has none failing.
        let scan = app.open_failures_now();
        app.open_failed();
        app.scan_done(scan);
        let scan = app.open_failures_now();
        app.open_failed();
        app.scan_done(scan);
        assert_eq!(gauge(&publisher), 2.0);
        let scan = app.open_failures_now();
        app.scan_done(scan);
        assert_eq!(gauge(&publisher), 0.0);
        // A file no longer followed no longer counts.
        stuck.failed();
        drop(stuck);
        assert_eq!(gauge(&publisher), 0.0);
        assert_eq!(app.processing_errors.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn the_instance_dimension_goes_beside_destination() {
        let point = Point {
            name: names::RECORDS_SENT,
            destination: "KinesisStream:logs".to_owned(),
            value: 1.0,
            unit: StandardUnit::Count,
        };
        let dimensions = |datum: &MetricDatum| -> Vec<(String, String)> {
            datum
                .dimensions()
                .iter()
                .map(|d| {
                    (
                        d.name().unwrap_or_default().to_owned(),
                        d.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        };
        assert_eq!(
            dimensions(&datum(&point, None)),
            [("Destination".to_owned(), "KinesisStream:logs".to_owned())]
        );
        assert_eq!(
            dimensions(&datum(&point, Some("i-0123456789abcdef0"))),
            [
                ("Destination".to_owned(), "KinesisStream:logs".to_owned()),
                ("Instance".to_owned(), "i-0123456789abcdef0".to_owned())
            ]
        );
    }
}
