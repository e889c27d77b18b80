//! Optional publishing of each flow's counters to CloudWatch under the Kinesis Agent's metric
//! names and dimensions (`Destination`, and `Instance` with `tag_instance`), so dashboards and
//! alarms built for that agent keep working. Each interval sends what changed since the last
//! accepted call; a failed call loses nothing, its counts go with the next one.

use std::sync::Arc;
use std::time::Duration;

use aws_config::imds::client::Client as ImdsClient;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::InstanceDimension;
use crate::error_chain::error_chain;
use crate::metrics::Metrics;

mod points;

pub use points::destination_dimension;
use points::{datum, Publisher};

/// Most data points one `PutMetricData` call takes.
const DATUMS_PER_CALL: usize = 1000;
/// Where the instance metadata service gives the EC2 instance id.
const INSTANCE_ID_PATH: &str = "/latest/meta-data/instance-id";

/// Where and how to publish.
#[derive(Clone, Debug)]
pub struct Publishing {
    pub namespace: String,
    pub interval: Duration,
    pub instance: InstanceDimension,
}

/// Publishes every `interval` until `stop` fires, then once more.
pub async fn publish(
    client: aws_sdk_cloudwatch::Client,
    settings: Publishing,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let Publishing {
        namespace,
        interval,
        instance,
    } = settings;
    let instance = tokio::select! {
        _ = stop.cancelled() => None,
        id = instance_id(&instance) => id,
    };
    let mut publisher = Publisher::default();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    info!(%namespace, ?interval, instance = instance.as_deref().unwrap_or("-"), "Publishing metrics to CloudWatch.");
    let target = Target {
        client: &client,
        namespace: &namespace,
        instance: instance.as_deref(),
    };
    loop {
        let last = tokio::select! {
            _ = stop.cancelled() => true,
            _ = ticker.tick() => false,
        };
        failing = target.publish_once(&metrics, &mut publisher, failing).await;
        if last {
            return;
        }
    }
}

/// The `Instance` dimension's value, if there is to be one.
async fn instance_id(dimension: &InstanceDimension) -> Option<String> {
    match dimension {
        InstanceDimension::Off => None,
        InstanceDimension::Given(id) => Some(id.clone()),
        InstanceDimension::FromMetadata => match read_instance_id().await {
            Ok(id) => Some(id),
            Err(cause) => {
                warn!(%cause, "Cannot read the EC2 instance id from the instance metadata service (cloudwatch.tag_instance: true; not on EC2, or IMDS unreachable); metrics are published without the Instance dimension. Set cloudwatch.instance_id to give it.");
                None
            }
        },
    }
}

async fn read_instance_id() -> Result<String, String> {
    let client = ImdsClient::builder()
        .max_attempts(2)
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(2))
        .build();
    let answer = client
        .get(INSTANCE_ID_PATH)
        .await
        .map_err(|failure| error_chain(&failure))?;
    let id = answer.as_ref().trim();
    if id.is_empty() {
        return Err("the instance metadata service gave an empty instance id".to_owned());
    }
    Ok(id.to_owned())
}

/// Where points go.
struct Target<'a> {
    client: &'a aws_sdk_cloudwatch::Client,
    namespace: &'a str,
    instance: Option<&'a str>,
}

impl Target<'_> {
    /// Sends the pending points; returns whether publishing is failing.
    async fn publish_once(
        &self,
        metrics: &Metrics,
        publisher: &mut Publisher,
        was_failing: bool,
    ) -> bool {
        let namespace = self.namespace;
        let (points, snapshot) = publisher.pending(metrics);
        for chunk in points.chunks(DATUMS_PER_CALL) {
            let sent = self
                .client
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(
                    chunk
                        .iter()
                        .map(|point| datum(point, self.instance))
                        .collect(),
                ))
                .send()
                .await;
            if let Err(failure) = sent {
                if !was_failing {
                    warn!(%namespace, cause = %error_chain(&failure), "Cannot publish metrics to CloudWatch (cloudwatch:PutMetricData); shipping goes on, and the counts are sent with the next publish.");
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
}
